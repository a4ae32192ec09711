"""Golden values for three numerics corners an independent random check against PyTorch found (issue 13):
hardswish's backward at exactly x = -3 and x = +3, tanh's backward where it saturates, and BatchNorm
training on channels of (near) zero variance far from zero. PyTorch 2.15 CPU float32, random shapes.

Usage (from the repo root):
  V=$(../shared/tools/reference/setup.sh)
  $V/bin/python scripts/golden/numerics.py > Tests/AutodiffTests/Fixtures/numerics_golden.json

Every case holds the inputs, the upstream gradient g and PyTorch's outputs and input gradients, plus a
float64 evaluation of the same formulas ("exact") so a test can check accuracy where float32 results
legitimately differ in the last bits.
"""
import json
import torch

torch.manual_seed(13)
cases = []

def rand_shape(rank_lo=1, rank_hi=4, max_elems=300):
    while True:
        rank = int(torch.randint(rank_lo, rank_hi + 1, ()))
        shape = [int(torch.randint(1, 8, ())) for _ in range(rank)]
        n = 1
        for s in shape: n *= s
        if 2 <= n <= max_elems: return shape

def flat(t): return [float(v) for v in t.detach().reshape(-1).tolist()]

# hardswish: values in [-5, 5], a fifth of them exactly -3 or +3, some exactly 0.
for k in range(8):
    shape = rand_shape()
    x = torch.empty(shape).uniform_(-5, 5)
    f = x.view(-1)
    for i in range(0, f.numel(), 5): f[i] = -3.0 if (i // 5) % 2 == 0 else 3.0
    if f.numel() > 3: f[3] = 0.0
    x.requires_grad_(True)
    g = torch.randn(shape)
    y = torch.nn.functional.hardswish(x); y.backward(g)
    x64 = x.detach().double(); g64 = g.double()
    y64 = torch.nn.functional.hardswish(x64)
    cases.append({"op": "hardswish", "shape": shape, "x": flat(x), "g": flat(g), "y": flat(y), "gx": flat(x.grad),
                  "y_exact": flat(y64)})

# tanh: half the values saturated (|x| in 4..12, where y rounds near +-1), the rest in [-3, 3].
for k in range(8):
    shape = rand_shape()
    n = 1
    for s in shape: n *= s
    mag = torch.where(torch.rand(n) < 0.5, torch.empty(n).uniform_(4, 12), torch.empty(n).uniform_(0, 3))
    x = (mag * torch.where(torch.rand(n) < 0.5, -1.0, 1.0)).reshape(shape).requires_grad_(True)
    g = torch.randn(shape)
    y = torch.tanh(x); y.backward(g)
    # The float64 derivative at PyTorch's float32 output y: g (1 - y)(1 + y), what a backward from y can reach.
    y64 = y.detach().double()
    gx_exact = g.double() * (1 - y64) * (1 + y64)
    cases.append({"op": "tanh", "shape": shape, "x": flat(x), "g": flat(g), "y": flat(y), "gx": flat(x.grad),
                  "gx_exact": flat(gx_exact)})

# BatchNorm2d training: random N, C, H, W; channel kinds: constant far from zero (exactly zero
# variance), near-constant far from zero (tiny variance), and ordinary.
for k in range(8):
    n, c, h, w = [int(torch.randint(1, 5, ())) + (1 if i == 0 else 0) for i in range(4)]
    x = torch.randn(n, c, h, w)
    kinds = []
    for ch in range(c):
        kind = ["constant", "near_constant", "ordinary"][(ch + k) % 3]
        kinds.append(kind)
        offset = float(torch.empty(()).uniform_(100, 3000)) * (1 if ch % 2 == 0 else -1)
        if kind == "constant": x[:, ch] = offset
        elif kind == "near_constant": x[:, ch] = offset + 1e-3 * torch.randn(n, h, w)
    x.requires_grad_(True)
    gamma = (torch.rand(c) + 0.5).requires_grad_(True)
    beta = torch.randn(c).requires_grad_(True)
    g = torch.randn(n, c, h, w)
    y = torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
    y.backward(g)
    # float64 reference of the same function.
    x64 = x.detach().double().requires_grad_(True)
    ga64 = gamma.detach().double().requires_grad_(True); be64 = beta.detach().double().requires_grad_(True)
    y64 = torch.nn.functional.batch_norm(x64, None, None, ga64, be64, training=True, eps=1e-5)
    y64.backward(g.double())
    cases.append({"op": "batch_norm_train", "shape": [n, c, h, w], "kinds": kinds, "x": flat(x), "gamma": flat(gamma),
                  "beta": flat(beta), "g": flat(g), "y": flat(y), "gx": flat(x.grad), "dgamma": flat(gamma.grad),
                  "dbeta": flat(beta.grad), "y_exact": flat(y64), "gx_exact": flat(x64.grad),
                  "dgamma_exact": flat(ga64.grad), "dbeta_exact": flat(be64.grad)})

print(json.dumps({"torch": torch.__version__, "cases": cases}))
