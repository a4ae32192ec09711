"""Golden values for the Detection target's TaskAlignedAssigner: mmdetection's task-aligned assignment
(TOOD, Feng et al., ICCV 2021) and TOODHead's target normalisation, copied below as plain torch because
mmdetection is not installed in the reference venv.

Usage (from the repo root):
  /tmp/qat-reference-venv/bin/python scripts/golden/task_aligned.py \
      > Tests/DetectionTests/Fixtures/task_aligned.json

Reference code (open-mmlab/mmdetection, v3.x):
- mmdet/models/task_modules/assigners/task_aligned_assigner.py, `TaskAlignedAssigner.assign`
  (alpha=1, beta=6 defaults, topk 13 in TOOD's configs), without `gt_instances_ignore`.
- mmdet/models/dense_heads/tood_head.py, `_get_targets_single`: per gt,
  norm = metric / (max metric of its positives + 10e-8) * max IoU of its positives.
- mmdet/structures/bbox/bbox_overlaps.py, `bbox_overlaps(mode='iou')`: the copy in scripts/golden/atss.py, imported.
The class score `pred_scores[:, gt_labels]` becomes the class-agnostic foreground score (one column):
the decoupled detector's rule never reads a type label.

Output convention (the Swift one): per anchor the 0-based gt index or -1; metric and iou of the assigned
pair (0 for negatives); quality = the normalised target (0 for negatives).

Cases: anchors from torchvision's AnchorGenerator; scores uniform in (0.01, 0.99); predicted boxes = the
anchors moved and rescaled at random, and for a share of the anchors near each gt a jittered copy of
that gt (so metrics are spread and several anchors compete for each gt). Each case is redrawn until the
k-th and (k+1)-th largest metric of every gt differ by more than 1e-4 relative (torch.topk leaves tie
order undefined, and torch's vectorised pow may differ from powf by an ulp) and no anchor is claimed by
two gts with IoUs closer than 1e-5.
"""
import json, math, sys
import numpy as np
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from atss import bbox_overlaps, flat, grid_anchors   # mmdet's bbox_overlaps, as copied there

INF = 100000000


def task_aligned_assign(priors, decode_bboxes, scores, gt_bboxes, topk, alpha=1, beta=6):
    """TaskAlignedAssigner.assign with a one-column score. Returns (assigned_gt_inds 1-based, metrics,
    ious, alignment_metrics [A, G])."""
    num_gt, num_bboxes = gt_bboxes.size(0), priors.size(0)
    overlaps = bbox_overlaps(decode_bboxes, gt_bboxes).detach()
    bbox_scores = scores[:, None].expand(num_bboxes, num_gt).detach()
    assigned_gt_inds = priors.new_full((num_bboxes,), 0, dtype=torch.long)
    assign_metrics = priors.new_zeros((num_bboxes,))
    if num_gt == 0 or num_bboxes == 0:
        return assigned_gt_inds, assign_metrics, priors.new_zeros((num_bboxes,)), None
    alignment_metrics = bbox_scores ** alpha * overlaps ** beta
    k = min(topk, alignment_metrics.size(0))
    _, candidate_idxs = alignment_metrics.topk(k, dim=0, largest=True)
    candidate_metrics = alignment_metrics[candidate_idxs, torch.arange(num_gt)]
    is_pos = candidate_metrics > 0
    priors_cx = (priors[:, 0] + priors[:, 2]) / 2.0
    priors_cy = (priors[:, 1] + priors[:, 3]) / 2.0
    for gt_idx in range(num_gt):
        candidate_idxs[:, gt_idx] += gt_idx * num_bboxes
    ep_priors_cx = priors_cx.view(1, -1).expand(num_gt, num_bboxes).contiguous().view(-1)
    ep_priors_cy = priors_cy.view(1, -1).expand(num_gt, num_bboxes).contiguous().view(-1)
    candidate_idxs = candidate_idxs.view(-1)
    l_ = ep_priors_cx[candidate_idxs].view(-1, num_gt) - gt_bboxes[:, 0]
    t_ = ep_priors_cy[candidate_idxs].view(-1, num_gt) - gt_bboxes[:, 1]
    r_ = gt_bboxes[:, 2] - ep_priors_cx[candidate_idxs].view(-1, num_gt)
    b_ = gt_bboxes[:, 3] - ep_priors_cy[candidate_idxs].view(-1, num_gt)
    is_in_gts = torch.stack([l_, t_, r_, b_], dim=1).min(dim=1)[0] > 0.01
    is_pos = is_pos & is_in_gts
    overlaps_inf = torch.full_like(overlaps, -INF).t().contiguous().view(-1)
    index = candidate_idxs.view(-1)[is_pos.view(-1)]
    overlaps_inf[index] = overlaps.t().contiguous().view(-1)[index]
    overlaps_inf = overlaps_inf.view(num_gt, -1).t()
    max_overlaps, argmax_overlaps = overlaps_inf.max(dim=1)
    pos = max_overlaps != -INF
    assigned_gt_inds[pos] = argmax_overlaps[pos] + 1
    assign_metrics[pos] = alignment_metrics[pos, argmax_overlaps[pos]]
    ious = torch.where(pos, max_overlaps, torch.zeros_like(max_overlaps))
    return assigned_gt_inds, assign_metrics, ious, (alignment_metrics, overlaps_inf, overlaps)


