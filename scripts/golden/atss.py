"""Golden values for the Detection target's ATSSAssigner: mmdetection's ATSS assignment (Zhang et al.,
CVPR 2020), copied below as plain torch because mmdetection is not installed in the reference venv.

Usage (from the repo root):
  /tmp/qat-reference-venv/bin/python scripts/golden/atss.py \
      > Tests/DetectionTests/Fixtures/atss.json

Reference code (open-mmlab/mmdetection):
- mmdet/models/task_modules/assigners/atss_assigner.py, `ATSSAssigner.assign` and
  `bbox_center_distance`, commit adc8ffa53beac76c08ec39719853f18e378d5184 (the same lines at
  0c5159285b4d69e75679c2e34a08415fe2bec8d8). Copied: the `alpha is None` branch (plain ATSS, not DDOD's
  cost), without `gt_bboxes_ignore` (ignore_iof_thr defaults to -1 there; the Swift side handles
  ignore regions its own way, tested by hand-made cases).
- mmdet/structures/bbox/bbox_overlaps.py, `bbox_overlaps(mode='iou', is_aligned=False, eps=1e-6)`,
  commit 19bceba56284d440278e80cfde1d95460330ccbb, reached through `BboxOverlaps2D` (iou2d_calculator.py,
  commit 8f354f981d6199e61d2eff4b395ca39ccaa9d033), which adds nothing for float32 4-column boxes.
  No +1 offset in the areas (only `BboxOverlaps2D_GLIP` has one), union floored at eps.

Output convention (the Swift one, not mmdet's): per anchor the 0-based gt index, -1 for negative
(mmdet: 1-based, 0 negative); quality = the IoU with the assigned gt (mmdet's max_overlaps), 0 for
non-positives (mmdet: -INF). thresholds = mean + std per gt, as torch computes them (null for NaN).

Cases, 24 in all (anchors from torchvision's AnchorGenerator, cell anchors centred on the grid points;
gt corners multiples of 1/1024 px, exact in float32 and in the JSON): the RetinaNet bench pyramid at
256 px (sizes 16..256, 9 anchors per location, P3-P7: 12,276 anchors) with 29 gts + 1 duplicate and
with 10 gts; 16 random pyramids over images of 48-320 px with 1-5 levels of different sizes, 1, 3 or
9 anchors per location, topk 9 (some 3), 1-30 gts with log-uniform sides of 4-200 px (some touching
the image border, some overlapping: jittered copies of earlier gts; every fifth random case an exact
duplicate, whose equal IoUs must go to the first gt); a pyramid whose top level has 6 (< 9) anchors;
topk 3 and topk 1 pyramids; jittered (off-grid) priors; one case where each gt has a single candidate
(torch.std of one value is NaN, so no positives); one without gts (all negative).

Tie rule. torch.topk(largest=False) on CPU (aten/src/ATen/native/TopKImpl.h, `topk_impl_loop`) keeps
(value, index) pairs but compares values only: with k * 64 <= n it keeps a max-heap of the first k and
lets a later element in only when strictly smaller, evicting the heap root (which of several equal
values sits at the root depends on the heap layout); otherwise it runs std::nth_element (introselect),
whose placement of equal values depends on the partitioning. So which of several equally distant
anchors is kept is not defined (this script prints an example to stderr). The Swift side keeps the
lowest index; every case here is redrawn until no gt has a distance tie across the k boundary of any
level (the k-th and (k+1)-th smallest distances differ), so the candidate sets are defined.
Thresholds: torch computes mean in float32 and std by Welford in double; every case is redrawn until
each candidate's decision `iou >= thr` is the same under torch's threshold, the float64 threshold and
float32(mean64) + float32(std64), so any faithful implementation reproduces the decisions.
"""
import json, math, sys, warnings
import numpy as np
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

INF = 100000000


