"""Golden values for the Evaluation target: pycocotools' COCOeval (bbox) and the VOC devkit's AP on
seeded random and hand-built cases.

Usage (from the repo root):
  V=$(../shared/tools/reference/setup.sh)
  $V/bin/python scripts/golden/cocoeval.py > Tests/EvaluationTests/Fixtures/cocoeval_golden.json

Each case holds the text of a COCO ground-truth file (images with width/height/file_name, annotations with `area`,
`iscrowd` and sometimes `ignore`, categories), the text of a results file, and:
  stats            pycocotools' 12 summary numbers (useCats=1)
  agnostic_stats   the same with useCats=0 (every category counts as one: "does it find aircraft at all")
  per_class        per category (sorted id): AP = mean of precision[:, :, k, all, 100] > -1, AP50 likewise
                   at IoU 0.5 (-1 where the category has no ground truth, as pycocotools' -1)
  recall           eval['recall'] flattened in C order, T x K x A x M
  pr50             precision[0, :, k, all, 100] per category (the PR curve notebooks draw)
  precision        the whole T x R x K x A x M array, only for the single-image case (size)
  summary          pycocotools' printed 12 lines, only for one case
  voc_ap50         VOC AP at IoU > 0.5 per category, all-point ("all") and VOC07 11-point ("voc07");
                   null when the category has no non-difficult ground truth
The VOC reference below is the devkit's voc_eval/voc_ap written out, with two stated choices:
continuous coordinates (no +1 pixel, mmdet's use_legacy_coordinate=False), difficult = iscrowd or
ignore, and a stable score sort (the devkit's np.argsort is quicksort, whose tie order is unspecified).

Cases cover crowd boxes, empty images, images with detections but no ground truth, categories without
ground truth, categories with ground truth but no detections, equal scores, areas exactly on 32^2 and
96^2 (ground-truth `area` field and detection w*h), more than 100 detections per image and category,
touching boxes, tiny boxes, IoU exactly 0.5 / 0.75, `ignore: 1` on non-crowd boxes (pycocotools
overwrites `ignore` with `iscrowd`), no detections at all, and a single-image case.
"""
import contextlib, copy, io, json, random, sys
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

rng = random.Random(20240611)
cases = []


def coco_gt(dataset):
    gt = COCO()
    gt.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_dt(gt, results):
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(copy.deepcopy(results))
    # loadRes indexes results[0]; an empty result set is built by hand (what it would hold).
    dt = COCO()
    dt.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]), "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def run_cocoeval(dataset, results, use_cats=True):
    gt = coco_gt(dataset)
    dt = coco_dt(gt, results)
    E = COCOeval(gt, dt, "bbox")
    E.params.useCats = 1 if use_cats else 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        E.evaluate()
        E.accumulate()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        E.summarize()
    return E, text.getvalue()


def voc_ap(rec, prec, use_07_metric):
    """The devkit's voc_ap."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_eval(dataset, results, cat_id, ovthresh, use_07_metric):
    """The devkit's voc_eval for one class, boxes as [x, y, w, h] turned into continuous corners."""
    class_recs, npos = {}, 0
    for im in dataset["images"]:
        R = [a for a in dataset["annotations"] if a["image_id"] == im["id"] and a["category_id"] == cat_id]
        bbox = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in R]).reshape(-1, 4)
        difficult = np.array([bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0)) for a in R], dtype=bool)
        npos += int(np.sum(~difficult))
        class_recs[im["id"]] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(R)}
    if npos == 0:
        return None
    dets = [r for r in results if r["category_id"] == cat_id]
    confidence = np.array([r["score"] for r in dets], dtype=float)
    BB = np.array([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in dets]).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind="mergesort")
    BB = BB[sorted_ind, :]
    image_ids = [dets[x]["image_id"] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin, 0.0)
            ih = np.maximum(iymax - iymin, 0.0)
            inters = iw * ih
            uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (BBGT[:, 2] - BBGT[:, 0]) * (BBGT[:, 3] - BBGT[:, 1]) - inters
            overlaps = inters / np.maximum(uni, np.finfo(np.float64).eps)
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, use_07_metric)