def tood_targets(assigned_gt_inds, metrics, ious):
    norm = torch.zeros_like(metrics)
    pos = (assigned_gt_inds > 0).nonzero().view(-1)
    gt_of_pos = assigned_gt_inds[pos] - 1
    for g in torch.unique(gt_of_pos):
        inds = pos[gt_of_pos == g]
        m, u = metrics[inds], ious[inds]
        norm[inds] = m / (m.max() + 10e-8) * u.max()
    return norm


def q(x):
    return np.round(np.asarray(x, dtype=np.float64) * 1024) / 1024


def random_gts(rng, n, h, w, lo=8, hi=96):
    boxes = []
    for _ in range(n):
        if boxes and rng.rand() < 0.25:   # overlapping neighbours compete for anchors
            b = np.array(boxes[rng.randint(len(boxes))])
            bw, bh = b[2] - b[0], b[3] - b[1]
            b = b + q(rng.uniform(-0.35, 0.35, 4) * np.array([bw, bh, bw, bh]))
        else:
            bw = math.exp(rng.uniform(math.log(lo), math.log(hi))); bh = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            b = q([x1, y1, x1 + bw, y1 + bh])
        b[0], b[1] = max(b[0], 0), max(b[1], 0)
        b[2], b[3] = max(min(b[2], w), b[0] + 4), max(min(b[3], h), b[1] + 4)
        boxes.append(list(b))
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def predictions(rng, priors, gts):
    p = priors.double().numpy()
    w, h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    cx, cy = (p[:, 0] + p[:, 2]) / 2 + rng.normal(0, 0.3, len(p)) * w, (p[:, 1] + p[:, 3]) / 2 + rng.normal(0, 0.3, len(p)) * h
    w, h = w * np.exp(rng.normal(0, 0.3, len(p))), h * np.exp(rng.normal(0, 0.3, len(p)))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    g = gts.double().numpy()
    pc = np.stack([(p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2], axis=1)
    for b in g:   # anchors whose centre is inside a gt predict a jittered copy of it half the time
        inside = (pc[:, 0] > b[0]) & (pc[:, 0] < b[2]) & (pc[:, 1] > b[1]) & (pc[:, 1] < b[3]) & (rng.rand(len(p)) < 0.5)
        bw, bh = b[2] - b[0], b[3] - b[1]
        jit = rng.normal(0, 0.12, (int(inside.sum()), 4)) * np.array([bw, bh, bw, bh])
        boxes[inside] = b + jit
    boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 0.5); boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1] + 0.5)
    scores = rng.uniform(0.01, 0.99, len(p))
    return torch.tensor(q(boxes), dtype=torch.float32), torch.tensor(np.round(scores * 2 ** 20) / 2 ** 20, dtype=torch.float32)