# ------------------------------------------------------------------ mmdetection, as plain torch
def bbox_overlaps(bboxes1, bboxes2, eps=1e-6):
    """mmdet bbox_overlaps, mode='iou', is_aligned=False (2-D inputs)."""
    rows, cols = bboxes1.size(-2), bboxes2.size(-2)
    if rows * cols == 0:
        return bboxes1.new(rows, cols)
    area1 = (bboxes1[..., 2] - bboxes1[..., 0]) * (bboxes1[..., 3] - bboxes1[..., 1])
    area2 = (bboxes2[..., 2] - bboxes2[..., 0]) * (bboxes2[..., 3] - bboxes2[..., 1])
    lt = torch.max(bboxes1[..., :, None, :2], bboxes2[..., None, :, :2])
    rb = torch.min(bboxes1[..., :, None, 2:], bboxes2[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1[..., None] + area2[..., None, :] - overlap
    eps = union.new_tensor([eps])
    union = torch.max(union, eps)
    return overlap / union


def bbox_center_distance(bboxes, priors):
    bbox_cx = (bboxes[:, 0] + bboxes[:, 2]) / 2.0
    bbox_cy = (bboxes[:, 1] + bboxes[:, 3]) / 2.0
    bbox_points = torch.stack((bbox_cx, bbox_cy), dim=1)
    priors_cx = (priors[:, 0] + priors[:, 2]) / 2.0
    priors_cy = (priors[:, 1] + priors[:, 3]) / 2.0
    priors_points = torch.stack((priors_cx, priors_cy), dim=1)
    return (priors_points[:, None, :] - bbox_points[None, :, :]).pow(2).sum(-1).sqrt()


def atss_assign(priors, num_level_priors, gt_bboxes, topk):
    """ATSSAssigner.assign (alpha None, no ignore). Returns assigned_gt_inds (1-based, 0 negative),
    max_overlaps, and the extras this script checks: distances, candidate_idxs, candidate_overlaps,
    thresholds."""
    num_gt, num_priors = gt_bboxes.size(0), priors.size(0)
    overlaps = bbox_overlaps(priors, gt_bboxes)
    assigned_gt_inds = overlaps.new_full((num_priors,), 0, dtype=torch.long)
    if num_gt == 0 or num_priors == 0:
        max_overlaps = overlaps.new_zeros((num_priors,))
        return assigned_gt_inds, max_overlaps, None
    distances = bbox_center_distance(gt_bboxes, priors)
    candidate_idxs = []
    start_idx = 0
    for level, priors_per_level in enumerate(num_level_priors):
        end_idx = start_idx + priors_per_level
        distances_per_level = distances[start_idx:end_idx, :]
        selectable_k = min(topk, priors_per_level)
        _, topk_idxs_per_level = distances_per_level.topk(selectable_k, dim=0, largest=False)
        candidate_idxs.append(topk_idxs_per_level + start_idx)
        start_idx = end_idx
    candidate_idxs = torch.cat(candidate_idxs, dim=0)
    candidate_overlaps = overlaps[candidate_idxs, torch.arange(num_gt)]
    overlaps_mean_per_gt = candidate_overlaps.mean(0)
    overlaps_std_per_gt = candidate_overlaps.std(0)
    overlaps_thr_per_gt = overlaps_mean_per_gt + overlaps_std_per_gt
    is_pos = candidate_overlaps >= overlaps_thr_per_gt[None, :]
    extras = dict(distances=distances, candidate_idxs=candidate_idxs.clone(), candidate_overlaps=candidate_overlaps,
                  thresholds=overlaps_thr_per_gt, is_pos=is_pos.clone())
    for gt_idx in range(num_gt):
        candidate_idxs[:, gt_idx] += gt_idx * num_priors
    priors_cx = (priors[:, 0] + priors[:, 2]) / 2.0
    priors_cy = (priors[:, 1] + priors[:, 3]) / 2.0
    ep_priors_cx = priors_cx.view(1, -1).expand(num_gt, num_priors).contiguous().view(-1)
    ep_priors_cy = priors_cy.view(1, -1).expand(num_gt, num_priors).contiguous().view(-1)
    candidate_idxs = candidate_idxs.view(-1)
    l_ = ep_priors_cx[candidate_idxs].view(-1, num_gt) - gt_bboxes[:, 0]
    t_ = ep_priors_cy[candidate_idxs].view(-1, num_gt) - gt_bboxes[:, 1]
    r_ = gt_bboxes[:, 2] - ep_priors_cx[candidate_idxs].view(-1, num_gt)
    b_ = gt_bboxes[:, 3] - ep_priors_cy[candidate_idxs].view(-1, num_gt)
    is_in_gts = torch.stack([l_, t_, r_, b_], dim=1).min(dim=1)[0] > 0.01
    is_pos = is_pos & is_in_gts
    extras["positive_pairs"] = candidate_idxs.view(-1)[is_pos.view(-1)]   # gt * num_priors + anchor
    overlaps_inf = torch.full_like(overlaps, -INF).t().contiguous().view(-1)
    index = candidate_idxs.view(-1)[is_pos.view(-1)]
    overlaps_inf[index] = overlaps.t().contiguous().view(-1)[index]
    overlaps_inf = overlaps_inf.view(num_gt, -1).t()
    max_overlaps, argmax_overlaps = overlaps_inf.max(dim=1)
    assigned_gt_inds[max_overlaps != -INF] = argmax_overlaps[max_overlaps != -INF] + 1
    extras["overlaps"] = overlaps
    return assigned_gt_inds, max_overlaps, extras


# ------------------------------------------------------------------ case construction and checks
def flat(t):
    """Float32 values as their shortest round-tripping decimals (decimal -> Double -> Float32 gives
    back the same bits: checked)."""
    vals = []
    for v in t.detach().reshape(-1).to(torch.float32).numpy():
        d = float(np.format_float_positional(v, unique=True, trim="-")) if np.isfinite(v) else float(v)
        assert np.float32(d) == v or (np.isnan(v) and np.isnan(d)), (v, d)
        vals.append(int(d) if d.is_integer() and abs(d) < 2 ** 24 else d)
    return vals


def grid_anchors(image_hw, shapes, sizes, ratios):
    gen = AnchorGenerator(sizes=tuple(tuple(s) for s in sizes), aspect_ratios=tuple(tuple(r) for r in ratios))
    images = ImageList(torch.zeros(1, 3, *image_hw), [image_hw])
    feats = [torch.zeros(1, 1, h, w) for h, w in shapes]
    a = gen(images, feats)[0]
    counts = [h * w * n for (h, w), n in zip(shapes, gen.num_anchors_per_location())]
    assert sum(counts) == a.shape[0]
    return a.to(torch.float32), counts


def qfine(x):
    """Corners on a 1/1024 px grid: exact in float32 below 8192 px, and gt centres rarely land at a
    point equidistant from two anchor centres (1/16 px made such ties common in 30-gt cases)."""
    return np.round(np.asarray(x, dtype=np.float64) * 1024) / 1024


def random_gts(rng, n, h, w, min_side=4, max_side=200, border=0.2, overlap=0.3, duplicate=False):
    """n boxes of 4-200 px sides (capped to the image), corners on a 1/1024 px grid; a share touches an
    image border, a share is a jittered copy of an earlier box (overlapping gts); with `duplicate` the
    last of the n is an exact copy of an earlier one (equal IoUs: the first gt must win)."""
    boxes = []
    for i in range(n - 1 if duplicate else n):
        if boxes and rng.rand() < overlap:
            b = np.array(boxes[rng.randint(len(boxes))])
            bw, bh = b[2] - b[0], b[3] - b[1]
            b = b + qfine(rng.uniform(-0.3, 0.3, 4) * np.array([bw, bh, bw, bh]))
        else:
            # Log-uniform sides: small boxes (the aircraft here are 16-64 px) as often as large ones.
            bw = min(math.exp(rng.uniform(math.log(min_side), math.log(max_side))), w - 1)
            bh = min(math.exp(rng.uniform(math.log(min_side), math.log(max_side))), h - 1)
            x1 = rng.uniform(0, w - bw)
            y1 = rng.uniform(0, h - bh)
            b = qfine([x1, y1, x1 + bw, y1 + bh])
            if rng.rand() < border:
                side = rng.randint(4)
                if side == 0: b[2] -= b[0]; b[0] = 0
                elif side == 1: b[3] -= b[1]; b[1] = 0
                elif side == 2: b[0] += w - b[2]; b[2] = w
                else: b[1] += h - b[3]; b[3] = h
        b[0], b[1] = max(b[0], 0), max(b[1], 0)
        b[2], b[3] = min(b[2], w, b[0] + max_side), min(b[3], h, b[1] + max_side)
        if b[2] - b[0] < min_side: b[2] = min(b[0] + min_side, w); b[0] = b[2] - min_side
        if b[3] - b[1] < min_side: b[3] = min(b[1] + min_side, h); b[1] = b[3] - min_side
        boxes.append(list(b))
    if duplicate and boxes:
        boxes.append(list(boxes[rng.randint(len(boxes))]))
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def well_defined(priors, counts, gts, topk):
    """True when the reference's result does not depend on tie order or on the threshold's last bits."""
    if gts.shape[0] == 0:
        return True
    _, _, ex = atss_assign(priors, counts, gts, topk)
    d = ex["distances"]
    start = 0
    for n in counts:
        k = min(topk, n)
        if k < n:
            s, _ = d[start:start + n].sort(dim=0)
            if not bool((s[k - 1] < s[k]).all()):
                return False
        start += n
    co = ex["candidate_overlaps"]                      # [C, G] float32
    c64 = co.double()
    thr64 = c64.mean(0) + c64.std(0)
    mix = (c64.mean(0).float() + c64.std(0).float())
    a = co >= ex["thresholds"][None, :]
    b = c64 >= thr64[None, :]
    c = co >= mix[None, :]
    if not (bool((a == b).all()) and bool((a == c).all())):
        return False
    return True


def record(name, priors, counts, gts, topk, attempts=1):
    inds, maxo, ex = atss_assign(priors, counts, gts, topk)
    matches = [int(i) - 1 for i in inds.tolist()]
    quality = torch.where(inds > 0, maxo, torch.zeros_like(maxo))
    case = {"name": name, "topk": topk, "counts": counts, "anchors": flat(priors), "gt": flat(gts),
            "matches": matches, "quality": flat(quality),
            # NaN (a single candidate) is written as null: JSON has no NaN.
            "thresholds": [None if math.isnan(t) else t for t in flat(ex["thresholds"])] if ex is not None else []}
    npos = sum(1 for m in matches if m >= 0)
    claimed = 0
    if ex is not None:
        anchors_of_pairs = (ex["positive_pairs"] % priors.shape[0]).tolist()
        claimed = sum(1 for a in set(anchors_of_pairs) if anchors_of_pairs.count(a) > 1)
    print(f"{name}: {priors.shape[0]} anchors, levels {counts}, {gts.shape[0]} gts, topk {topk}, {npos} positives, "
          f"{claimed} anchors positive for several gts, drawn in {attempts} attempt(s)", file=sys.stderr)
    return case


def draw(rng, name, image_hw, shapes, sizes, ratios, n_gt, topk, duplicate=False, jitter=0.0, **kw):
    priors, counts = grid_anchors(image_hw, shapes, sizes, ratios)
    if jitter > 0:
        p = priors.double().numpy()
        wh = np.stack([p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]] * 2, axis=1)
        priors = torch.tensor(qfine(p + rng.uniform(-jitter, jitter, p.shape) * wh), dtype=torch.float32)
    for attempt in range(50):
        gts = random_gts(rng, n_gt, image_hw[0], image_hw[1], duplicate=duplicate, **kw)
        if well_defined(priors, counts, gts, topk):
            return record(name, priors, counts, gts, topk, attempt + 1)
    raise SystemExit(f"{name}: no tie-free draw in 50 attempts")


def tie_example():
    """Shows that torch.topk(largest=False) does not keep the lowest indices among equal values."""
    v = torch.full((600,), 5.0)
    v[300] = 1.0
    heap = v.topk(9, largest=False).indices.tolist()
    small = torch.tensor([5.0, 5.0, 1.0, 9.0, 5.0]).topk(2, largest=False).indices.tolist()
    print(f"torch.topk ties: 600 values (heap path) -> {heap}; [5,5,1,9,5] k=2 (nth_element path) -> {small}",
          file=sys.stderr)


def main():
    # torch warns on the single-candidate case's std (0 degrees of freedom): that NaN is the point.
    warnings.filterwarnings("ignore", message="std\\(\\): degrees of freedom")
    torch.manual_seed(0)
    rng = np.random.RandomState(20261130)
    tie_example()
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__,
           "mmdet_atss_commit": "adc8ffa53beac76c08ec39719853f18e378d5184",
           "mmdet_bbox_overlaps_commit": "19bceba56284d440278e80cfde1d95460330ccbb"}
    cases = []
    r3 = (0.5, 1.0, 2.0)
    oct3 = lambda x: (x, x * 2 ** (1 / 3), x * 2 ** (2 / 3))
    # The RetinaNet bench pyramid: 256 px, P3-P7 grids 32..2, 9 anchors per location (12,276).
    bench_sizes = [(x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in [16, 32, 64, 128, 256]]
    bench_shapes = [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    cases.append(draw(rng, "bench_256_30gt", (256, 256), bench_shapes, bench_sizes, [r3] * 5, 30, 9, duplicate=True))
    cases.append(draw(rng, "bench_256_10gt", (256, 256), bench_shapes, bench_sizes, [r3] * 5, 10, 9))
    # Random pyramids: 1-5 levels, image sides not multiples of the stride, 1/3/9 anchors per location.
    for i in range(16):
        levels = rng.randint(1, 6)
        h, w = int(rng.randint(48, 321)), int(rng.randint(48, 321))
        a_per = [1, 3, 9][rng.randint(3)]
        ratios = {1: (1.0,), 3: r3, 9: r3}[a_per]
        # Stride 4 only on small images, which keeps every random case under ~13k anchors (fixture size).
        first = int(rng.choice([4, 8, 16] if h * w <= 128 * 128 else [8, 16]))
        shapes, sizes = [], []
        for l in range(levels):
            stride = first * 2 ** l
            shapes.append((max(1, math.ceil(h / stride)), max(1, math.ceil(w / stride))))
            base = 2.0 * stride if rng.rand() < 0.5 else 4.0 * stride
            sizes.append(oct3(base) if a_per == 9 else (base,))
        topk = 9 if (a_per != 1 or rng.rand() < 0.7) else 3
        n_gt = int(rng.randint(1, 31))
        cases.append(draw(rng, f"random_{i}", (h, w), shapes, sizes, [ratios] * levels, n_gt, topk,
                          duplicate=(i % 5 == 0), max_side=min(200, max(8, min(h, w) - 2))))
    # A pyramid whose top level has fewer than 9 anchors (1 x 2 grid, 3 anchors per location: 6).
    cases.append(draw(rng, "small_top_level", (96, 160), [(12, 20), (6, 10), (3, 5), (1, 2)],
                      [(16.0,), (32.0,), (64.0,), (128.0,)], [r3] * 4, 12, 9))
    # topk 3 on 3 anchors per location; topk 1 (the nearest anchor per level only).
    cases.append(draw(rng, "topk3", (128, 128), [(16, 16), (8, 8), (4, 4)], [(16.0,), (32.0,), (64.0,)], [r3] * 3, 15, 3))
    cases.append(draw(rng, "topk1", (128, 128), [(16, 16), (8, 8), (4, 4)], [(16.0,), (32.0,), (64.0,)], [(1.0,)] * 3, 8, 1))
    # Off-grid priors (jittered anchors): the assigner must not assume a grid.
    cases.append(draw(rng, "jittered", (160, 160), [(20, 20), (10, 10), (5, 5)], [oct3(16.0), oct3(32.0), oct3(64.0)],
                      [r3] * 3, 20, 9, jitter=0.15))
    # One candidate per gt: a single level, topk 1. torch.std of one value is NaN (unbiased), so the
    # threshold is NaN and nothing is positive.
    cases.append(draw(rng, "single_candidate", (64, 64), [(8, 8)], [(16.0,)], [(1.0,)], 5, 1))
    # No gts: everything negative.
    p, c = grid_anchors((128, 96), [(16, 12), (8, 6)], [(16.0,), (32.0,)], [r3] * 2)
    cases.append(record("no_gt", p, c, torch.zeros(0, 4), 9))
    out["cases"] = cases
    assert len(cases) >= 20
    single = next(c for c in cases if c["name"] == "single_candidate")
    assert single["gt"] and all(m < 0 for m in single["matches"]) and all(t is None for t in single["thresholds"])
    print(json.dumps(out, separators=(",", ":"), allow_nan=False))


if __name__ == "__main__":
    main()
