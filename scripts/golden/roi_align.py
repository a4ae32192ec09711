"""Golden values for RoIAlign from torchvision's own code: torchvision.ops.roi_align (the CPU kernel
torchvision/csrc/ops/cpu/roi_align_kernel.cpp with roi_align_common.h) forward values and the gradient
with respect to the features, torchvision.ops.MultiScaleRoIAlign (torchvision/ops/poolers.py) forward
and feature gradients, and poolers.LevelMapper on chosen boxes.

Usage (from the repo root):
  /tmp/qat-reference-venv/bin/python scripts/golden/roi_align.py \
      > Tests/DetectionTests/Fixtures/roi_align.json

Cases:
- roi_align: every combination of aligned (True, False) x sampling_ratio (0, 1, 2, 3) x output size
  (1x1, 2x3, 7x7), 24 cases, plus 4 extra ones (3 images, spatial scale 1/3, a 16x16 output, huge RoIs
  with adaptive sampling). Feature maps of 1-3 images with 1-2 channels and 4-16 rows/columns; spatial
  scales 1, 1/2, 1/4, 1/8, 1/3; RoIs inside the map, partly outside, wholly outside (beyond -1 and
  beyond H), tiny (under one feature pixel), huge (2-5 times the image), zero-sized, and inverted
  (x2 < x1; only where torchvision defines the result: aligned=False forces the size to 1, or a fixed
  sampling ratio). In half the cases the coordinates are multiples of 1/4 input pixel, so samples land
  exactly on integer positions, on -1, on H - 1 and on H (the reference's boundary rules). The upstream
  gradient is standard normal.
- multiscale: MultiScaleRoIAlign over 3-5 FPN levels (strides 4..128 of a 256 px input, and one
  256x192 input), 8-200 px boxes over 1-2 images, sampling ratios 2, 1 and 0, canonical parameters
  (224, 4) and custom ones (32, 3) and (64, 5). With (224, 4) every 8-200 px box maps to level 3 or
  below, so those cases on P3-P5 / P3-P7 pool everything from P3 and one P2-P5 case splits the boxes
  over P2 and P3. One case adds an inverted box, whose NaN level leaves its output row zero in
  torchvision. MultiScaleRoIAlign calls roi_align with its default aligned=False.
- level_mapper: LevelMapper(k_min, k_max, canonical_scale, canonical_level) on boxes whose sqrt(area)
  is exactly canonical_scale * 2^j (the eps boundary), zero-area boxes and random boxes.
"""
import json
import numpy as np
import torch
import torchvision
from torchvision.ops import roi_align, MultiScaleRoIAlign
from torchvision.ops.poolers import LevelMapper

torch.manual_seed(0)
rng = np.random.RandomState(2026)
out = {"torch": torch.__version__, "torchvision": torchvision.__version__}


def flat(t):
    """Float32 values as their shortest round-tripping decimals (checked: decimal -> Double -> Float32,
    the path the Swift tests take, gives back the same bits)."""
    vals = []
    for v in torch.as_tensor(t).detach().reshape(-1).to(torch.float32).numpy():
        d = float(np.format_float_positional(v, unique=True, trim="-")) if np.isfinite(v) else float(v)
        assert np.float32(d) == v or (np.isnan(v) and np.isnan(d)), (v, d)
        vals.append(int(d) if d.is_integer() and abs(d) < 2 ** 24 else d)
    return vals


def f32(x):
    return float(np.float32(x))


def coord(v, quarter):
    return round(v * 4) / 4 if quarter else v


