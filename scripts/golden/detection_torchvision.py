"""Golden values for the Detection target from torchvision's own code: AnchorGenerator, BoxCoder,
Matcher, box_iou / generalized_box_iou, sigmoid_focal_loss, generalized_box_iou_loss, l1_loss, nms,
batched_nms (both of its paths) and RetinaNet.postprocess_detections.

Usage (from the repo root):
  /tmp/qat-reference-venv/bin/python scripts/golden/detection_torchvision.py \
      > Tests/DetectionTests/Fixtures/torchvision_detection.json

Cases:
- anchors: the bench configuration (sizes 16..256 with int-truncated 2^(1/3), 2^(2/3) scales, ratios
  0.5/1/2, 256 px image, P3-P7 grids 32..2), exact (untruncated) scales on a 100x130 image whose
  sides the grids do not divide, and per-level ratio lists with uneven aspect ratios.
- box coder: random boxes and anchors, weights (1,1,1,1) and (10,10,5,5); decode codes include size
  deltas above the log(1000/16) clamp.
- matcher: random quality matrices on a coarse grid (so ties are common), values exactly at float32
  0.4 / 0.5, a ground truth with no overlap at all, with and without low-quality matches; and the
  whole path box_iou(gt, bench anchors) -> Matcher.
- IoU / GIoU matrices on random boxes including identical, nested, touching and disjoint pairs.
- losses: value and input gradients for a fixed upstream gradient; GIoU cases include shared
  coordinates (ties in min/max) and identical boxes.
- nms / batched_nms: clustered random boxes with many exactly equal scores, thresholds 0.5 and 0.7;
  batched_nms at 300 boxes (the offset trick) and 1200 boxes (per-class path, distinct scores; a
  second 1200-box case with equal scores records only the kept set, whose order torchvision leaves
  to an unstable sort).
- postprocess: two images on a 128 px bench-style pyramid, 3 classes; logits are distinct multiples
  of 1/1024 (no score ties, which torchvision's topk would order arbitrarily) and regression values
  multiples of 1/256, both from integer formulas the Swift test repeats (see the postprocess section).
"""
import json, math, types
import numpy as np
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.ops import boxes as box_ops
from torchvision.ops import sigmoid_focal_loss, generalized_box_iou_loss
import torch.nn.functional as F

torch.manual_seed(0)
out = {"torch": torch.__version__, "torchvision": torchvision.__version__}


def flat(t):
    """Float32 values as their shortest round-tripping decimals (checked: decimal -> Double -> Float32,
    the path the Swift tests take, gives back the same bits)."""
    vals = []
    for v in t.detach().reshape(-1).to(torch.float32).numpy():
        d = float(np.format_float_positional(v, unique=True, trim="-")) if np.isfinite(v) else float(v)
        assert np.float32(d) == v or (np.isnan(v) and np.isnan(d)), (v, d)
        vals.append(int(d) if d.is_integer() and abs(d) < 2 ** 24 else d)
    return vals


def ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


# ---------------------------------------------------------------- anchors
def anchors_case(name, sizes, ratios, shapes, image_hw, base_sizes=None, truncate=None):
    gen = AnchorGenerator(sizes=sizes, aspect_ratios=ratios)
    images = ImageList(torch.zeros(1, 3, *image_hw), [image_hw])
    feats = [torch.zeros(1, 1, h, w) for h, w in shapes]
    a = gen(images, feats)[0]
    counts = [h * w * n for (h, w), n in zip(shapes, gen.num_anchors_per_location())]
    return {"name": name, "sizes": [[float(s) for s in lv] for lv in sizes], "aspect_ratios": [list(r) for r in ratios],
            "base_sizes": base_sizes, "truncate": truncate,
            "feature_shapes": [list(s) for s in shapes], "image_size": list(image_hw),
            "anchors": flat(a), "counts": counts}


bench_base = [16, 32, 64, 128, 256]
bench_sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in bench_base)
exact_base = [32, 64]
exact_sizes = tuple((x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)) for x in exact_base)
out["anchors"] = [
    anchors_case("bench", bench_sizes, ((0.5, 1.0, 2.0),) * 5, [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)], (256, 256),
                 base_sizes=bench_base, truncate=True),
    anchors_case("exact_scales", exact_sizes, ((0.5, 1.0, 2.0),) * 2, [(13, 17), (7, 9)], (100, 130),
                 base_sizes=exact_base, truncate=False),
    anchors_case("per_level_ratios", ((20,), (40, 50)), ((1.0,), (0.25, 0.7, 3.0)), [(8, 6), (4, 3)], (64, 48)),
]


# ---------------------------------------------------------------- boxes
def random_boxes(n, lo=0.0, hi=200.0, min_size=1.0, max_size=80.0):
    xy = torch.empty(n, 2).uniform_(lo, hi)
    wh = torch.empty(n, 2).uniform_(min_size, max_size)
    return torch.cat([xy, xy + wh], dim=1)