def reference(name, dataset, results, full_precision=False, summary=False):
    E, text = run_cocoeval(dataset, results, use_cats=True)
    Ea, _ = run_cocoeval(dataset, results, use_cats=False)
    P = E.eval["precision"]
    cat_ids = sorted(c["id"] for c in dataset["categories"])
    per_class = []
    for k, cid in enumerate(cat_ids):
        s = P[:, :, k, 0, 2]
        s50 = P[0, :, k, 0, 2]
        per_class.append({
            "category_id": cid,
            "ap": float(np.mean(s[s > -1])) if np.any(s > -1) else -1.0,
            "ap50": float(np.mean(s50[s50 > -1])) if np.any(s50 > -1) else -1.0,
            "voc_ap50": {"all": voc_eval(dataset, results, cid, 0.5, False), "voc07": voc_eval(dataset, results, cid, 0.5, True)},
        })
    case = {
        "name": name,
        # As file text, so a reader sees exactly the bytes a file would hold.
        "gt": json.dumps(dataset),
        "results": json.dumps(results),
        "stats": [float(x) for x in E.stats],
        "agnostic_stats": [float(x) for x in Ea.stats],
        "per_class": per_class,
        "recall": [float(x) for x in E.eval["recall"].ravel()],
        "pr50": [[float(x) for x in P[0, :, k, 0, 2]] for k in range(len(cat_ids))],
    }
    if full_precision:
        case["precision"] = [float(x) for x in P.ravel()]
    if summary:
        case["summary"] = text
    cases.append(case)


# ---------------------------------------------------------------- builders

def r2(x):
    return round(x, 2)


def new_dataset(n_images, cat_ids, size=(64, 640)):
    ids = sorted(rng.sample(range(1, 5000), n_images))
    rng.shuffle(ids)  # file order is not id order
    images = []
    for i in ids:
        images.append({"id": i, "file_name": f"{i:06d}.png", "width": rng.randint(*size), "height": rng.randint(*size)})
    cats = [{"id": c, "name": f"type_{c}", "supercategory": "aircraft"} for c in cat_ids]
    rng.shuffle(cats)  # file order is not id order
    return {"images": images, "annotations": [], "categories": cats}


def add_gt(ds, image, cat, bbox, area=None, iscrowd=0, ignore=None):
    x, y, w, h = bbox
    assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"], (bbox, image)
    a = {"id": len(ds["annotations"]) + 1, "image_id": image["id"], "category_id": cat, "bbox": bbox,
         "area": area if area is not None else bbox[2] * bbox[3], "iscrowd": iscrowd}
    if ignore is not None:
        a["ignore"] = ignore
    ds["annotations"].append(a)
    return a


def random_box(image, lo=2.0, hi=None):
    W, H = image["width"], image["height"]
    hi = hi or 0.8 * min(W, H)
    side = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    w, h = min(r2(side * aspect), W - 0.01), min(r2(side / aspect), H - 0.01)
    w, h = max(w, 0.01), max(h, 0.01)
    x, y = r2(rng.uniform(0, W - w)), r2(rng.uniform(0, H - h))
    return [x, y, w, h]


def jitter(b, sigma):
    x, y, w, h = b
    nx = x + rng.gauss(0, sigma) * w
    ny = y + rng.gauss(0, sigma) * h
    nw = max(0.01, w * float(np.exp(rng.gauss(0, sigma))))
    nh = max(0.01, h * float(np.exp(rng.gauss(0, sigma))))
    return [r2(nx), r2(ny), r2(nw), r2(nh)]


