"""Reference RetinaNet in torchvision for the detector parity check (ours within 2 points of this
script's fine-grained mAP50, mean of 2 seeds, both scored by pycocotools).

Usage:
  /tmp/qat-reference-venv/bin/python scripts/reference/retinanet_torch.py \
      --recipe RUN/recipe.resolved.yaml --data DIR --out OUT [--seed S] [--threads 2] \
      [--backbone-h5 CKPT.h5] [--max-minutes M]

Needs torch, torchvision, pycocotools, numpy, PIL, PyYAML (h5py only with --backbone-h5). PyYAML is
not part of the reference venv as set up by shared/tools/reference/setup.sh; it was added with
`/tmp/qat-reference-venv/bin/python -m pip install pyyaml` (6.0.4).

Inputs
  --recipe  a resolved recipe of ours (YAML). Read: seed, model.{backbone, width}, data.input_size,
            data.augment.{hflip, vflip, rot90, color_jitter, scale_crop, scale_range, min_visible},
            train.{epochs, steps, batch, optimizer, schedule, clip_grad_norm, ema, log_every,
            max_nonfinite}, eval.batch and the detector section `detector:` (or `model.detector:`)
            with fpn, head, anchors, matcher, loss, test. Missing detector keys take the defaults of
            shared/docs/ALGORITHMS.md section 5 and are listed in OUT/config.json ("defaulted").
  --data    a COCO folder: images/*, annotations/{train,val,test}.json (`qat data synth` writes one).
  --seed    overrides the recipe's seed (model init, sample order, augmentation).

Outputs in OUT
  config.json        the effective settings (every value used, defaults marked), versions.
  metrics.jsonl      one line per train.log_every steps: mean loss components over the window, lr,
                     gradient norm, wall seconds; a final {"type": "end"} line.
  results_test.json  COCO detections on the test split in original image coordinates.
  final.json         pycocotools stats on the test split (12 numbers), per-class AP50,
                     class-agnostic AP50, steps, seconds, ms/step.

What is torchvision's and what is ours
  The model is torchvision's RetinaNet, built as shared/tools/reference/bench_torch.py `retinanet()`
  does: BackboneWithFPN on mobilenet_v2(width).features taps (level 3: features 6, level 4: 13,
  level 5: 18; level 2 would be 3), LastLevelP6P7(ch, ch) for P6/P7, RetinaNetHead (GroupNorm(32) in
  the towers when head.group_norm), AnchorGenerator, Matcher, BoxCoder and torchvision's losses and
  post-processing. The recipe reaches into it at four places torchvision has no argument for:
  focal alpha/gamma (a subclass of the classification head whose compute_loss is torchvision's with
  the two constants exposed), the regression loss type (`regression_head._loss_type`), box weights
  (both BoxCoders) and a tower depth other than 4 (towers rebuilt with torchvision's init).
  The data side replicates Sources/Datasets: Augment.apply (order hflip, vflip, rot90, scale-crop,
  colour jitter; one draw per step whether or not it fires), then Augment.letterbox (longer side to
  input_size, bilinear with half-pixel centres, centred padding with 114), then (x - mean) / std on
  0..255 values. GeneralizedRCNNTransform is built with min_size = max_size = input_size, mean 0 and
  std 1; `check_transform_is_identity` verifies at start-up that it returns the batch unchanged.
  Random draws come from numpy/torch generators seeded by (seed, epoch, index), not our Philox
  streams: same distributions, different samples.

Known differences from our recipe semantics (torchvision cannot express them)
  - Crowd / `ignore: 1` annotations are dropped from training targets (torchvision's matcher has no
    ignore regions; ours treats anchors on them as neither positive nor negative). The test
    ground truth is scored as the file says (pycocotools honours iscrowd only).
  - Losses are normalised per image (sum / max(1, foreground anchors of that image)) and then
    averaged over the batch; smooth_l1 uses beta = 1.
  - Anchors are centred at (i * stride, j * stride) (no half-cell offset) and their corner
    offsets are rounded to integers (AnchorGenerator.generate_anchors).
  - The transform pads the batch to a multiple of 32 (a warning is printed for such input sizes).
  - The test split is scored with the final weights (the EMA weights when train.ema is set), not a
    best-on-val checkpoint.
  - With --max-minutes the schedule still spans all planned steps; training stops at the budget.
"""
import argparse, json, math, os, sys, time
from functools import partial

import numpy as np
import torch, torch.nn as nn, torchvision
import yaml
from PIL import Image
from torchvision.models.detection import RetinaNet
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import (RetinaNetClassificationHead, RetinaNetHead,
                                                    RetinaNetRegressionHead, _sum)
from torchvision.ops import misc as misc_nn_ops, sigmoid_focal_loss
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelP6P7

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
# mobilenet_v2.features index whose output is the last one at each stride 2^level.
MBV2_TAPS = {2: 3, 3: 6, 4: 13, 5: 18}
STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


class RecipeError(Exception):
    pass


# ---------------------------------------------------------------- recipe

class Settings:
    """Reads the recipe keys this script honours; records every default it fills in."""

    def __init__(self, tree):
        self.tree = tree if isinstance(tree, dict) else {}
        self.defaulted = []

    def get(self, path, default, node=None, prefix=""):
        cur = self.tree if node is None else node
        for part in path.split("."):
            if not isinstance(cur, dict) or cur.get(part) is None:
                self.defaulted.append(prefix + path)
                return default
            cur = cur[part]
        return cur