def random_rois(n_images, img_h, img_w, count, kinds, quarter, allow_inverted):
    rois = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        b = int(rng.randint(n_images))
        if kind == "inside":
            w, h = rng.uniform(1, img_w * 0.6), rng.uniform(1, img_h * 0.6)
            x1, y1 = rng.uniform(0, img_w - w), rng.uniform(0, img_h - h)
        elif kind == "partial":
            w, h = rng.uniform(img_w * 0.2, img_w * 0.8), rng.uniform(img_h * 0.2, img_h * 0.8)
            x1, y1 = rng.uniform(-w * 0.8, img_w - w * 0.2), rng.uniform(-h * 0.8, img_h - h * 0.2)
            if rng.rand() < 0.5:
                x1 = img_w - w * 0.3
        elif kind == "outside":
            w, h = rng.uniform(2, img_w * 0.3), rng.uniform(2, img_h * 0.3)
            side = rng.randint(4)
            x1 = [-w - rng.uniform(img_w * 0.2, img_w * 0.5), img_w * 1.3, rng.uniform(0, img_w), rng.uniform(0, img_w)][side]
            y1 = [rng.uniform(0, img_h), rng.uniform(0, img_h), -h - rng.uniform(img_h * 0.2, img_h * 0.5), img_h * 1.3][side]
        elif kind == "tiny":
            w, h = rng.uniform(0.01, 0.5), rng.uniform(0.01, 0.5)
            x1, y1 = rng.uniform(0, img_w), rng.uniform(0, img_h)
        elif kind == "huge":
            w, h = rng.uniform(2, 5) * img_w, rng.uniform(2, 5) * img_h
            x1, y1 = rng.uniform(-w * 0.6, 0), rng.uniform(-h * 0.6, 0)
        elif kind == "zero":
            w, h = 0.0, rng.uniform(1, img_h * 0.5)
            x1, y1 = rng.uniform(0, img_w), rng.uniform(0, img_h - h)
        elif kind == "full":
            # The whole image, exactly: samples near and on H - 1 and H.
            x1, y1, w, h = 0.0, 0.0, float(img_w), float(img_h)
        elif kind == "border":
            # Corners one feature pixel outside the map: samples on -1 and beyond.
            x1, y1, w, h = -img_w * 0.25, -img_h * 0.25, img_w * 1.5, img_h * 1.5
        else:
            raise ValueError(kind)
        x2, y2 = x1 + w, y1 + h
        if kind in ("inside", "partial", "outside", "tiny", "huge"):
            x1, y1, x2, y2 = (coord(v, quarter) for v in (x1, y1, x2, y2))
        if allow_inverted and i == count - 1:
            x1, x2 = x2, x1 - rng.uniform(0.5, 3)
        rois.append([float(b), x1, y1, x2, y2])
    return torch.tensor(rois, dtype=torch.float32).reshape(-1, 5)


def single_case(aligned, sampling, output, n_images, channels, h, w, scale, count, kinds, quarter):
    img_h, img_w = h / scale, w / scale
    allow_inverted = (not aligned) or sampling > 0
    rois = random_rois(n_images, img_h, img_w, count, kinds, quarter, allow_inverted)
    feats = torch.randn(n_images, channels, h, w, dtype=torch.float32, requires_grad=True)
    y = roi_align(feats, rois, output_size=output, spatial_scale=scale, sampling_ratio=sampling, aligned=aligned)
    g = torch.randn_like(y)
    y.backward(g)
    return {
        "aligned": aligned, "sampling_ratio": sampling, "output_size": list(output),
        "spatial_scale": flat(torch.tensor([scale]))[0], "shape": [n_images, channels, h, w],
        "features": flat(feats), "rois": flat(rois), "upstream": flat(g),
        "output": flat(y), "grad_features": flat(feats.grad),
    }


