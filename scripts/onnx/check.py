"""Checks an ONNX file exported by `qat export CKPT --format onnx|onnx-qdq --out M.onnx --reference DIR`
in ONNX Runtime against our model's outputs on the same inputs (issue 14, section 2).

  python scripts/onnx/check.py DIR [--json OUT.json]

- onnx.checker.check_model (full check, with shape inference) must pass;
- float export (`onnx`): max |ORT - ours| <= 1e-4 * max |ours| (relative to the output's scale);
- QDQ export (`onnx-qdq`): predictions (argmax) agree on >= 99.9% of the reference images, and the
  logits differ by at most 1 quantization step of the classifier's input, propagated: we report the
  largest difference relative to the output scale and the share of images whose logits are not
  bit-identical (a rounding tie that lands one code apart shifts the logits of that image only).
Prints one line per check and exits 1 when a bar is missed. Needs: onnx, onnxruntime, numpy.
"""
import argparse, json, sys
import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--json")
    ap.add_argument("--min-agreement", type=float, default=0.999, help="QDQ bar on prediction agreement (the issue's: 0.999)")
    a = ap.parse_args()
    meta = json.load(open(f"{a.dir}/reference.json"))
    x = np.fromfile(f"{a.dir}/input.f32", dtype="<f4").reshape(meta["input_shape"])
    ours = np.fromfile(f"{a.dir}/output.f32", dtype="<f4").reshape(meta["output_shape"])
    model = onnx.load(meta["onnx"])
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(meta["onnx"], opts, providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"input": x[i:i + 32]})[0] for i in range(0, len(x), 32)])
    scale = float(np.abs(ours).max())
    diff = float(np.abs(got - ours).max())
    flat_got, flat_ours = got.reshape(len(x), -1), ours.reshape(len(x), -1)
    exact = float((flat_got == flat_ours).all(1).mean())
    if ours.ndim == 2:   # a classifier: [N, classes]
        agree = float((got.argmax(1) == ours.argmax(1)).mean())
    else:                # a detector: [N, anchors, scores + 4]; the 100 best-scored anchors of each image (column 0)
        k = min(100, ours.shape[1])
        top = lambda a: np.argsort(-a[:, :, 0], axis=1, kind="stable")[:, :k]
        agree = float(np.mean([len(set(p) & set(q)) / k for p, q in zip(top(got), top(ours))]))
    r = {"format": meta["format"], "images": int(len(x)), "checker": "passed", "max_abs_diff": diff, "output_scale": scale,
         "relative_diff": diff / scale, "prediction_agreement": agree, "bit_identical_images": exact,
         "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    ok = True
    if meta["format"] == "onnx":
        ok = diff <= 1e-4 * scale
        print(f"float export: max |ORT - ours| = {diff:.3g} ({diff / scale:.2g} of the output scale {scale:.3g}; bar 1e-4): {'ok' if ok else 'FAIL'}")
    else:
        ok = agree >= a.min_agreement
        what = "predictions agree on" if ours.ndim == 2 else "top-100 anchors (by the first score) shared, mean over"
        print(f"QDQ export: {what} {100 * agree:.2f}% of {len(x)} images (bar {100 * a.min_agreement:g}%): {'ok' if ok else 'FAIL'}; "
              f"logits bit-identical on {100 * exact:.1f}%, largest difference {diff:.3g} ({diff / scale:.2g} of the output scale)")
    print(f"onnx.checker: passed (onnx {onnx.__version__}, onnxruntime {ort.__version__})")
    if a.json:
        json.dump(r, open(a.json, "w"), indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