def read_recipe(path, seed_override):
    if not os.path.isfile(path):
        raise RecipeError(f"--recipe {path}: file not found")
    with open(path) as f:
        try:
            tree = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise RecipeError(f"--recipe {path}: not valid YAML ({e})")
    if "base" in tree:
        raise RecipeError(f"--recipe {path}: has 'base:'; pass a resolved recipe (a run's recipe.resolved.yaml)")
    s = Settings(tree)
    det = tree.get("detector")
    det_prefix = "detector."
    if det is None and isinstance(tree.get("model"), dict) and tree["model"].get("detector") is not None:
        det, det_prefix = tree["model"]["detector"], "model.detector."
    det = det or {}
    D = lambda key, default: s.get(key, default, node=det, prefix=det_prefix)
    c = {
        "recipe": os.path.abspath(path),
        "seed": int(seed_override if seed_override is not None else s.get("seed", 0)),
        "backbone": s.get("model.backbone", "mobilenet_v2"),
        "width": float(s.get("model.width", 0.5)),
        "input_size": int(s.get("data.input_size", 256)),
        "augment": {
            "hflip": float(s.get("data.augment.hflip", 0.5)), "vflip": float(s.get("data.augment.vflip", 0.5)),
            "rot90": float(s.get("data.augment.rot90", 0.5)), "color_jitter": float(s.get("data.augment.color_jitter", 0.0)),
            # Augment.Policy fields the classification recipe does not expose yet (defaults as in Swift).
            "scale_crop": float(s.get("data.augment.scale_crop", 0.0)),
            "scale_range": [float(v) for v in s.get("data.augment.scale_range", [0.8, 1.2])],
            "min_visible": float(s.get("data.augment.min_visible", 0.5)),
            "brightness": 0.1, "contrast": 0.1, "saturation": 0.2,
        },
        "epochs": int(s.get("train.epochs", 10)),
        "steps": s.get("train.steps", None),
        "batch": int(s.get("train.batch", 8)),
        "optimizer": {
            "name": s.get("train.optimizer.name", "sgd"), "lr": float(s.get("train.optimizer.lr", 0.01)),
            "momentum": float(s.get("train.optimizer.momentum", 0.9)), "nesterov": bool(s.get("train.optimizer.nesterov", False)),
            "weight_decay": float(s.get("train.optimizer.weight_decay", 1e-4)),
            "betas": [float(v) for v in s.get("train.optimizer.betas", [0.9, 0.999])],
        },
        "schedule": {
            "name": s.get("train.schedule.name", "cosine"), "warmup_steps": int(s.get("train.schedule.warmup_steps", 0)),
            "min_lr_ratio": float(s.get("train.schedule.min_lr_ratio", 0.0)),
            "milestones": [int(v) for v in s.get("train.schedule.milestones", [])],
            "gamma": float(s.get("train.schedule.gamma", 0.1)),
        },
        "clip_grad_norm": s.get("train.clip_grad_norm", None),
        "ema": s.get("train.ema", None),
        "log_every": int(s.get("train.log_every", 20)),
        "max_nonfinite": int(s.get("train.max_nonfinite", 5)),
        "eval_batch": int(s.get("eval.batch", 8)),
        "fpn": {"channels": int(D("fpn.channels", 64)), "levels": [int(v) for v in D("fpn.levels", [3, 4, 5, 6, 7])]},
        "head": {"convs": int(D("head.convs", 4)), "group_norm": bool(D("head.group_norm", False)),
                 "prior_prob": float(D("head.prior_prob", 0.01))},
        "anchors": {"sizes": [float(v) for v in D("anchors.sizes", [16, 32, 64, 128, 256])],
                    "scales": [float(v) for v in D("anchors.scales", [1.0, 2 ** (1 / 3), 2 ** (2 / 3)])],
                    "ratios": [float(v) for v in D("anchors.ratios", [0.5, 1.0, 2.0])],
                    "integer_sizes": bool(D("anchors.integer_sizes", True))},
        "matcher": {"fg_iou": float(D("matcher.fg_iou", 0.5)), "bg_iou": float(D("matcher.bg_iou", 0.4)),
                    "low_quality": bool(D("matcher.low_quality", True))},
        "loss": {"focal_alpha": float(D("loss.focal_alpha", 0.25)), "focal_gamma": float(D("loss.focal_gamma", 2.0)),
                 "regression": D("loss.regression", "l1"),
                 "box_weights": [float(v) for v in D("loss.box_weights", [1.0, 1.0, 1.0, 1.0])]},
        "test": {"score_threshold": float(D("test.score_threshold", 0.05)), "topk": int(D("test.topk", 1000)),
                 "nms_iou": float(D("test.nms_iou", 0.5)), "max_detections": int(D("test.max_detections", 100))},
    }
    c["defaulted"] = s.defaulted
    validate(c, path)
    return c