def clip(b, image):
    x1, y1 = max(b[0], 0.0), max(b[1], 0.0)
    x2, y2 = min(b[0] + b[2], image["width"]), min(b[1] + b[3], image["height"])
    return [x1, y1, r2(x2 - x1), r2(y2 - y1)]


def score(tie_levels=None):
    if tie_levels:
        return rng.choice(tie_levels)
    return round(rng.random(), 4)


def random_area(b, border_prob):
    u = rng.random()
    if u < border_prob:
        return rng.choice([1024.0, 9216.0])
    if u < border_prob + 0.3:
        return round(b[2] * b[3] * rng.uniform(0.4, 1.0), 3)  # a segmentation-style area below the box's
    return b[2] * b[3]


def random_case(name, n_images, cat_ids, gt_per_image=6, fp_per_image=4, crowd=0.06, ignore=0.06,
                empty=0.2, det_prob=0.8, wrong_cat=0.1, ties=None, border_prob=0.1, extra_cats=(), **kw):
    ds = new_dataset(n_images, cat_ids)
    results = []
    for im in ds["images"]:
        if rng.random() < empty:
            n_gt = 0
        else:
            n_gt = rng.randint(1, gt_per_image)
        for _ in range(n_gt):
            b = random_box(im)
            c = rng.choice(cat_ids)
            is_crowd = 1 if rng.random() < crowd else 0
            ig = rng.choice([None, 1, 0]) if rng.random() < ignore * 2 else None
            if ig is None and rng.random() < ignore:
                ig = 1
            add_gt(ds, im, c, b, area=random_area(b, border_prob), iscrowd=is_crowd, ignore=ig)
            if rng.random() < det_prob:
                for _ in range(rng.choice([1, 1, 1, 2, 3])):
                    dc = c if rng.random() > wrong_cat else rng.choice(list(cat_ids) + list(extra_cats))
                    db = jitter(b, rng.choice([0.02, 0.05, 0.1, 0.2]))
                    results.append({"image_id": im["id"], "category_id": dc, "bbox": db, "score": score(ties)})
        for _ in range(rng.randint(0, fp_per_image)):
            dc = rng.choice(list(cat_ids) + list(extra_cats))
            results.append({"image_id": im["id"], "category_id": dc, "bbox": random_box(im), "score": score(ties)})
    rng.shuffle(results)
    reference(name, ds, results, **kw)


# ---------------------------------------------------------------- cases

# A single image: the only case that stores the whole precision array and the printed summary.
ds = new_dataset(1, [1, 2])
im = ds["images"][0]
im["width"], im["height"] = 320, 240
g1 = add_gt(ds, im, 1, [10.0, 10.0, 50.0, 40.0])
g2 = add_gt(ds, im, 1, [100.0, 20.0, 20.0, 20.0])
g3 = add_gt(ds, im, 2, [150.0, 100.0, 120.0, 100.0], area=9000.5)
res = [
    {"image_id": im["id"], "category_id": 1, "bbox": [12.0, 11.0, 48.0, 40.0], "score": 0.9},
    {"image_id": im["id"], "category_id": 1, "bbox": [100.0, 20.0, 20.0, 10.0], "score": 0.8},
    {"image_id": im["id"], "category_id": 1, "bbox": [200.0, 200.0, 30.0, 30.0], "score": 0.85},
    {"image_id": im["id"], "category_id": 2, "bbox": [155.0, 105.0, 110.0, 95.0], "score": 0.7},
    {"image_id": im["id"], "category_id": 2, "bbox": [150.0, 100.0, 120.0, 100.0], "score": 0.3},
]
reference("single_image", ds, res, full_precision=True, summary=True)

# IoU exactly 0.5 and 0.75 (COCO matches at >=, VOC needs >), IoU 1, and touching boxes (IoU 0).
ds = new_dataset(3, [5])
a, b, c = ds["images"]
for im in ds["images"]:
    im["width"], im["height"] = 400, 400
