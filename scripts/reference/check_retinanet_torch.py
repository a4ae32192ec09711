"""Checks behind scripts/reference/retinanet_torch.py's claims that need no training:

1. Its data replica equals Sources/Datasets/Augment.swift byte for byte: augment_dump.swift is compiled
   against the debug build (`swift build --product qat` first) and run on a non-square crop of one image;
   flips, rot90 (1 and 3 turns), letterbox (down to 192, up to 300) and colour jitter (fed the same three
   draws) are compared pixel for pixel, boxes to the last bit.
2. Its evaluation path is right: the test split's own boxes, letterboxed to 224 / 256 / 301 and mapped
   back with to_coco(), score AP = AP50 = class-agnostic AP50 = 1 with pycocotools.

Usage: /tmp/qat-reference-venv/bin/python scripts/reference/check_retinanet_torch.py --data DIR [--build .build/debug]
  DIR: a COCO folder as `qat data synth` writes. Exits 1 on any mismatch.
"""
import argparse, json, os, shlex, subprocess, sys, tempfile
import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import retinanet_torch as R  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--build", default=os.path.join(HERE, "..", "..", ".build", "debug"))
a = ap.parse_args()
root = os.path.abspath(os.path.join(HERE, "..", ".."))
failures = 0

# 1. Swift Augment vs the replica.
with tempfile.TemporaryDirectory() as tmp:
    B, S = os.path.abspath(a.build), os.path.join(root, "Sources")
    hdf5 = subprocess.run(["pkg-config", "--cflags", "--libs", "hdf5"], capture_output=True, text=True).stdout.split()
    cmd = ["swiftc", "-O", os.path.join(HERE, "augment_dump.swift"), "-I", os.path.join(B, "Modules")]
    for m in ["CPNG", "CJPEG", "CBLAS", "CHDF5"]:
        cmd += ["-Xcc", f"-fmodule-map-file={S}/{m}/module.modulemap"]
    cmd += [x for f in hdf5 if f.startswith("-I") for x in ("-Xcc", f)] + [f for f in hdf5 if not f.startswith("-I")]
    for t in ["Datasets", "Kernels", "HDF5"]:
        d = os.path.join(B, f"{t}.build")
        cmd += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".o"))
    cmd += ["-lpng", "-ljpeg", "-lopenblas", "-o", os.path.join(tmp, "augment_dump")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"compiling augment_dump.swift failed (build the package first: swift build --product qat):\n{r.stderr[-2000:]}\n{shlex.join(cmd)[:500]}")
    with open(os.path.join(a.data, "annotations", "test.json")) as f:
        png = os.path.join(a.data, "images", json.load(f)["images"][0]["file_name"])
    subprocess.run([os.path.join(tmp, "augment_dump"), png, os.path.join(tmp, "dump.json")], check=True, capture_output=True)
    with open(os.path.join(tmp, "dump.json")) as f:
        d = json.load(f)

img = np.asarray(Image.open(png).convert("RGB"))
im, b, _ = R.crop(img, np.array([[10.5, 20.25, 30, 12], [100, 40.75, 22.5, 50]]), np.array([1, 2]), 3, 20, 230, 170, 0.0)


class Draws:
    def __init__(self, v): self.v = list(v)
    def random(self): return self.v.pop(0)


def compare(name, py_img, py_boxes):
    global failures
    e = d[name]
    si = np.array(e["pixels"], np.uint8).reshape(e["h"], e["w"], 3)
    sb = np.array(e["boxes"], float).reshape(-1, 4)
    same = si.shape == py_img.shape and np.array_equal(si, py_img) and np.array_equal(sb, py_boxes)
    failures += not same
    print(f"augment {name:6s} {si.shape[1]}x{si.shape[0]}: {'identical' if same else 'DIFFERS'}")


compare("input", im, b)
compare("hflip", *R.flip_h(im, b))
compare("vflip", *R.flip_v(im, b))
compare("rot1", *R.rotate90(im, b, 1))
compare("rot3", *R.rotate90(im, b, 3))
for s in (192, 300):
    li, lb, _ = R.letterbox(im, b, s)
    compare(f"lb{s}", li, lb)
compare("cj", R.color_jitter(im, 0.1, 0.1, 0.2, Draws(d["cj_draws"])), b)

# 2. Ground truth through letterbox and back scores 1.
with open(os.path.join(a.data, "annotations", "test.json")) as f:
    cats = sorted(c["id"] for c in json.load(f)["categories"])
ds = R.COCOSplit(a.data, "test", {c: i for i, c in enumerate(cats)})
for size in (224, 256, 301):
    dets = []
    for i in range(len(ds)):
        boxes, labels = ds.targets[i]
        _, lb, g = R.letterbox(ds.image(i), boxes, size)
        xyxy = np.concatenate([lb[:, :2], lb[:, :2] + lb[:, 2:]], 1)
        dets += R.to_coco({"boxes": torch.tensor(xyxy), "labels": torch.tensor(labels), "scores": torch.ones(len(labels))},
                          g, ds.images[i], cats)
    st, _ = R.coco_eval(ds.json, dets)
    ag, _ = R.coco_eval(ds.json, dets, agnostic=True)
    ok = min(st[0], st[1], ag[1]) > 0.999
    failures += not ok
    print(f"eval round trip at {size}: AP {st[0]:.4f} AP50 {st[1]:.4f} class-agnostic AP50 {ag[1]:.4f} {'ok' if ok else 'WRONG'}")

print("all checks passed" if not failures else f"{failures} checks failed")
sys.exit(1 if failures else 0)
