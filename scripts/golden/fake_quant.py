"""Golden values for the learnable fake-quant primitive from PyTorch's own CPU kernels:
torch._fake_quantize_learnable_per_tensor_affine and torch._fake_quantize_learnable_per_channel_affine,
forward output and the gradients of x, scale and zero_point for a fixed upstream gradient.

Usage (from the repo root):
  V=$(../shared/tools/reference/setup.sh)
  $V/bin/python scripts/golden/fake_quant.py > Tests/QuantTests/Fixtures/fake_quant_golden.json

Cases cover per-tensor and per-channel (axis 0 and 1), unsigned and signed grids at 2, 4 and 8 bits,
values below, inside and above the grid, values exactly on rounding ties (power-of-two scales make
x/s exact), fractional zero points (including .5), and grad factors 1 and LSQ's 1/sqrt(numel*qmax).
"""
import json, math
import torch

torch.manual_seed(0)
cases = []

def grid(bits, signed):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)

def values(shape, scale, zp, qmin, qmax):
    """Random values spanning 1.5x the representable range, with every 5th value put on an exact tie."""
    lo = (qmin - zp) * scale
    hi = (qmax - zp) * scale
    span = hi - lo
    x = torch.empty(shape).uniform_(lo - 0.25 * span, hi + 0.25 * span)
    flat = x.view(-1)
    for i in range(0, flat.numel(), 5):
        k = torch.randint(qmin - 2, qmax + 2, ()).item()
        flat[i] = (k - round(zp) + 0.5) * scale
    return x

def record(name, x, scale, zp, qmin, qmax, axis, gf):
    x = x.clone().requires_grad_(True)
    s = scale.clone().requires_grad_(True)
    z = zp.clone().requires_grad_(True)
    if axis is None:
        y = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, qmin, qmax, gf)
    else:
        y = torch._fake_quantize_learnable_per_channel_affine(x, s, z, axis, qmin, qmax, gf)
    g = torch.empty_like(y).uniform_(-1, 1)
    y.backward(g)
    cases.append({
        "name": name, "shape": list(x.shape), "axis": axis, "qmin": qmin, "qmax": qmax, "grad_factor": gf,
        "x": x.detach().view(-1).tolist(), "scale": s.detach().view(-1).tolist(), "zero_point": z.detach().view(-1).tolist(),
        "dy": g.view(-1).tolist(), "y": y.detach().view(-1).tolist(),
        "dx": x.grad.view(-1).tolist(), "dscale": s.grad.view(-1).tolist(), "dzero_point": z.grad.view(-1).tolist(),
    })

for bits in (2, 4, 8):
    for signed in (False, True):
        qmin, qmax = grid(bits, signed)
        for zp_val in ([0.0] if signed else [0.0, 1.5, 2.3]) + ([0.5] if bits > 2 else []):
            zp_val = min(max(zp_val, qmin), qmax)
            scale = torch.tensor([0.25 if bits < 8 else 0.03125])
            shape = (3, 4, 5)
            x = values(shape, scale.item(), zp_val, qmin, qmax)
            for gf in (1.0, 1.0 / math.sqrt(x.numel() * qmax)):
                record(f"tensor_b{bits}_{'s' if signed else 'u'}_z{zp_val}_gf{gf:.4f}", x, scale, torch.tensor([zp_val]), qmin, qmax, None, gf)
            for axis in (0, 1):
                c = shape[axis]
                sc = torch.tensor([0.125 * 2 ** (i % 3) for i in range(c)])
                zps = torch.tensor([min(max(zp_val + (i % 2) * 0.5, qmin), qmax) for i in range(c)])
                # values per channel from that channel's range
                xs = torch.empty(shape)
                for i in range(c):
                    sl = [slice(None)] * 3; sl[axis] = i
                    sub = [shape[d] for d in range(3) if d != axis]
                    xs[tuple(sl)] = values(tuple(sub), sc[i].item(), zps[i].item(), qmin, qmax)
                for gf in (1.0, 1.0 / math.sqrt(xs.numel() * qmax)):
                    record(f"channel_ax{axis}_b{bits}_{'s' if signed else 'u'}_z{zp_val}_gf{gf:.4f}", xs, sc, zps, qmin, qmax, axis, gf)

print(json.dumps({"torch": torch.__version__, "cases": cases}))