add_gt(ds, a, 5, [0.0, 0.0, 10.0, 10.0])
add_gt(ds, a, 5, [100.0, 100.0, 40.0, 40.0])
add_gt(ds, b, 5, [50.0, 50.0, 100.0, 100.0])
add_gt(ds, b, 5, [200.0, 200.0, 64.0, 64.0])
add_gt(ds, c, 5, [10.0, 10.0, 20.0, 20.0])
res = [
    {"image_id": a["id"], "category_id": 5, "bbox": [0.0, 0.0, 10.0, 5.0], "score": 0.9},      # IoU 0.5
    {"image_id": a["id"], "category_id": 5, "bbox": [100.0, 100.0, 40.0, 30.0], "score": 0.8},  # IoU 0.75
    {"image_id": b["id"], "category_id": 5, "bbox": [50.0, 50.0, 100.0, 100.0], "score": 0.7},  # IoU 1
    {"image_id": b["id"], "category_id": 5, "bbox": [264.0, 200.0, 30.0, 64.0], "score": 0.95},  # shares an edge
    {"image_id": b["id"], "category_id": 5, "bbox": [264.0, 264.0, 10.0, 10.0], "score": 0.6},  # shares a corner
    {"image_id": c["id"], "category_id": 5, "bbox": [30.0, 10.0, 20.0, 20.0], "score": 0.65},   # shares an edge
    {"image_id": c["id"], "category_id": 5, "bbox": [10.0, 10.0, 20.0, 10.0], "score": 0.5},    # IoU 0.5
]
reference("exact_iou_and_touching", ds, res)

# Crowd boxes: detections inside a crowd region are ignored (IoU = intersection / detection area);
# a crowd box can absorb several detections; a regular box next to it still counts.
ds = new_dataset(4, [1, 2])
for im in ds["images"]:
    im["width"], im["height"] = 512, 512
ims = ds["images"]
add_gt(ds, ims[0], 1, [0.0, 0.0, 300.0, 300.0], iscrowd=1, area=60000.0)
add_gt(ds, ims[0], 1, [320.0, 320.0, 60.0, 60.0])
add_gt(ds, ims[0], 1, [50.0, 50.0, 40.0, 40.0])  # a regular box inside the crowd region
add_gt(ds, ims[1], 2, [100.0, 100.0, 200.0, 150.0], iscrowd=1, area=20000.0)
add_gt(ds, ims[2], 1, [10.0, 10.0, 30.0, 30.0], iscrowd=1, area=500.0)
add_gt(ds, ims[3], 2, [200.0, 200.0, 100.0, 100.0])
add_gt(ds, ims[3], 2, [210.0, 210.0, 100.0, 100.0], iscrowd=1, area=10000.0)
res = []
for k in range(12):
    res.append({"image_id": ims[0]["id"], "category_id": 1, "bbox": [r2(rng.uniform(0, 260)), r2(rng.uniform(0, 260)), r2(rng.uniform(5, 40)), r2(rng.uniform(5, 40))], "score": score()})
res.append({"image_id": ims[0]["id"], "category_id": 1, "bbox": [321.0, 322.0, 58.0, 59.0], "score": 0.5})
res.append({"image_id": ims[0]["id"], "category_id": 1, "bbox": [51.0, 50.0, 40.0, 41.0], "score": 0.45})
for k in range(6):
    res.append({"image_id": ims[1]["id"], "category_id": 2, "bbox": jitter([100.0, 100.0, 200.0, 150.0], 0.2), "score": score()})
res.append({"image_id": ims[2]["id"], "category_id": 1, "bbox": [12.0, 12.0, 20.0, 20.0], "score": 0.99})
res.append({"image_id": ims[3]["id"], "category_id": 2, "bbox": [205.0, 205.0, 100.0, 100.0], "score": 0.9})
res.append({"image_id": ims[3]["id"], "category_id": 2, "bbox": [200.0, 200.0, 100.0, 100.0], "score": 0.8})
reference("crowd", ds, res)

