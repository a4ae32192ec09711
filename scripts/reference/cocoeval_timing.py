"""pycocotools side of `qat detect score` at scale: writes a seeded synthetic ground truth (500 images of
1024x1024, 12 categories, 0-20 objects each, 2% crowd) and results (100 detections per image, or with
--per-class 100 per image and category, 30% of them jittered copies of a ground-truth box), times
pycocotools' evaluate() + accumulate() on them and prints its summary, to compare with

  .build/release/qat detect score OUT/gt.json OUT/results.json

Usage: $(../shared/tools/reference/setup.sh)/bin/python scripts/reference/cocoeval_timing.py --out DIR [--per-class] [--no-eval]
"""
import argparse, contextlib, io, json, os, random, time
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--per-class", action="store_true", help="100 detections per image and category (600k) instead of per image (50k)")
ap.add_argument("--no-eval", action="store_true", help="only write the files")
a = ap.parse_args()

rng = random.Random(1)
K, N = 12, 500
images = [{"id": i + 1, "file_name": f"{i}.png", "width": 1024, "height": 1024} for i in range(N)]
categories = [{"id": k + 1, "name": f"c{k + 1}"} for k in range(K)]
annotations, results = [], []
for im in images:
    gts = []
    for _ in range(rng.randint(0, 20)):
        s = rng.uniform(8, 300)
        w, h = min(round(s * rng.uniform(.6, 1.6), 2), 1000), min(round(s * rng.uniform(.6, 1.6), 2), 1000)
        x, y = round(rng.uniform(0, 1024 - w), 2), round(rng.uniform(0, 1024 - h), 2)
        c = rng.randint(1, K)
        annotations.append({"id": len(annotations) + 1, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h],
                            "area": w * h, "iscrowd": 1 if rng.random() < .02 else 0})
        gts.append((c, [x, y, w, h]))
    for forced in (range(1, K + 1) if a.per_class else [None]):
        for _ in range(100):
            if gts and rng.random() < .3:
                c, b = rng.choice(gts)
                b = [round(b[0] + rng.gauss(0, .1) * b[2], 2), round(b[1] + rng.gauss(0, .1) * b[3], 2),
                     round(b[2] * rng.uniform(.8, 1.2), 2), round(b[3] * rng.uniform(.8, 1.2), 2)]
            else:
                s = rng.uniform(8, 300)
                b = [round(rng.uniform(0, 900), 2), round(rng.uniform(0, 900), 2), round(s, 2), round(s * rng.uniform(.5, 2), 2)]
                c = rng.randint(1, K)
            results.append({"image_id": im["id"], "category_id": forced or c, "bbox": b, "score": round(rng.random(), 4)})

os.makedirs(a.out, exist_ok=True)
gt_path, res_path = os.path.join(a.out, "gt.json"), os.path.join(a.out, "results.json")
json.dump({"images": images, "annotations": annotations, "categories": categories}, open(gt_path, "w"))
json.dump(results, open(res_path, "w"))
print(f"{len(images)} images, {len(annotations)} objects, {len(results)} detections in {a.out}")
if not a.no_eval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(res_path)
    E = COCOeval(gt, dt, "bbox")
    t = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        E.evaluate()
        E.accumulate()
    print(f"pycocotools evaluate + accumulate: {time.time() - t:.2f} s")
    E.summarize()
