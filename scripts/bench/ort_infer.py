#!/usr/bin/env python3
"""Times ONNX Runtime (CPU) on an ONNX model the way `qat bench infer` times our engines: one random
batch [N, C, H, W] per repetition, 2 warm-up runs, median of --reps, --threads intra-op threads, all
graph optimizations (ORT fuses QDQ pairs into its integer kernels). Prints JSON.

Usage: ort_infer.py MODEL.onnx --batch 8 --size 256 [--threads 2] [--reps 20]
"""
import argparse, json, time
import numpy as np
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--size", type=int, default=256)
p.add_argument("--channels", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--reps", type=int, default=20)
a = p.parse_args()

so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
x = np.random.default_rng(0).standard_normal((a.batch, a.channels, a.size, a.size)).astype(np.float32)
for _ in range(2):
    s.run(None, {name: x})
t = []
for _ in range(a.reps):
    t0 = time.perf_counter()
    s.run(None, {name: x})
    t.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"onnxruntime": ort.__version__, "threads": a.threads, "batch": a.batch, "size": a.size,
                  "ms_per_batch": float(np.median(t))}))