# Empty images (no ground truth, some with detections, some with nothing), a category with only
# detections, a category with ground truth and no detections.
ds = new_dataset(8, [1, 2, 3, 4])
ims = ds["images"]
res = []
for im in ims[:3]:
    for _ in range(3):
        b = random_box(im, lo=10)
        add_gt(ds, im, 1, b)
        res.append({"image_id": im["id"], "category_id": 1, "bbox": jitter(b, 0.05), "score": score()})
    add_gt(ds, im, 2, random_box(im, lo=10))  # category 2: ground truth, never detected
for im in ims[3:6]:  # no ground truth, detections of every kind
    for c in [1, 2, 3]:
        res.append({"image_id": im["id"], "category_id": c, "bbox": random_box(im), "score": score()})
# ims[6:]: nothing at all; category 4: no ground truth, no detections; category 3: detections only
reference("empty_images_and_classes", ds, res)

# Equal scores everywhere: ties are broken by order (pycocotools' mergesort), per image and across images.
random_case("equal_scores_two_levels", 12, [1, 2, 3], ties=[0.5, 0.9])
random_case("equal_scores_one_level", 10, [7, 9], ties=[0.5])

# Areas exactly on 32^2 and 96^2: the ground truth's `area` field decides its range (inclusive at both
# ends, so 1024 is both small and medium); unmatched detections use w*h (32x32, 96x96, 16x64).
ds = new_dataset(6, [1, 2])
res = []
for im in ds["images"]:
    im["width"], im["height"] = 600, 600
    for c in [1, 2]:
        for side, area in [(32.0, 1024.0), (96.0, 9216.0), (40.0, 1024.0), (90.0, 9216.0), (31.99, None), (96.01, None)]:
            b = [r2(rng.uniform(0, 600 - side)), r2(rng.uniform(0, 600 - side)), side, side]
            add_gt(ds, im, c, b, area=area)
            if rng.random() < 0.7:
                res.append({"image_id": im["id"], "category_id": c, "bbox": jitter(b, 0.03), "score": score()})
        for w, h in [(32.0, 32.0), (96.0, 96.0), (16.0, 64.0), (48.0, 192.0)]:  # unmatched, w*h on a border
            res.append({"image_id": im["id"], "category_id": c, "bbox": [r2(rng.uniform(0, 400)), r2(rng.uniform(0, 400)), w, h], "score": score()})
reference("area_borders", ds, res)

# More than 100 detections per image and category: the per-image cut after the stable score sort.
ds = new_dataset(3, [1, 2])
res = []
for n, im in enumerate(ds["images"]):
    for c in [1, 2]:
        gts = [add_gt(ds, im, c, random_box(im, lo=8)) for _ in range(rng.randint(5, 15))]
        for _ in range([150, 101, 60][n]):
            if rng.random() < 0.5:
                b = jitter(rng.choice(gts)["bbox"], 0.1)
            else:
                b = random_box(im)
            res.append({"image_id": im["id"], "category_id": c, "bbox": b, "score": score([0.1, 0.2, 0.3]) if rng.random() < 0.3 else score()})
reference("over_100_dets", ds, res)

# Tiny boxes (sub-pixel to 3 px) next to each other.
ds = new_dataset(4, [1])
res = []
for im in ds["images"]:
    for _ in range(10):
        b = random_box(im, lo=0.2, hi=3.0)
        add_gt(ds, im, 1, b)
        if rng.random() < 0.8:
            res.append({"image_id": im["id"], "category_id": 1, "bbox": jitter(b, 0.1), "score": score()})
    for _ in range(5):
        res.append({"image_id": im["id"], "category_id": 1, "bbox": random_box(im, lo=0.2, hi=3.0), "score": score()})
reference("tiny_boxes", ds, res)