def validate(c, path):
    def bad(key, msg):
        raise RecipeError(f"--recipe {path}: {key}: {msg}")
    if c["backbone"] != "mobilenet_v2":
        bad("model.backbone", f"only mobilenet_v2 is built by this reference, got {c['backbone']!r}")
    if c["optimizer"]["name"] not in ("sgd", "adam", "adamw"):
        bad("train.optimizer.name", f"sgd, adam or adamw, got {c['optimizer']['name']!r}")
    if c["schedule"]["name"] not in ("constant", "cosine", "step"):
        bad("train.schedule.name", f"constant, cosine or step, got {c['schedule']['name']!r}")
    if c["loss"]["regression"] not in ("l1", "giou", "smooth_l1"):
        bad("detector.loss.regression", f"l1, giou or smooth_l1, got {c['loss']['regression']!r}")
    lv = c["fpn"]["levels"]
    if not lv or lv != list(range(lv[0], lv[0] + len(lv))) or lv[0] < 2 or lv[0] > 5 or lv[-1] > 7:
        bad("detector.fpn.levels", f"a contiguous range starting in 2..5 and ending at most at 7 (e.g. [3, 4, 5, 6, 7]), got {lv}")
    if len(c["anchors"]["sizes"]) != len(lv):
        bad("detector.anchors.sizes", f"one base size per FPN level ({len(lv)} levels), got {c['anchors']['sizes']}")
    if c["head"]["group_norm"] and c["fpn"]["channels"] % 32:
        bad("detector.head.group_norm", f"GroupNorm(32) needs fpn.channels divisible by 32, got {c['fpn']['channels']}")
    if c["head"]["convs"] < 0:
        bad("detector.head.convs", f"must be >= 0, got {c['head']['convs']}")
    if not 0 < c["head"]["prior_prob"] < 1:
        bad("detector.head.prior_prob", f"must be in (0, 1), got {c['head']['prior_prob']}")
    if len(c["loss"]["box_weights"]) != 4:
        bad("detector.loss.box_weights", f"four numbers (wx, wy, ww, wh), got {c['loss']['box_weights']}")
    if c["batch"] < 1 or c["eval_batch"] < 1:
        bad("train.batch / eval.batch", "must be >= 1")
    if len(c["optimizer"]["betas"]) != 2:
        bad("train.optimizer.betas", f"two numbers, got {c['optimizer']['betas']}")


# ---------------------------------------------------------------- data (Sources/Datasets/Augment.swift)

def round_half_away(v):
    """Swift's Double.rounded() (to nearest, ties away from zero)."""
    return np.where(v >= 0, np.floor(v + 0.5), -np.floor(-v + 0.5))


def resize_bilinear(img, w, h):
    """Augment.resize: half-pixel centres, source clamped at 0 and at the last row/column, Double maths."""
    H, W, _ = img.shape
    if w == W and h == H:
        return img
    sx, sy = W / w, H / h
    fy = np.maximum(0.0, (np.arange(h) + 0.5) * sy - 0.5)
    y0 = np.minimum(fy.astype(np.int64), H - 1); y1 = np.minimum(y0 + 1, H - 1); ty = (fy - y0)[:, None, None]
    fx = np.maximum(0.0, (np.arange(w) + 0.5) * sx - 0.5)
    x0 = np.minimum(fx.astype(np.int64), W - 1); x1 = np.minimum(x0 + 1, W - 1); tx = (fx - x0)[None, :, None]
    src = img.astype(np.float64)
    a, b = src[y0][:, x0], src[y0][:, x1]
    d, e = src[y1][:, x0], src[y1][:, x1]
    v = (a * (1 - tx) + b * tx) * (1 - ty) + (d * (1 - tx) + e * tx) * ty
    return np.clip(round_half_away(v), 0, 255).astype(np.uint8)


def letterbox(img, boxes, size, fill=114):
    """Augment.letterbox. boxes: [N, 4] xywh. Returns image, boxes, (kx, ky, dx, dy)."""
    H, W, C = img.shape
    if W == size and H == size:
        return img, boxes, (1.0, 1.0, 0, 0)
    k = size / max(W, H)
    w = max(1, int(round_half_away(np.float64(W * k)))); h = max(1, int(round_half_away(np.float64(H * k))))
    r = resize_bilinear(img, w, h)
    kx, ky = w / W, h / H  # Augment.resize scales boxes by the realised ratios
    dx, dy = (size - w) // 2, (size - h) // 2
    out = np.full((size, size, C), fill, dtype=np.uint8)
    out[dy:dy + h, dx:dx + w] = r
    b = boxes.copy()
    if len(b):
        b[:, 0] = b[:, 0] * kx + dx; b[:, 1] = b[:, 1] * ky + dy; b[:, 2] *= kx; b[:, 3] *= ky
    return out, b, (kx, ky, dx, dy)


def flip_h(img, boxes):
    W = img.shape[1]
    b = boxes.copy()
    if len(b): b[:, 0] = W - boxes[:, 0] - boxes[:, 2]
    return img[:, ::-1].copy(), b


def flip_v(img, boxes):
    H = img.shape[0]
    b = boxes.copy()
    if len(b): b[:, 1] = H - boxes[:, 1] - boxes[:, 3]
    return img[::-1].copy(), b


def rotate90(img, boxes, quarter_turns):
    """Clockwise quarter turns: new (x', y') = (h - 1 - y, x); box [h - y - bh, x, bh, bw]."""
    for _ in range(quarter_turns % 4):
        H = img.shape[0]
        img = np.rot90(img, k=-1).copy()
        if len(boxes):
            boxes = np.stack([H - boxes[:, 1] - boxes[:, 3], boxes[:, 0], boxes[:, 3], boxes[:, 2]], 1)
    return img, boxes