# ---------------------------------------------------------------- box coder
coder_cases = []
for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
    coder = det_utils.BoxCoder(weights)
    anchors = random_boxes(40)
    gt = random_boxes(40)
    codes = torch.randn(40, 4)
    codes[:5, 2:] = torch.tensor([[5.0, 9.0], [4.2, -3.0], [30.0, 4.1], [-6.0, 8.0], [4.135166, 4.135167]]) * torch.tensor(weights[2:])
    coder_cases.append({"weights": list(weights), "anchors": flat(anchors), "boxes": flat(gt), "codes": flat(codes),
                        "encoded": flat(coder.encode_single(gt, anchors)), "decoded": flat(coder.decode_single(codes, anchors))})
out["box_coder"] = coder_cases

# ---------------------------------------------------------------- IoU / GIoU
a = random_boxes(30)
b = random_boxes(40)
b[:5] = a[:5]                                         # identical
b[5] = torch.tensor([a[5, 0] + 1, a[5, 1] + 1, a[5, 2] - 1, a[5, 3] - 1])  # nested
b[6] = torch.tensor([a[6, 2], a[6, 1], a[6, 2] + 10, a[6, 3]])            # touching edge
b[7] = torch.tensor([500.0, 500.0, 510.0, 520.0])                         # disjoint from all
out["iou"] = {"a": flat(a), "b": flat(b), "iou": flat(box_ops.box_iou(a, b)), "giou": flat(box_ops.generalized_box_iou(a, b))}


# ---------------------------------------------------------------- matcher
def matcher_case(name, q, allow):
    m = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=allow)
    return {"name": name, "gt": q.shape[0], "anchors": q.shape[1], "allow_low_quality": allow,
            "quality": flat(q), "matches": ints(m(q.clone()))}


matcher_cases = []
for allow in [True, False]:
    q = (torch.randint(0, 13, (6, 50)).float() * 0.05)    # grid 0, 0.05, ... 0.6: many ties
    q[2] = 0.0                                            # a ground truth overlapping nothing
    q[3, 7] = torch.tensor(0.4, dtype=torch.float32)      # exactly at the float32 thresholds
    q[4, 8] = torch.tensor(0.5, dtype=torch.float32)
    matcher_cases.append(matcher_case(f"grid_allow{allow}", q, allow))
    q = torch.rand(4, 60) * 0.45                          # only low-quality candidates
    q[1, 10] = q[1].max()                                 # a tie for a ground truth's best
    q[1, 20] = q[1].max()
    matcher_cases.append(matcher_case(f"low_allow{allow}", q, allow))
out["matcher"] = matcher_cases

bench = out["anchors"][0]
bench_anchors = torch.tensor(bench["anchors"]).reshape(-1, 4)
gt = random_boxes(10, lo=0, hi=220, min_size=8, max_size=70)
gt[9] = torch.tensor([100.0, 100.0, 104.0, 103.0])       # tiny: only a low-quality match
m = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)
out["matcher_boxes"] = {"gt": flat(gt), "matches": ints(m(box_ops.box_iou(gt, bench_anchors)))}


# ---------------------------------------------------------------- losses
def with_grads(f, inputs, upstream_shape):
    xs = [x.clone().requires_grad_(True) for x in inputs]
    y = f(*xs)
    g = torch.randn(upstream_shape) if upstream_shape is not None else torch.tensor(1.0)
    y.backward(g)
    return flat(y.detach()), [flat(x.grad) for x in xs], flat(g)


focal_cases = []
logits = torch.randn(8, 5) * 3
logits[0, 0] = 0.0
targets = (torch.rand(8, 5) < 0.3).float()
for alpha, gamma, reduction in [(0.25, 2.0, "none"), (0.25, 2.0, "sum"), (0.25, 2.0, "mean"), (-1.0, 2.0, "none"), (0.5, 1.5, "sum")]:
    shape = (8, 5) if reduction == "none" else None
    value, grads, g = with_grads(lambda x: sigmoid_focal_loss(x, targets, alpha=alpha, gamma=gamma, reduction=reduction), [logits], shape)
    focal_cases.append({"alpha": alpha, "gamma": gamma, "reduction": reduction, "logits": flat(logits), "targets": flat(targets),
                        "upstream": g, "value": value, "grad_logits": grads[0]})
out["focal"] = focal_cases

pred = random_boxes(12, hi=60, max_size=40)
target = random_boxes(12, hi=60, max_size=40)
target[0] = pred[0]                                          # identical
target[1, 0] = pred[1, 0]; target[1, 3] = pred[1, 3]         # shared coordinates: min/max ties
target[2] = torch.tensor([200.0, 200.0, 230.0, 220.0])       # disjoint
giou_cases = []
for reduction in ["none", "sum", "mean"]:
    shape = (12,) if reduction == "none" else None
    value, grads, g = with_grads(lambda p, t: generalized_box_iou_loss(p, t, reduction=reduction), [pred, target], shape)
    giou_cases.append({"reduction": reduction, "pred": flat(pred), "target": flat(target), "upstream": g, "value": value,
                       "grad_pred": grads[0], "grad_target": grads[1]})
out["giou_loss"] = giou_cases