# `ignore: 1` on non-crowd boxes: pycocotools overwrites `ignore` with `iscrowd`, so they count.
random_case("ignore_flag", 10, [1, 2], crowd=0.0, ignore=0.3)

# Duplicates: several detections on the same box (COCO: the best unmatched one wins; VOC: FP).
ds = new_dataset(3, [1, 2])
res = []
for im in ds["images"]:
    for c in [1, 2]:
        for _ in range(3):
            b = random_box(im, lo=20)
            add_gt(ds, im, c, b)
            for _ in range(4):
                res.append({"image_id": im["id"], "category_id": c, "bbox": jitter(b, 0.05), "score": score()})
reference("duplicates", ds, res)

# Overlapping ground truths (a detection between two boxes; ties in IoU go to the later box).
ds = new_dataset(2, [1])
res = []
for im in ds["images"]:
    im["width"], im["height"] = 300, 300
add_gt(ds, ds["images"][0], 1, [0.0, 0.0, 20.0, 20.0])
add_gt(ds, ds["images"][0], 1, [10.0, 0.0, 20.0, 20.0])
res.append({"image_id": ds["images"][0]["id"], "category_id": 1, "bbox": [5.0, 0.0, 20.0, 20.0], "score": 0.9})
res.append({"image_id": ds["images"][0]["id"], "category_id": 1, "bbox": [5.0, 0.0, 20.0, 20.0], "score": 0.8})
for _ in range(6):
    b = random_box(ds["images"][1], lo=20, hi=60)
    add_gt(ds, ds["images"][1], 1, b)
    add_gt(ds, ds["images"][1], 1, clip(jitter(b, 0.15), ds["images"][1]))
    res.append({"image_id": ds["images"][1]["id"], "category_id": 1, "bbox": jitter(b, 0.1), "score": score()})
reference("overlapping_gts", ds, res)

# No detections at all (every AP 0, where ground truth exists).
ds = new_dataset(3, [1, 2])
for im in ds["images"]:
    add_gt(ds, im, 1, random_box(im))
reference("no_detections", ds, [])

# Detections of a category that has no ground truth anywhere, only.
ds = new_dataset(3, [1, 2])
for im in ds["images"]:
    add_gt(ds, im, 1, random_box(im))
reference("only_false_class", ds, [{"image_id": im["id"], "category_id": 2, "bbox": random_box(im), "score": score()} for im in ds["images"]])

# Random cases of varying size and difficulty.
random_case("random_small", 5, [1, 2])
random_case("random_one_class", 20, [3])
random_case("random_many_classes", 15, [2, 4, 6, 8, 10, 12])
random_case("random_crowded", 12, [1, 2, 3], gt_per_image=20, fp_per_image=20, crowd=0.15)
random_case("random_sparse", 30, [1, 2], gt_per_image=2, fp_per_image=1, empty=0.5)
random_case("random_noisy", 15, [1, 2, 3], det_prob=0.5, wrong_cat=0.4, fp_per_image=10)
random_case("random_sparse_class_ids", 10, [25, 3, 11])
random_case("random_medium", 25, [1, 2, 3], gt_per_image=8, fp_per_image=6)
random_case("random_borders", 12, [1, 2], border_prob=0.5)
random_case("random_big", 40, [1, 2, 3, 4, 5], gt_per_image=10, fp_per_image=8)
random_case("random_perfect", 10, [1, 2], det_prob=1.0, wrong_cat=0.0, fp_per_image=0, crowd=0.0, ignore=0.0)

iou = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
rec = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
json.dump({
    "generator": "scripts/golden/cocoeval.py",
    "iou_thresholds": [float(x) for x in iou],
    "recall_thresholds": [float(x) for x in rec],
    "cases": cases,
}, sys.stdout, separators=(",", ":"))
print(file=sys.stderr)
print(f"{len(cases)} cases", file=sys.stderr)