def crop(img, boxes, labels, x, y, w, h, min_visible):
    out = img[y:y + h, x:x + w].copy()
    keep_b, keep_l = [], []
    for bb, l in zip(boxes, labels):
        x0, y0 = max(bb[0], x), max(bb[1], y)
        x1, y1 = min(bb[0] + bb[2], x + w), min(bb[1] + bb[3], y + h)
        if x1 - x0 >= 1 and y1 - y0 >= 1 and (x1 - x0) * (y1 - y0) >= min_visible * bb[2] * bb[3]:
            keep_b.append([x0 - x, y0 - y, x1 - x0, y1 - y0]); keep_l.append(l)
    return out, np.array(keep_b, dtype=np.float64).reshape(-1, 4), np.array(keep_l, dtype=np.int64)


def random_scale_crop(img, boxes, labels, lo, hi, min_visible, rng):
    H, W, C = img.shape
    k = lo + (hi - lo) * rng.random()
    w = max(1, int(round_half_away(np.float64(W * k)))); h = max(1, int(round_half_away(np.float64(H * k))))
    r = resize_bilinear(img, w, h)
    b = boxes.copy()
    if len(b): b[:, [0, 2]] *= w / W; b[:, [1, 3]] *= h / H
    if w < W or h < H:  # zero canvas, image at the top-left (Augment.randomScaleCrop)
        canvas = np.zeros((max(h, H), max(w, W), C), dtype=np.uint8)
        canvas[:h, :w] = r
        r = canvas
    ox = int(rng.integers(0, r.shape[1] - W + 1)); oy = int(rng.integers(0, r.shape[0] - H + 1))
    return crop(r, b, labels, ox, oy, W, H, min_visible)


def color_jitter(img, brightness, contrast, saturation, rng):
    b = (rng.random() * 2 - 1) * brightness * 255
    c = 1 + (rng.random() * 2 - 1) * contrast
    sat = 1 + (rng.random() * 2 - 1) * saturation
    px = img.astype(np.float64)
    mean = px.mean()
    ch = img.shape[2]
    out = img.copy()
    if ch >= 3:
        gray = 0.299 * px[..., 0] + 0.587 * px[..., 1] + 0.114 * px[..., 2]
        v = gray[..., None] + (px[..., :3] - gray[..., None]) * sat
    else:
        v = px[..., :min(ch, 3)]
    v = (v - mean) * c + mean + b
    out[..., :v.shape[2]] = np.clip(round_half_away(v), 0, 255).astype(np.uint8)
    return out


def augment(img, boxes, labels, a, rng):
    """Augment.apply: six draws up front, then each step in order with a child stream for the rest."""
    d = rng.random(6)
    child = np.random.default_rng(rng.integers(0, 2 ** 63))
    if d[0] < a["hflip"]: img, boxes = flip_h(img, boxes)
    if d[1] < a["vflip"]: img, boxes = flip_v(img, boxes)
    if d[2] < a["rot90"]: img, boxes = rotate90(img, boxes, 1 + int(d[3] * 3))
    if d[4] < a["scale_crop"]:
        img, boxes, labels = random_scale_crop(img, boxes, labels, a["scale_range"][0], a["scale_range"][1], a["min_visible"], child)
    if d[5] < a["color_jitter"]: img = color_jitter(img, a["brightness"], a["contrast"], a["saturation"], child)
    return img, boxes, labels


class COCOSplit:
    """One split of a COCO folder: decoded images (cached), boxes xywh, contiguous labels."""

    def __init__(self, root, split, cat_index):
        path = os.path.join(root, "annotations", f"{split}.json")
        if not os.path.isfile(path):
            raise RecipeError(f"--data {root}: {path} does not exist (expected annotations/{{train,val,test}}.json)")
        with open(path) as f:
            self.json = json.load(f)
        self.path = path
        self.root = root
        self.images = self.json["images"]
        per = {im["id"]: [] for im in self.images}
        self.ignored = 0
        for a in self.json["annotations"]:
            if a.get("iscrowd", 0) or a.get("ignore", 0):
                self.ignored += 1
                continue
            if a["category_id"] not in cat_index:
                raise RecipeError(f"{path}: annotation {a['id']} has category_id {a['category_id']} not in the categories")
            per[a["image_id"]].append((a["bbox"], cat_index[a["category_id"]]))
        self.targets = []
        for im in self.images:
            anns = per[im["id"]]
            self.targets.append((np.array([b for b, _ in anns], dtype=np.float64).reshape(-1, 4),
                                 np.array([l for _, l in anns], dtype=np.int64)))
        self.cache = {}

    def __len__(self):
        return len(self.images)

    def image(self, i):
        if i not in self.cache:
            p = os.path.join(self.root, "images", self.images[i]["file_name"])
            if not os.path.isfile(p):
                p = os.path.join(self.root, self.images[i]["file_name"])
            self.cache[i] = np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8)
        return self.cache[i]


def to_tensor(img):
    x = (img.astype(np.float32) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def train_sample(ds, i, c, seed, epoch):
    img = ds.image(i)
    boxes, labels = ds.targets[i]
    rng = np.random.default_rng([seed, epoch, i])
    img, boxes, labels = augment(img, boxes.copy(), labels.copy(), c["augment"], rng)
    img, boxes, _ = letterbox(img, boxes, c["input_size"])
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1) if len(boxes) else np.zeros((0, 4))
    ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])  # torchvision refuses degenerate boxes
    return to_tensor(img), {"boxes": torch.tensor(xyxy[ok], dtype=torch.float32), "labels": torch.tensor(labels[ok], dtype=torch.int64)}


# ---------------------------------------------------------------- model