x = torch.randn(6, 4)
y = torch.randn(6, 4)
y[0, 0] = x[0, 0]                                            # zero difference: sign(0) = 0
l1_cases = []
for reduction in ["none", "sum", "mean"]:
    shape = (6, 4) if reduction == "none" else None
    value, grads, g = with_grads(lambda p, t: F.l1_loss(p, t, reduction=reduction), [x, y], shape)
    l1_cases.append({"reduction": reduction, "input": flat(x), "target": flat(y), "upstream": g, "value": value,
                     "grad_input": grads[0], "grad_target": grads[1]})
out["l1"] = l1_cases


# ---------------------------------------------------------------- NMS
def clustered(n, centres=25, spread=6.0):
    c = random_boxes(centres, hi=300, min_size=10, max_size=60)
    pick = torch.randint(0, centres, (n,))
    return c[pick] + torch.randn(n, 4) * spread * torch.tensor([1.0, 1.0, 1.0, 1.0])


nms_cases = []
for n, thr, levels in [(200, 0.5, 8), (200, 0.7, 8), (500, 0.5, 0), (40, 0.3, 1)]:
    boxes = clustered(n)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    # levels > 0: scores on a coarse grid, so many are exactly equal; 0: distinct (a permutation); 1: all equal.
    scores = (torch.randint(0, levels, (n,)).float() / levels) if levels > 0 else torch.randperm(n).float() / n
    nms_cases.append({"threshold": thr, "boxes": flat(boxes), "scores": flat(scores), "keep": ints(box_ops.nms(boxes, scores, thr))})
out["nms"] = nms_cases

batched_cases = []
for n, classes, thr, levels in [(300, 12, 0.5, 10), (300, 3, 0.6, 0), (1200, 12, 0.5, 0), (1200, 12, 0.5, 20)]:
    boxes = clustered(n, centres=60)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    if n == 300 and classes == 3:
        boxes -= 20.0                                        # negative coordinates: the offset trick's quirk
    scores = (torch.randint(0, levels, (n,)).float() / levels) if levels > 0 else torch.randperm(n).float() / n
    idxs = torch.randint(0, classes, (n,))
    keep = box_ops.batched_nms(boxes, scores, idxs, thr)
    batched_cases.append({"threshold": thr, "boxes": flat(boxes), "scores": flat(scores), "classes": ints(idxs),
                          "keep": ints(keep), "order_defined": not (n > 1000 and levels > 0)})
out["batched_nms"] = batched_cases

# ---------------------------------------------------------------- postprocess
pp_base = [8, 16, 32, 64, 128]
pp_sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in pp_base)
pp_shapes = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
pp_image = (128, 128)
gen = AnchorGenerator(sizes=pp_sizes, aspect_ratios=((0.5, 1.0, 2.0),) * 5)
per_level = [h * w * n for (h, w), n in zip(pp_shapes, gen.num_anchors_per_location())]
anchors = gen(ImageList(torch.zeros(2, 3, *pp_image), [pp_image] * 2), [torch.zeros(2, 1, h, w) for h, w in pp_shapes])
total = sum(per_level)
num_classes = 3
# Inputs from integer formulas the Swift test repeats (instead of 230 KB of stored numbers):
# logits (i * P_b) mod M - 4096 over the flat index i < M = anchors * classes, P_b prime to M, so all
# distinct (scores never tie), from -4 to about 5 once divided by 1024; regression values from a
# multiplicative hash in -256...256, /256, with the size deltas of the first 50 anchors at 3.5..6.2
# (some above the clamp).
M = total * num_classes
primes = [7919, 6151]
assert all(math.gcd(p, M) == 1 for p in primes)
logit_ints = torch.tensor([[(i * p) % M - 4096 for i in range(M)] for p in primes]).reshape(2, total, num_classes)


def reg_int(i):
    return (((i * 2654435761) % 2 ** 32) >> 16) % 513 - 256


reg_ints = torch.tensor([reg_int(i) for i in range(2 * total * 4)]).reshape(2, total, 4)
for b in range(2):
    for a in range(50):
        for k in (2, 3):
            reg_ints[b, a, k] = 900 + ((b * 50 + a) * 4 + k) * 37 % 700
logits = logit_ints.float() / 1024
regression = reg_ints.float() / 256
fake = types.SimpleNamespace(score_thresh=0.05, topk_candidates=1000, nms_thresh=0.5, detections_per_img=100,
                             box_coder=det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)))
head = {"cls_logits": list(logits.split(per_level, dim=1)), "bbox_regression": list(regression.split(per_level, dim=1))}
split_anchors = [list(a.split(per_level)) for a in anchors]
image_sizes = [(128, 128), (100, 120)]
dets = RetinaNet.postprocess_detections(fake, head, split_anchors, image_sizes)
out["postprocess"] = {
    "base_sizes": pp_base, "feature_shapes": [list(s) for s in pp_shapes], "image_size": list(pp_image),
    "num_classes": num_classes, "logit_primes": primes, "image_sizes": [list(s) for s in image_sizes],
    "detections": [{"boxes": flat(d["boxes"]), "scores": flat(d["scores"]), "labels": ints(d["labels"])} for d in dets],
}

print(json.dumps(out))