def well_defined(priors, pred, scores, gts, topk, alpha, beta):
    if gts.shape[0] == 0:
        return True
    inds, metrics, ious, ex = task_aligned_assign(priors, pred, scores, gts, topk, alpha, beta)
    am, oinf, overlaps = ex
    k = min(topk, am.shape[0])
    if k < am.shape[0]:
        s, _ = am.sort(dim=0, descending=True)
        kth, nxt = s[k - 1].double(), s[k].double()
        # a boundary tie only matters among positive metrics
        if bool(((kth - nxt) <= 1e-4 * kth).logical_and(kth > 0).any()):
            return False
    finite = oinf > -INF
    for j in range(oinf.shape[0]):
        v = oinf[j][finite[j]]
        if v.numel() > 1:
            top = v.sort(descending=True).values
            if float(top[0] - top[1]) <= 1e-5:
                return False
    return True


def record(name, priors, counts, pred, scores, gts, topk, alpha, beta, attempts):
    inds, metrics, ious, _ = task_aligned_assign(priors, pred, scores, gts, topk, alpha, beta)
    norm = tood_targets(inds, metrics, ious)
    matches = [int(i) - 1 for i in inds.tolist()]
    print(f"{name}: {priors.shape[0]} anchors, {gts.shape[0]} gts, topk {topk}, alpha {alpha}, beta {beta}, "
          f"{sum(m >= 0 for m in matches)} positives, drawn in {attempts} attempt(s)", file=sys.stderr)
    return {"name": name, "topk": topk, "alpha": alpha, "beta": beta, "counts": counts, "anchors": flat(priors),
            "predicted": flat(pred), "scores": flat(scores), "gt": flat(gts), "matches": matches,
            "metrics": flat(metrics), "ious": flat(ious), "quality": flat(norm)}


def draw(rng, name, image_hw, shapes, sizes, ratios, n_gt, topk=13, alpha=1, beta=6):
    priors, counts = grid_anchors(image_hw, shapes, sizes, ratios)
    for attempt in range(100):
        gts = random_gts(rng, n_gt, *image_hw) if n_gt else torch.zeros(0, 4)
        pred, scores = predictions(rng, priors, gts)
        if well_defined(priors, pred, scores, gts, topk, alpha, beta):
            return record(name, priors, counts, pred, scores, gts, topk, alpha, beta, attempt + 1)
    raise SystemExit(f"{name}: no tie-free draw in 100 attempts")


def main():
    rng = np.random.RandomState(20261201)
    r3 = (0.5, 1.0, 2.0)
    cases = []
    # The detector-noise cell pyramid: 256 px, P3-P5, sizes 16/32/64 with 3 octaves x 3 ratios.
    oct3 = lambda x: (x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3)))
    cases.append(draw(rng, "cell_256_12gt", (256, 256), [(32, 32), (16, 16), (8, 8)], [oct3(16), oct3(32), oct3(64)], [r3] * 3, 12))
    cases.append(draw(rng, "cell_256_3gt", (256, 256), [(32, 32), (16, 16), (8, 8)], [oct3(16), oct3(32), oct3(64)], [r3] * 3, 3))
    for i in range(6):
        h, w = int(rng.randint(64, 200)), int(rng.randint(64, 200))
        shapes = [(math.ceil(h / 8), math.ceil(w / 8)), (math.ceil(h / 16), math.ceil(w / 16))]
        cases.append(draw(rng, f"random_{i}", (h, w), shapes, [(16.0,), (32.0,)], [r3] * 2, int(rng.randint(1, 16)),
                          topk=int([13, 9, 5][i % 3])))
    cases.append(draw(rng, "alpha_half_beta_2", (128, 128), [(16, 16), (8, 8)], [(16.0,), (32.0,)], [r3] * 2, 8, alpha=0.5, beta=2))
    cases.append(draw(rng, "topk_1", (128, 128), [(16, 16), (8, 8)], [(16.0,), (32.0,)], [r3] * 2, 6, topk=1))
    p, c = grid_anchors((96, 96), [(12, 12)], [(16.0,)], [r3])
    pred, scores = predictions(rng, p, torch.zeros(0, 4))
    cases.append(record("no_gt", p, c, pred, scores, torch.zeros(0, 4), 13, 1, 6, 1))
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__, "cases": cases}
    print(json.dumps(out, separators=(",", ":"), allow_nan=False))


if __name__ == "__main__":
    main()