class RecipeClassificationHead(RetinaNetClassificationHead):
    """torchvision's classification head with the focal loss's alpha and gamma from the recipe
    (torchvision hard-codes 0.25 and 2); compute_loss is otherwise torchvision's, line for line."""

    def __init__(self, in_channels, num_anchors, num_classes, prior_probability, norm_layer, alpha, gamma):
        super().__init__(in_channels, num_anchors, num_classes, prior_probability=prior_probability, norm_layer=norm_layer)
        self.alpha, self.gamma = alpha, gamma

    def compute_loss(self, targets, head_outputs, matched_idxs):
        losses = []
        cls_logits = head_outputs["cls_logits"]
        for targets_per_image, cls_logits_per_image, matched_idxs_per_image in zip(targets, cls_logits, matched_idxs):
            foreground_idxs_per_image = matched_idxs_per_image >= 0
            num_foreground = foreground_idxs_per_image.sum()
            gt_classes_target = torch.zeros_like(cls_logits_per_image)
            gt_classes_target[foreground_idxs_per_image,
                              targets_per_image["labels"][matched_idxs_per_image[foreground_idxs_per_image]]] = 1.0
            valid_idxs_per_image = matched_idxs_per_image != self.BETWEEN_THRESHOLDS
            losses.append(sigmoid_focal_loss(cls_logits_per_image[valid_idxs_per_image], gt_classes_target[valid_idxs_per_image],
                                             alpha=self.alpha, gamma=self.gamma, reduction="sum") / max(1, num_foreground))
        return _sum(losses) / len(targets)


class RecipeHead(RetinaNetHead):
    def __init__(self, in_channels, num_anchors, num_classes, norm_layer, prior, alpha, gamma):
        nn.Module.__init__(self)
        self.classification_head = RecipeClassificationHead(in_channels, num_anchors, num_classes, prior, norm_layer, alpha, gamma)
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, norm_layer=norm_layer)


def tower(ch, n, norm_layer):
    """A head tower of n conv(+norm)+ReLU blocks with torchvision's head init (N(0, 0.01), bias 0)."""
    t = nn.Sequential(*[misc_nn_ops.Conv2dNormActivation(ch, ch, norm_layer=norm_layer) for _ in range(n)])
    for m in t.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return t


class LastLevelP6(ExtraFPNBlock):
    """LastLevelP6P7 without P7 (levels ending at 6): P6 = conv3x3/2 on P5 (torchvision's init)."""

    def __init__(self, channels):
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, 2, 1)
        nn.init.kaiming_uniform_(self.p6.weight, a=1)
        nn.init.constant_(self.p6.bias, 0)

    def forward(self, p, c, names):
        p.append(self.p6(p[-1]))
        names.append("p6")
        return p, names


def build_model(c, num_classes):
    feats = torchvision.models.mobilenet_v2(width_mult=c["width"]).features
    levels = c["fpn"]["levels"]
    ch = c["fpn"]["channels"]
    body_levels = [l for l in levels if l <= 5]
    return_layers = {str(MBV2_TAPS[l]): str(i) for i, l in enumerate(body_levels)}
    in_channels = [feats[MBV2_TAPS[l]].out_channels for l in body_levels]
    extra = None
    if levels[-1] == 7:
        extra = LastLevelP6P7(ch, ch)
    elif levels[-1] == 6:
        extra = LastLevelP6(ch)
    backbone = BackboneWithFPN(feats, return_layers, in_channels, ch, extra_blocks=extra)
    a = c["anchors"]
    sizes = tuple(tuple((int(s * k) if a["integer_sizes"] else s * k) for k in a["scales"]) for s in a["sizes"])
    anchor_gen = AnchorGenerator(sizes, (tuple(a["ratios"]),) * len(levels))
    num_anchors = anchor_gen.num_anchors_per_location()[0]
    norm_layer = partial(nn.GroupNorm, 32) if c["head"]["group_norm"] else None
    head = RecipeHead(ch, num_anchors, num_classes, norm_layer, c["head"]["prior_prob"],
                      c["loss"]["focal_alpha"], c["loss"]["focal_gamma"])
    if c["head"]["convs"] != 4:
        head.classification_head.conv = tower(ch, c["head"]["convs"], norm_layer)
        head.regression_head.conv = tower(ch, c["head"]["convs"], norm_layer)
    weights = tuple(c["loss"]["box_weights"])
    head.regression_head.box_coder = det_utils.BoxCoder(weights=weights)
    head.regression_head._loss_type = c["loss"]["regression"]
    m, t = c["matcher"], c["test"]
    model = RetinaNet(backbone, num_classes=num_classes, min_size=c["input_size"], max_size=c["input_size"],
                      image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0], anchor_generator=anchor_gen, head=head,
                      proposal_matcher=det_utils.Matcher(m["fg_iou"], m["bg_iou"], allow_low_quality_matches=m["low_quality"]),
                      score_thresh=t["score_threshold"], nms_thresh=t["nms_iou"], detections_per_img=t["max_detections"],
                      topk_candidates=t["topk"])
    model.box_coder = det_utils.BoxCoder(weights=weights)
    return model, sizes


