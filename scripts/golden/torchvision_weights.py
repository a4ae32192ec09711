"""Golden values for importing torchvision weights (issue 14, section 3): torchvision's MobileNetV2,
MobileNetV3 (small and large) and ResNet-18, their state-dict names and shapes, and their eval-mode
outputs for weights that both sides can make from a formula, so the fixture needs no weight file:

  value[i] of tensor `name` = f(splitmix64(fnv1a64(name) + i)), u = (z >> 40) / 2^24 * 2 - 1 in [-1, 1)
  conv / linear weight (>= 2 dims): u * float32(sqrt(3 / fan_in));  1-dim `weight` (BatchNorm gamma):
  1 + 0.2 u;  bias: 0.1 u;  running_mean: 0.1 u;  running_var: 1 + 0.5 u;  num_batches_tracked: 0;
  the input: u (tensor name "input"), all in float32 arithmetic.

The Swift test writes these tensors under torchvision's names into a safetensors file, imports it as a
user's pretrained weights would be (`Checkpoint.fromTorch`, strict), runs our model and compares with
torchvision's output (within 1e-4 of the output's largest magnitude). One model, MobileNetV3-small
x0.5, is also written by `safetensors.torch.save_file` itself and committed
(Fixtures/mobilenet_v3_small_x0.5.safetensors) so the reader is checked on a file PyTorch wrote.

Usage (from the repo root):
  /tmp/qat-reference-venv/bin/python scripts/golden/torchvision_weights.py
writes Tests/CheckpointTests/Fixtures/torchvision_weights.json and the .safetensors file.
"""
import json, math, os
import numpy as np
import torch
import torchvision
from safetensors.torch import save_file

M = (1 << 64) - 1
OUT = "Tests/CheckpointTests/Fixtures"


def fnv1a(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & M
    return h


def uniform(name, n):
    x = (np.uint64(fnv1a(name)) + np.arange(n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    z = x.copy()
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float64) / 2.0 ** 24 * 2 - 1).astype(np.float32)


def formula(name, shape):
    n = int(np.prod(shape)) if shape else 1
    u = uniform(name, n)
    last = name.split(".")[-1]
    if last == "num_batches_tracked":
        return None
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        v = u * np.float32(math.sqrt(3.0 / fan_in))
    elif last == "running_var":
        v = np.float32(1) + np.float32(0.5) * u
    elif last == "weight":
        v = np.float32(1) + np.float32(0.2) * u
    else:   # bias, running_mean
        v = np.float32(0.1) * u
    return v.astype(np.float32).reshape(shape)


def case(name, ctor, model, input_shape):
    model.eval()
    sd = model.state_dict()
    new = {}
    keys = []
    for k, t in sd.items():
        keys.append([k, list(t.shape), str(t.dtype).replace("torch.", "")])
        v = formula(k, list(t.shape))
        new[k] = torch.zeros_like(t) if v is None else torch.from_numpy(v)
    model.load_state_dict(new)
    x = torch.from_numpy(uniform("input", int(np.prod(input_shape))).reshape(input_shape))
    with torch.no_grad():
        y = model(x)
    print(f"{name}: {len(keys)} tensors, {sum(int(np.prod(s)) for _, s, _ in keys)} values, output {list(y.shape)} "
          f"max |y| {float(y.abs().max()):.4f}")
    return {"name": name, "ctor": ctor, "keys": keys, "input_shape": input_shape,
            "output": [float(v) for v in y.reshape(-1).numpy()]}, model


def main():
    torch.manual_seed(0)
    cases = []
    shape = [2, 3, 64, 64]
    c, _ = case("mobilenet_v2_x0.5", {"backbone": "mobilenet_v2", "width": 0.5, "num_classes": 10},
                torchvision.models.mobilenet_v2(width_mult=0.5, num_classes=10), shape)
    cases.append(c)
    c, small = case("mobilenet_v3_small_x0.5", {"backbone": "mobilenet_v3_small", "width": 0.5, "num_classes": 10},
                    torchvision.models.mobilenet_v3_small(width_mult=0.5, num_classes=10), shape)
    cases.append(c)
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, os.path.join(OUT, "mobilenet_v3_small_x0.5.safetensors"),
              metadata={"format": "pt"})
    c, _ = case("mobilenet_v3_large", {"backbone": "mobilenet_v3_large", "width": 1.0, "num_classes": 10},
                torchvision.models.mobilenet_v3_large(num_classes=10), shape)
    cases.append(c)
    c, _ = case("resnet18", {"backbone": "resnet18", "width": 1.0, "num_classes": 10},
                torchvision.models.resnet18(num_classes=10), shape)
    cases.append(c)
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__, "cases": cases}
    with open(os.path.join(OUT, "torchvision_weights.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