ALL_KINDS = ["inside", "partial", "outside", "tiny", "huge", "zero", "full", "border"]
scales = [1.0, 0.5, 0.25, 0.125, 1.0 / 3.0]
cases = []
k = 0
for aligned in (True, False):
    for sampling in (0, 1, 2, 3):
        for output in ((1, 1), (2, 3), (7, 7)):
            n_images = 1 + k % 2
            channels = 1 + (k // 2) % 2
            h, w = int(rng.randint(4, 17)), int(rng.randint(4, 17))
            scale = scales[k % 4]
            # Huge RoIs with adaptive sampling on a 7x7 output take up to ~10^5 samples: keep them.
            cases.append(single_case(aligned, sampling, output, n_images, channels, h, w, scale, 8,
                                     ALL_KINDS, quarter=(k % 2 == 0)))
            k += 1
extras = [
    # aligned, sampling, output, images, channels, h, w, scale, count, kinds, quarter
    (True, 2, (3, 3), 3, 2, 9, 12, 1.0 / 3.0, 9, ["inside", "partial", "tiny"], True),
    (False, 0, (4, 2), 3, 1, 15, 6, 1.0 / 3.0, 6, ["inside", "border", "full"], False),
    (True, 0, (16, 16), 1, 1, 12, 12, 0.5, 3, ["huge", "inside", "partial"], False),
    (False, 0, (7, 7), 2, 1, 8, 8, 0.125, 4, ["huge", "huge", "full", "border"], True),
]
for e in extras:
    cases.append(single_case(*e))
out["roi_align"] = cases


# ---------------------------------------------------------------- MultiScaleRoIAlign
def boxes_px(n, img_h, img_w, lo, hi):
    b = []
    for _ in range(n):
        w, h = rng.uniform(lo, hi), rng.uniform(lo, hi)
        x1, y1 = rng.uniform(-0.1 * w, img_w - 0.9 * w), rng.uniform(-0.1 * h, img_h - 0.9 * h)
        b.append([x1, y1, x1 + w, y1 + h])
    return torch.tensor(b, dtype=torch.float32).reshape(-1, 4)


def multiscale_case(levels, image, image_shapes, per_image, output, sampling, canonical, channels, inverted=False):
    names = [f"p{l}" for l in levels]
    feats = {}
    for l, name in zip(levels, names):
        s = 2 ** l
        feats[name] = torch.randn(len(per_image), channels, image[0] // s, image[1] // s, requires_grad=True)
    boxes = [boxes_px(n, image[0], image[1], 8, 200) for n in per_image]
    if inverted:
        boxes[0][0] = torch.tensor([60.0, 50.0, 40.0, 90.0])
    pooler = MultiScaleRoIAlign(names, output, sampling, canonical_scale=canonical[0], canonical_level=canonical[1])
    y = pooler(feats, boxes, image_shapes)
    g = torch.randn_like(y)
    y.backward(g)
    if inverted:
        assert float(y[0].detach().abs().sum()) == 0.0, "torchvision pooled an inverted box"
    return {
        "levels": levels, "image_size": list(image), "image_shapes": [list(s) for s in image_shapes],
        "output_size": list(output), "sampling_ratio": sampling,
        "canonical_scale": canonical[0], "canonical_level": canonical[1],
        "shapes": [list(feats[n].shape) for n in names],
        "features": [flat(feats[n]) for n in names],
        "boxes": [flat(b) for b in boxes],
        "scales": pooler.scales, "upstream": flat(g), "output": flat(y),
        "grad_features": [flat(feats[n].grad) if feats[n].grad is not None else None for n in names],
    }


out["multiscale"] = [
    multiscale_case([3, 4, 5], (256, 256), [(256, 256), (256, 256)], [6, 5], (7, 7), 2, (224, 4), 2),
    multiscale_case([3, 4, 5], (256, 256), [(256, 256)], [12], (7, 7), 2, (32, 3), 1),
    # P2-P5: with the default canonical parameters only a pyramid starting at P2 splits 8-200 px boxes.
    multiscale_case([2, 3, 4, 5], (256, 256), [(256, 256)], [12], (3, 3), 0, (224, 4), 1),
    multiscale_case([3, 4, 5, 6, 7], (256, 256), [(256, 256), (256, 256)], [8, 6], (2, 3), 2, (64, 5), 1),
    multiscale_case([3, 4, 5, 6, 7], (256, 256), [(256, 256)], [14], (4, 4), 1, (224, 4), 2),
    # A 256x192 input; the images' own sizes differ and the pooler takes the largest of each side.
    multiscale_case([3, 4, 5], (256, 192), [(256, 180), (240, 192)], [4, 4], (7, 7), 2, (32, 3), 1),
    multiscale_case([3, 4, 5], (256, 256), [(256, 256), (256, 256)], [5, 3], (2, 2), 2, (32, 3), 1, inverted=True),
]


# ---------------------------------------------------------------- LevelMapper
def mapper_boxes(canonical_scale):
    sides = [canonical_scale * 2.0 ** j for j in range(-4, 3)]
    b = [[10.0, 20.0, 10.0 + s, 20.0 + s] for s in sides]
    b += [[5.0, 5.0, 5.0, 40.0], [0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 3.5, 4.25]]
    for _ in range(40):
        w, h = np.exp(rng.uniform(np.log(2), np.log(600), size=2))
        x, y = rng.uniform(0, 300, size=2)
        b.append([x, y, x + w, y + h])
    return torch.tensor(b, dtype=torch.float32)


mappers = []
for k_min, k_max, s0, l0 in [(2, 5, 224, 4), (3, 5, 224, 4), (3, 7, 32, 3), (3, 7, 64, 5), (3, 6, 48.5, 4)]:
    boxes = mapper_boxes(s0)
    levels = LevelMapper(k_min, k_max, canonical_scale=s0, canonical_level=l0)([boxes])
    mappers.append({"k_min": k_min, "k_max": k_max, "canonical_scale": s0, "canonical_level": l0,
                    "boxes": flat(boxes), "levels": [int(v) for v in levels]})
out["level_mapper"] = mappers

print(json.dumps(out))