def check_transform_is_identity(model, size):
    """Our loader already letterboxes and normalises: torchvision's transform must not touch the batch."""
    g = torch.Generator().manual_seed(12345)
    imgs = [torch.randn(3, size, size, generator=g) for _ in range(2)]
    tg = [{"boxes": torch.tensor([[10.0, 20.0, 50.5, 61.25]]), "labels": torch.tensor([1])} for _ in range(2)]
    was = model.training
    rng_state = torch.get_rng_state()  # the training-mode resize draws from torch's RNG
    try:
        for mode in (True, False):
            model.train(mode)
            il, out_t = model.transform(imgs, [dict(t) for t in tg])
            padded = size if size % 32 == 0 else int(math.ceil(size / 32) * 32)
            if not torch.equal(il.tensors[:, :, :size, :size], torch.stack(imgs)) or il.tensors.shape[-1] != padded:
                raise RuntimeError("GeneralizedRCNNTransform changed the letterboxed batch; the reference would not match ours")
            if il.image_sizes != [(size, size)] * 2 or not all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(out_t, tg)):
                raise RuntimeError("GeneralizedRCNNTransform changed image sizes or boxes")
    finally:
        model.train(was)
        torch.set_rng_state(rng_state)
    if size % 32:
        print(f"warning: input_size {size} is not a multiple of 32; torchvision pads the batch to {padded} (zeros after normalisation)")


def load_backbone_h5(model, path):
    """Loads features.* of our HDF5 classification checkpoint into backbone.body (non-strict)."""
    import h5py, re
    if not os.path.isfile(path):
        raise RecipeError(f"--backbone-h5 {path}: file not found")
    snake = lambda s: re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s).lower()
    sd = model.state_dict()
    loaded, mismatched, file_keys = [], [], 0
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise RecipeError(f"--backbone-h5 {path}: not a readable HDF5 file ({e}); pass a checkpoint written by qat train")
    with f:
        for group in ("params", "buffers"):
            if group not in f:
                continue
            names = []
            f[group].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            for name in names:
                key = name.replace("/", ".")
                if not key.startswith("features."):
                    continue
                file_keys += 1
                parts = key.split(".")
                parts[-1] = snake(parts[-1])  # our buffers are runningMean/runningVar, torch's running_mean/running_var
                target = "backbone.body." + ".".join(parts[1:])
                arr = torch.from_numpy(np.asarray(f[group][name][()], dtype=np.float32))
                if target not in sd:
                    mismatched.append(f"{key}: no {target} in the detector")
                elif tuple(sd[target].shape) != tuple(arr.shape):
                    mismatched.append(f"{key}: checkpoint {list(arr.shape)}, detector {list(sd[target].shape)}")
                else:
                    with torch.no_grad():
                        sd[target].copy_(arr.to(sd[target].dtype))
                    loaded.append(target)
    body = [k for k in sd if k.startswith("backbone.body.") and not k.endswith("num_batches_tracked")]
    missing = sorted(set(body) - set(loaded))
    print(f"--backbone-h5 {path}: loaded {len(loaded)} of {len(body)} backbone tensors "
          f"({file_keys} features.* entries in the file, {len(mismatched)} not loaded, {len(missing)} backbone tensors left at init)")
    for m in mismatched[:5]:
        print("  not loaded:", m)
    if not loaded:
        raise RecipeError(f"--backbone-h5 {path}: no features.* tensor matched the detector backbone; is it a mobilenet_v2 checkpoint of the same model.width?")
    return {"loaded": len(loaded), "backbone_tensors": len(body), "not_loaded": mismatched, "left_at_init": missing}


# ---------------------------------------------------------------- optimisation (Sources/Optim, Training/Run.swift)

def make_optimizer(c, model):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # biases and norm parameters: no weight decay
    o = c["optimizer"]
    groups = [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if o["name"] == "sgd":
        return torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"] and o["momentum"] > 0)
    cls = torch.optim.AdamW if o["name"] == "adamw" else torch.optim.Adam
    return cls(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=1e-8)


def lr_factor(s, step, total):
    """LRSchedule.factor(at:) with warmupStartFactor 0.1 (TrainingRun.makeOptimizer)."""
    w = s["warmup_steps"]
    if step < w:
        return 0.1 + 0.9 * step / w
    if s["name"] == "constant":
        return 1.0
    if s["name"] == "step":
        return s["gamma"] ** sum(1 for m in s["milestones"] if m <= step)
    t = min(1.0, (step - w) / max(1, total - w))
    return s["min_lr_ratio"] + (1 - s["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * t))


class EMA:
    """ModelEMA: ema = d * ema + (1 - d) * param after each update; buffers copied."""

    def __init__(self, model, decay):
        self.decay = decay
        self.params = {k: v.detach().clone() for k, v in model.named_parameters()}
        self.buffers = {k: v.detach().clone() for k, v in model.named_buffers()}

    @torch.no_grad()
    def update(self, model):
        for k, v in model.named_parameters():
            self.params[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
        for k, v in model.named_buffers():
            self.buffers[k].copy_(v)

    @torch.no_grad()
    def copy_into(self, model):
        for k, v in model.named_parameters():
            v.copy_(self.params[k])
        for k, v in model.named_buffers():
            v.copy_(self.buffers[k])


# ---------------------------------------------------------------- evaluation

def to_coco(det, geo, info, cat_ids):
    """Detections (xyxy in the letterboxed input) as COCO results in the original image's pixels."""
    kx, ky, dx, dy = geo
    W, H = info["width"], info["height"]
    b = det["boxes"].double().numpy()
    x0 = np.clip((b[:, 0] - dx) / kx, 0, W); y0 = np.clip((b[:, 1] - dy) / ky, 0, H)
    x1 = np.clip((b[:, 2] - dx) / kx, 0, W); y1 = np.clip((b[:, 3] - dy) / ky, 0, H)
    return [{"image_id": info["id"], "category_id": cat_ids[int(det["labels"][j])],
             "bbox": [round(float(x0[j]), 3), round(float(y0[j]), 3), round(float(x1[j] - x0[j]), 3), round(float(y1[j] - y0[j]), 3)],
             "score": round(float(det["scores"][j]), 5)} for j in range(len(b))]


@torch.no_grad()
def predict(model, ds, c, cat_ids):
    model.eval()
    out = []
    for start in range(0, len(ds), c["eval_batch"]):
        idx = list(range(start, min(start + c["eval_batch"], len(ds))))
        imgs, geo = [], []
        for i in idx:
            img, _, g = letterbox(ds.image(i), np.zeros((0, 4)), c["input_size"])
            imgs.append(to_tensor(img)); geo.append(g)
        for i, det, g in zip(idx, model(imgs), geo):
            out += to_coco(det, g, ds.images[i], cat_ids)
    return out


def coco_eval(gt_json, dets, agnostic=False):
    import contextlib, copy, io
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = copy.deepcopy(gt_json)
    for a in gt["annotations"]:
        a.setdefault("area", a["bbox"][2] * a["bbox"][3])
        a.setdefault("iscrowd", 0)
    dets = copy.deepcopy(dets)
    if agnostic:
        gt["categories"] = [{"id": 1, "name": "object"}]
        for a in gt["annotations"]: a["category_id"] = 1
        for d in dets: d["category_id"] = 1
    if not dets:  # loadRes cannot take an empty list; nothing detected scores 0 where there is ground truth
        with_gt = {a["category_id"] for a in gt["annotations"] if not a["iscrowd"]}
        return [0.0] * 12, {x["id"]: (0.0 if x["id"] in with_gt else None) for x in gt["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        cd = cg.loadRes(dets)
        e = COCOeval(cg, cd, "bbox")
        e.evaluate(); e.accumulate(); e.summarize()
    per_class = {}
    prec = e.eval["precision"]  # [iou, recall, class, area, maxdets]; iou 0 = 0.50, area 0 = all, maxdets 2 = 100
    for k, cid in enumerate(e.params.catIds):
        p = prec[0, :, k, 0, 2]
        p = p[p > -1]
        per_class[cid] = float(p.mean()) if p.size else None  # None: no ground truth of that class
    return [float(v) for v in e.stats], per_class


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbone-h5", default=None)
    ap.add_argument("--max-minutes", type=float, default=None)
    a = ap.parse_args()
    try:
        run(a)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run(a):
    if a.threads < 1:
        raise RecipeError(f"--threads must be >= 1, got {a.threads}")
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.use_deterministic_algorithms(True, warn_only=True)
    c = read_recipe(a.recipe, a.seed)
    if os.path.isdir(a.out) and os.listdir(a.out):
        raise RecipeError(f"--out {a.out} exists and is not empty; choose another folder")

    cats_path = os.path.join(a.data, "annotations", "test.json")
    if not os.path.isfile(cats_path):
        raise RecipeError(f"--data {a.data}: annotations/test.json does not exist")
    with open(cats_path) as f:
        categories = sorted(json.load(f)["categories"], key=lambda x: x["id"])
    cat_ids = [x["id"] for x in categories]
    cat_index = {cid: i for i, cid in enumerate(cat_ids)}
    train, test = COCOSplit(a.data, "train", cat_index), COCOSplit(a.data, "test", cat_index)
    if len(train) < c["batch"]:
        raise RecipeError(f"train.batch {c['batch']} is larger than the train split ({len(train)} images in {train.path}); lower train.batch")

    torch.manual_seed(c["seed"])
    model, anchor_sizes = build_model(c, len(cat_ids))
    check_transform_is_identity(model, c["input_size"])
    h5_report = load_backbone_h5(model, a.backbone_h5) if a.backbone_h5 else None
    opt = make_optimizer(c, model)
    os.makedirs(a.out, exist_ok=True)  # only once recipe, data, model and checkpoint are in place
    base_lrs = [g["lr"] for g in opt.param_groups]
    ema = EMA(model, float(c["ema"])) if c["ema"] is not None else None

    per_epoch = len(train) // c["batch"]  # drop_last, as TrainingRun
    total = int(c["steps"]) if c["steps"] is not None else c["epochs"] * per_epoch
    cfg = dict(c, anchor_sizes_per_level=[list(s) for s in anchor_sizes], steps_planned=total, batches_per_epoch=per_epoch,
               threads=a.threads, max_minutes=a.max_minutes, backbone_h5=a.backbone_h5, backbone_h5_report=h5_report,
               data=os.path.abspath(a.data), classes=[x["name"] for x in categories],
               dropped_ignored_train_annotations=train.ignored, torch=torch.__version__, torchvision=torchvision.__version__,
               parameters=sum(p.numel() for p in model.parameters()))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"retinanet_torch: mobilenet_v2 x{c['width']}, FPN {c['fpn']['channels']} levels {c['fpn']['levels']}, "
          f"{len(cat_ids)} classes, {cfg['parameters']} parameters; {len(train)} train images "
          f"({train.ignored} crowd/ignore annotations dropped), {total} steps of batch {c['batch']}, seed {c['seed']}, {a.threads} threads")

    metrics = open(os.path.join(a.out, "metrics.jsonl"), "w")
    model.train()
    step, order_epoch, order = 0, -1, None
    window = {"loss": 0.0, "classification": 0.0, "bbox_regression": 0.0, "grad_norm": 0.0, "n": 0}
    nonfinite, consecutive = 0, 0
    budget = a.max_minutes * 60 if a.max_minutes is not None else None
    stopped_by_budget = False
    step_times = []
    start = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    clip = float(c["clip_grad_norm"]) if c["clip_grad_norm"] is not None else float("inf")
    while step < total:
        if budget is not None and time.perf_counter() - start >= budget:
            stopped_by_budget = True
            break
        t0 = time.perf_counter()
        epoch, b = divmod(step, per_epoch)
        if epoch != order_epoch:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(c["seed"] * 1_000_003 + epoch)).tolist()
            order_epoch = epoch
        batch = [train_sample(train, i, c, c["seed"], epoch) for i in order[b * c["batch"]:(b + 1) * c["batch"]]]
        f = lr_factor(c["schedule"], step, total)
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * f
        opt.zero_grad(set_to_none=True)
        losses = model([x for x, _ in batch], [t for _, t in batch])
        loss = losses["classification"] + losses["bbox_regression"]
        gn = float("nan")
        if torch.isfinite(loss):
            loss.backward()
            gn = float(torch.nn.utils.clip_grad_norm_(params, clip))
        if torch.isfinite(loss) and math.isfinite(gn):
            opt.step()
            if ema: ema.update(model)
            consecutive = 0
            window["loss"] += loss.item(); window["classification"] += losses["classification"].item()
            window["bbox_regression"] += losses["bbox_regression"].item(); window["grad_norm"] += gn; window["n"] += 1
        else:
            nonfinite += 1; consecutive += 1
            opt.zero_grad(set_to_none=True)
            metrics.write(json.dumps({"type": "nonfinite", "step": step + 1, "loss": str(loss.item()), "grad_norm": str(gn)}) + "\n")
            if consecutive >= c["max_nonfinite"]:
                raise RecipeError(f"stopped: {consecutive} non-finite steps in a row at step {step + 1} (train.max_nonfinite); lower the lr or set clip_grad_norm")
        step += 1
        step_times.append(time.perf_counter() - t0)
        if step % c["log_every"] == 0 or step == total:
            n = max(1, window["n"])
            rec = {"type": "train", "step": step, "epoch": epoch, "lr": base_lrs[0] * f,
                   "loss": window["loss"] / n, "classification": window["classification"] / n,
                   "bbox_regression": window["bbox_regression"] / n, "grad_norm": window["grad_norm"] / n,
                   "steps_in_window": window["n"], "seconds": round(time.perf_counter() - start, 3)}
            metrics.write(json.dumps(rec) + "\n"); metrics.flush()
            print(f"step {step}/{total} loss {rec['loss']:.4f} (cls {rec['classification']:.4f}, box {rec['bbox_regression']:.4f}) "
                  f"lr {rec['lr']:.4g} {rec['seconds']:.0f} s", flush=True)
            window = {k: 0.0 if k != "n" else 0 for k in window}
    seconds = time.perf_counter() - start
    if step % c["log_every"] and window["n"]:  # partial window left by the time budget
        n = window["n"]
        metrics.write(json.dumps({"type": "train", "step": step, "epoch": (step - 1) // per_epoch, "lr": opt.param_groups[0]["lr"],
                                  "loss": window["loss"] / n, "classification": window["classification"] / n,
                                  "bbox_regression": window["bbox_regression"] / n, "grad_norm": window["grad_norm"] / n,
                                  "steps_in_window": n, "seconds": round(seconds, 3)}) + "\n")
    metrics.write(json.dumps({"type": "end", "step": step, "seconds": round(seconds, 3), "stopped_by_budget": stopped_by_budget,
                              "nonfinite_steps": nonfinite}) + "\n")
    metrics.close()

    if ema: ema.copy_into(model)
    t_eval = time.perf_counter()
    dets = predict(model, test, c, cat_ids)
    with open(os.path.join(a.out, "results_test.json"), "w") as f:
        json.dump(dets, f)
    stats, per_class = coco_eval(test.json, dets)
    agn_stats, _ = coco_eval(test.json, dets, agnostic=True)
    eval_seconds = time.perf_counter() - t_eval
    names = {x["id"]: x["name"] for x in categories}
    final = {
        "split": "test", "stats": stats, "stats_names": STAT_NAMES, "mAP50": stats[1], "mAP": stats[0],
        "per_class_ap50": {names[k]: v for k, v in per_class.items()},
        "class_agnostic_ap50": agn_stats[1], "class_agnostic_stats": agn_stats,
        "detections": len(dets), "test_images": len(test),
        "steps": step, "steps_planned": total, "seconds": round(seconds, 3),
        "ms_per_step": round(1000 * seconds / max(1, step), 2),
        "ms_per_step_median": round(1000 * float(np.median(step_times)), 2) if step_times else None,
        "eval_seconds": round(eval_seconds, 3), "stopped_by_budget": stopped_by_budget, "nonfinite_steps": nonfinite,
        "seed": c["seed"], "threads": a.threads, "ema": c["ema"] is not None,
        "dropped_ignored_train_annotations": train.ignored,
    }
    with open(os.path.join(a.out, "final.json"), "w") as f:
        json.dump(final, f, indent=1)
    print(f"test: mAP50 {stats[1]:.4f}, mAP {stats[0]:.4f}, class-agnostic AP50 {agn_stats[1]:.4f}, {len(dets)} detections; "
          f"{step} steps in {seconds:.1f} s ({final['ms_per_step']} ms/step); wrote {a.out}")


if __name__ == "__main__":
    main()
