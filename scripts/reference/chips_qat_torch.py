"""Peer run for issue 13: the chips classification protocol (FP32, QAT) in PyTorch with PyTorch's own
learnable fake-quant ops, to tell whether a QAT accuracy gap is the task's or ours.

Usage (from the repo root):
  V=$(../shared/tools/reference/setup.sh)
  $V/bin/python scripts/reference/chips_qat_torch.py --recipe RUN/recipe.resolved.yaml --data CHIPS_DIR \
      --out OUT [--init-h5 FP32_RUN/checkpoints/best.h5] [--seed S] [--threads 2] [--max-steps N]

- `--recipe`: a resolved recipe of one of our chips runs (task classification). Read: seed,
  model.{backbone (mobilenet_v2 only), width, dropout, small_input}, data.{input_size, augment.{hflip, vflip, rot90}},
  train.{epochs, steps, batch, clip_grad_norm, optimizer (sgd: lr, momentum, nesterov, weight_decay, quant_lr_scale),
  schedule (cosine or constant: warmup_steps, min_lr_ratio), log_every}, quant.{mode (fp32 or qat),
  weight/activation bits, per_channel, range (activations: minmax or mse), learn_zero_point, grad_factor, residual_adds, calibration_batches,
  calibration_statistics (auto/batch or running), dropout (p, granularity element/channel/tensor, schedule
  constant/linear with start/end/steps, apply both/weights/activations),
  overrides (pattern + weight_bits/input_bits/skip)}, eval.{batch, split, metric}. Other keys (EMA,
  fold_bn, ranges other than min-max) are refused rather than silently ignored.
- `--data`: a folder with train.h5, val.h5 and test.h5 (hdf5_chips: uint8 images [N,H,W,C], int64 labels),
  e.g. the `chips/` folder of a synthetic benchmark in `data/cache/` or what `qat data synth --chips` writes.
- `--init-h5`: our HDF5 checkpoint whose float weights start the run (our recipes' quant.init_from): the
  QAT peer then starts from the very weights our QAT started from, so only the QAT procedure differs.
  Our parameter paths are torchvision's; our buffers runningMean/runningVar map to running_mean/running_var.

What matches ours (docs/RECIPES.md, ALGORITHMS.md section 1): torchvision mobilenet_v2(width_mult) with
dropout before the classifier; the loader (flips and 90-degree turns on the chip, bilinear resize with
half-pixel centres rounded to uint8, (x - mean) / std on 0..255 with ImageNet mean/std); SGD with weight
decay except on norms, biases and quantizer parameters, quantizer parameters at lr x quant_lr_scale; linear
warmup from 0.001 x lr, then cosine to min_lr_ratio; fake quantization of every conv and linear weight
(per output channel) and input (per tensor) and of each residual add's output, asymmetric uint grids,
scales and zero points learnable (torch._fake_quantize_learnable_per_{tensor,channel}_affine with grad
factor 1/sqrt(numel * qmax), PyTorch's _LearnableFakeQuantize), initialised from min-max statistics of
`calibration_batches` unaugmented training batches with the model in eval mode except BatchNorm, which
normalises with each batch's statistics and keeps its running ones (quant.calibration_statistics batch,
the QAT default; `running`: eval mode throughout, as every run before 2026-12-02) (activations optionally by
our MSE range search, `quant.activation.range: mse`), best checkpoint by the
recipe's eval split and metric, final numbers on the test split. What differs: the random streams (sample
order from a seeded torch generator, augmentation draws from numpy), and so the exact numbers.

Outputs in OUT: config.json (what was used), metrics.jsonl (loss and lr every log_every steps, eval after
every epoch), final.json (test accuracy and macro accuracy of the best epoch, steps, seconds).
"""
import argparse, fnmatch, json, math, os, re, sys, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision, yaml, h5py


class RecipeError(Exception):
    pass


def load_recipe(path):
    r = yaml.safe_load(open(path))
    if r.get("task", "classification") != "classification":
        raise RecipeError(f"{path}: task {r.get('task')}; this peer run is for the chips classification protocol")
    m, d, t, q, e = r["model"], r["data"], r["train"], r["quant"], r["eval"]
    if m["backbone"] != "mobilenet_v2":
        raise RecipeError(f"model.backbone {m['backbone']}: only mobilenet_v2 is replicated")
    o, s = t["optimizer"], t["schedule"]
    if o["name"] != "sgd" or s["name"] not in ("cosine", "constant"):
        raise RecipeError(f"optimizer {o['name']} / schedule {s['name']}: only sgd with cosine or constant is replicated")
    if t.get("ema") is not None:
        raise RecipeError("train.ema: not replicated")
    if (t.get("distill") or {}).get("teacher"):
        raise RecipeError("train.distill: not replicated")
    if q["mode"] not in ("fp32", "qat"):
        raise RecipeError(f"quant.mode {q['mode']}: fp32 or qat only")
    if q["mode"] == "qat":
        for spec in ("weight", "activation"):
            if not q[spec].get("enabled", True):
                raise RecipeError(f"quant.{spec}.enabled false: not replicated (weights-only / activations-only)")
            allowed = ("minmax", "mse") if spec == "activation" else ("minmax",)
            if q[spec].get("symmetric") or q[spec].get("range", "minmax") not in allowed or not q[spec].get("learnable", True):
                raise RecipeError(f"quant.{spec}: only asymmetric, learnable quantizers initialised by {' or '.join(allowed)} are replicated")
        if q.get("fold_bn") or q.get("ste", "clipped") != "clipped":
            raise RecipeError("quant.fold_bn / quant.ste identity: not replicated")
        dr = q.get("dropout") or {}
        if dr.get("granularity", "element") not in ("element", "channel", "tensor") or dr.get("schedule", "constant") not in ("constant", "linear") \
                or dr.get("apply", "both") not in ("both", "weights", "activations"):
            raise RecipeError(f"quant.dropout {dr}: granularity element/channel/tensor, schedule constant/linear, apply both/weights/activations")
        if q.get("grad_factor", "lsq_pytorch") != "lsq_pytorch":
            raise RecipeError("quant.grad_factor: only lsq_pytorch is replicated")
        if q["activation"].get("per_channel"):
            raise RecipeError("quant.activation.per_channel: not replicated")
    return r


def read_split(folder, split):
    path = os.path.join(folder, f"{split}.h5")
    if not os.path.isfile(path):
        raise RecipeError(f"--data {folder}: no {split}.h5 (a folder with train.h5, val.h5 and test.h5 is expected)")
    with h5py.File(path, "r") as f:
        images = np.asarray(f["images"][()], dtype=np.uint8)
        labels = np.asarray(f["labels"][()], dtype=np.int64)
        classes = f.attrs["classes"].split("\n") if "classes" in f.attrs else []
    return images, labels, classes


MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def prepare(chips, size):
    """uint8 [N,h,w,3] -> float [N,3,size,size]: bilinear (half-pixel centres) resize rounded to uint8,
    then (x - mean) / std, as our letterbox + normalise for square chips."""
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).round().clamp(0, 255)
    return (x - torch.from_numpy(MEAN).view(1, 3, 1, 1)) / torch.from_numpy(STD).view(1, 3, 1, 1)


def augment(chip, a, rng):
    """Our Augment.apply for chips: draws for hflip, vflip, rot90 (and its quarter turns), in that order."""
    d = rng.random(4)
    if d[0] < a.get("hflip", 0):
        chip = chip[:, ::-1]
    if d[1] < a.get("vflip", 0):
        chip = chip[::-1]
    if d[2] < a.get("rot90", 0):
        chip = np.rot90(chip, k=-(1 + int(d[3] * 3)))
    return np.ascontiguousarray(chip)


class FakeQuant(nn.Module):
    """Learnable affine fake quantizer (LSQ+ scale and zero point), min-max initialised. With `dropout`
    (ours: Quant/FakeQuantize.swift QuantDropout), while training each element, channel or the whole tensor
    is fake-quantized with probability p and passed through in float otherwise (QDrop / Quant-Noise); the
    channels of a per-channel weight quantizer are its axis, those of a per-tensor activation quantizer
    axis 1 (one draw per channel for the whole batch)."""

    step = 0   # the optimizer step, for a linear dropout schedule (set on the class by the training loop)

    def __init__(self, bits, channels=1, axis=None, learn_zero_point=True, method="minmax", dropout=None):
        super().__init__()
        self.dropout = dropout
        self.qmin, self.qmax, self.axis, self.method, self.batches = 0, 2 ** bits - 1, axis, method, 0
        self.scale = nn.Parameter(torch.ones(channels))
        self.zero_point = nn.Parameter(torch.zeros(channels), requires_grad=learn_zero_point)
        self.calibrating = False
        self.register_buffer("lo", torch.full((channels,), float("inf")))
        self.register_buffer("hi", torch.full((channels,), float("-inf")))

    def observe(self, x):
        with torch.no_grad():
            if self.axis is None:
                lo, hi = x.min().view(1), x.max().view(1)
            else:
                flat = x.transpose(0, self.axis).reshape(x.shape[self.axis], -1)
                lo, hi = flat.min(1).values, flat.max(1).values
            if self.method == "mse":
                # Ours (Quant/Observer.swift mseRange, per tensor): the min-max range shrunk by 1.0, 0.99, ...,
                # 0.21, keeping the least squared fake-quantization error; the kept ranges are averaged over
                # the calibration batches.
                assert self.axis is None, "MSE ranges are replicated per tensor only"
                mn, mx, best, err = lo.item(), hi.item(), None, float("inf")
                for k in range(80):
                    a = 1 - k * 0.01
                    s = max((max(mx * a, 0) - min(mn * a, 0)) / (self.qmax - self.qmin), torch.finfo(torch.float32).eps)
                    z = min(max(self.qmin - round(min(mn * a, 0) / s), self.qmin), self.qmax)
                    q = torch.clamp(torch.round(x * (1 / s)) + z, self.qmin, self.qmax)
                    e = ((q - z) * s - x).double().pow(2).sum().item()
                    if e < err: err, best = e, (mn * a, mx * a)
                lo, hi = torch.tensor([best[0]]), torch.tensor([best[1]])
                n = self.batches
                if n == 0: self.lo.copy_(lo); self.hi.copy_(hi)
                else: self.lo.copy_((self.lo * n + lo) / (n + 1)); self.hi.copy_((self.hi * n + hi) / (n + 1))
                self.batches += 1
            else:
                self.lo.copy_(torch.minimum(self.lo, lo)); self.hi.copy_(torch.maximum(self.hi, hi))
            lo, hi = torch.clamp(self.lo, max=0), torch.clamp(self.hi, min=0)   # the range holds 0
            scale = torch.clamp((hi - lo) / (self.qmax - self.qmin), min=torch.finfo(torch.float32).eps)
            zp = torch.clamp(self.qmin - torch.round(lo / scale), self.qmin, self.qmax)
            self.scale.copy_(scale); self.zero_point.copy_(zp)

    def forward(self, x):
        if self.calibrating:
            self.observe(x)
        with torch.no_grad():
            self.scale.clamp_(min=torch.finfo(torch.float32).eps)
        g = 1.0 / math.sqrt(x.numel() * self.qmax)
        if self.axis is None:
            out = torch._fake_quantize_learnable_per_tensor_affine(x, self.scale, self.zero_point, self.qmin, self.qmax, g)
        else:
            out = torch._fake_quantize_learnable_per_channel_affine(x, self.scale, self.zero_point, self.axis, self.qmin, self.qmax, g)
        if self.training and self.dropout and not self.calibrating:
            d = self.dropout
            if d.get("schedule", "constant") == "linear":
                n = int(d.get("steps", 0))
                p = float(d["end"]) if n <= 0 else float(d["start"]) + (float(d["end"]) - float(d["start"])) * min(FakeQuant.step, n) / n
            else:
                p = float(d.get("p", 0))
            if p <= 0:
                return x
            if p < 1:
                gran = d.get("granularity", "element")
                if gran == "element":
                    shape = x.shape
                elif gran == "channel" and self.axis is not None:
                    shape = [1] * x.dim(); shape[self.axis] = x.shape[self.axis]
                elif gran == "channel" and x.dim() >= 2:
                    shape = [1] * x.dim(); shape[1] = x.shape[1]
                else:
                    shape = [1] * x.dim()
                mask = torch.rand(shape) < p
                out = torch.where(mask, out, x)
        return out


class QuantLayer(nn.Module):
    """A conv or linear layer with fake-quantized weight (per output channel) and input (per tensor)."""

    def __init__(self, layer, wbits, abits, wper_channel, learn_zp, arange="minmax", wdrop=None, adrop=None):
        super().__init__()
        self.layer = layer
        out = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        self.wq = FakeQuant(wbits, out if wper_channel else 1, 0 if wper_channel else None, learn_zp, dropout=wdrop)
        self.iq = FakeQuant(abits, 1, None, learn_zp, arange, dropout=adrop)

    def forward(self, x):
        w = self.wq(self.layer.weight)
        x = self.iq(x)
        if isinstance(self.layer, nn.Conv2d):
            l = self.layer
            return F.conv2d(x, w, l.bias, l.stride, l.padding, l.dilation, l.groups)
        return F.linear(x, w, self.layer.bias)


def quantize(model, q):
    """Installs QuantLayer at every conv/linear path (overrides as our QuantPlan: every matching glob
    applies, later ones last) and an output quantizer after each residual add."""
    learn_zp = q.get("learn_zero_point", True)
    d = q.get("dropout") or {}
    active = d.get("schedule", "constant") == "linear" or float(d.get("p", 0)) > 0
    wdrop = d if active and d.get("apply", "both") in ("both", "weights") else None
    adrop = d if active and d.get("apply", "both") in ("both", "activations") else None
    installed = []
    for name, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            path = f"{name}.{cname}" if name else cname
            if not isinstance(child, (nn.Conv2d, nn.Linear)):
                continue
            wb, ab, skip = q["weight"]["bits"], q["activation"]["bits"], False
            for o in q.get("overrides") or []:
                if fnmatch.fnmatchcase(path, o["pattern"]):
                    skip = skip or o.get("skip", False)
                    wb = o.get("weight_bits") or wb
                    ab = o.get("input_bits") or ab
            if skip:
                continue
            setattr(mod, cname, QuantLayer(child, wb, ab, q["weight"].get("per_channel", True), learn_zp, q["activation"].get("range", "minmax"),
                                             wdrop, adrop))
            installed.append((path, wb, ab))
    if q.get("residual_adds", True):
        for name, mod in model.named_modules():
            if isinstance(mod, torchvision.models.mobilenetv2.InvertedResidual) and mod.use_res_connect:
                mod.add_q = FakeQuant(q["activation"]["bits"], 1, None, learn_zp, q["activation"].get("range", "minmax"), dropout=adrop)
                mod.forward = (lambda m: (lambda x: m.add_q(x + m.conv(x))))(mod)
                installed.append((name + ".add", None, q["activation"]["bits"]))
    return installed


def load_h5(model, path):
    snake = lambda s: re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s).lower()
    sd = model.state_dict()
    loaded = []
    with h5py.File(path, "r") as f:
        for group in ("params", "buffers"):
            names = []
            f[group].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            for n in names:
                parts = n.split("/")
                parts[-1] = snake(parts[-1])
                key = ".".join(parts)
                if key in sd and tuple(sd[key].shape) == f[group][n].shape:
                    with torch.no_grad():
                        sd[key].copy_(torch.from_numpy(np.asarray(f[group][n][()], dtype=np.float32)))
                    loaded.append(key)
    want = [k for k in sd if not k.endswith("num_batches_tracked")]
    missing = sorted(set(want) - set(loaded))
    if missing:
        raise RecipeError(f"--init-h5 {path}: {len(missing)} tensors not found or of another shape, e.g. {missing[:3]}")
    return len(loaded)


def evaluate(model, images, labels, size, batch, classes):
    model.eval()
    correct = np.zeros(classes); count = np.zeros(classes)
    loss = 0.0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            x = prepare(images[i:i + batch], size)
            y = torch.from_numpy(labels[i:i + batch])
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            pred = out.argmax(1).numpy()
            for t, p in zip(y.numpy(), pred):
                count[t] += 1; correct[t] += t == p
    present = count > 0
    return {"accuracy": correct.sum() / count.sum(), "macro_accuracy": float((correct[present] / count[present]).mean()),
            "loss": loss / count.sum()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", required=True); ap.add_argument("--data", required=True); ap.add_argument("--out", required=True)
    ap.add_argument("--init-h5"); ap.add_argument("--seed", type=int); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, help="stop after this many steps (a smoke test); the schedule still spans the recipe's")
    a = ap.parse_args()
    try:
        r = load_recipe(a.recipe)
    except (RecipeError, KeyError, OSError) as e:
        sys.exit(f"error: {e}")
    torch.set_num_threads(a.threads)
    seed = a.seed if a.seed is not None else int(r.get("seed", 0))
    torch.manual_seed(seed)
    m, d, t, q, e = r["model"], r["data"], r["train"], r["quant"], r["eval"]
    try:
        train, val, test = (read_split(a.data, s) for s in ("train", "val", "test"))
    except (RecipeError, KeyError, OSError) as err:
        sys.exit(f"error: {err}")
    classes = max(int(train[1].max()), int(val[1].max()), int(test[1].max())) + 1
    if train[2]:
        classes = len(train[2])
    model = torchvision.models.mobilenet_v2(width_mult=float(m["width"]), num_classes=classes, dropout=float(m.get("dropout", 0.2)))
    if m.get("small_input"):
        # Ours (NN/Backbones.swift): stride 1 in the stem conv and in the first strided stage's first block
        # (torchvision's features[2], its depthwise conv), total stride 8.
        model.features[0][0].stride = (1, 1)
        model.features[2].conv[1][0].stride = (1, 1)
    loaded = load_h5(model, a.init_h5) if a.init_h5 else 0
    size, batch = int(d["input_size"]), int(t["batch"])
    n = len(train[1])
    per_epoch = n // batch   # full batches only, as ours (TrainingTask.trainCount)
    total = int(t["steps"]) if t.get("steps") else int(t["epochs"]) * per_epoch
    installed = quantize(model, q) if q["mode"] == "qat" else []
    os.makedirs(a.out, exist_ok=True)
    # Calibration: unaugmented training batches in order, eval mode (BatchNorm with batch statistics unless
    # quant.calibration_statistics is running; its running statistics restored), every quantizer observing.
    if installed:
        fqs = [x for x in model.modules() if isinstance(x, FakeQuant)]
        model.eval()
        stats = q.get("calibration_statistics", "auto")
        if stats not in ("auto", "batch", "running"):
            raise RecipeError(f"quant.calibration_statistics {stats}: auto, batch or running")
        saved = []
        if stats != "running":
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    saved.append((m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()))
                    m.train()
        for f in fqs: f.calibrating = True
        with torch.no_grad():
            for k in range(int(q.get("calibration_batches", 8))):
                chunk = train[0][k * batch:(k + 1) * batch]
                if len(chunk): model(prepare(chunk, size))
            for bn, mean, var, tracked in saved:
                bn.running_mean.copy_(mean); bn.running_var.copy_(var); bn.num_batches_tracked.copy_(tracked); bn.eval()
        for f in fqs: f.calibrating = False
    o, s = t["optimizer"], t["schedule"]
    quant_params, no_decay, decay = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad: continue
        if name.endswith((".scale", ".zero_point")): quant_params.append(p)
        elif p.ndim <= 1: no_decay.append(p)
        else: decay.append(p)
    lr = float(o["lr"])
    groups = [{"params": decay, "weight_decay": float(o["weight_decay"]), "base": lr},
              {"params": no_decay, "weight_decay": 0.0, "base": lr},
              {"params": quant_params, "weight_decay": 0.0, "base": lr * float(o.get("quant_lr_scale", 1.0))}]
    opt = torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=float(o["momentum"]), nesterov=bool(o.get("nesterov", False)))
    warm, min_ratio = int(s.get("warmup_steps", 0)), float(s.get("min_lr_ratio", 0.0))

    def factor(step):
        if step < warm:
            return 0.001 + (1 - 0.001) * step / warm
        if s["name"] == "constant":
            return 1.0
        tt = min(1.0, (step - warm) / max(1, total - warm))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * tt))

    config = {"recipe": a.recipe, "data": a.data, "seed": seed, "threads": a.threads, "init_h5": a.init_h5, "loaded_tensors": loaded,
              "classes": classes, "train_samples": n, "steps": total, "quantized": installed, "torch": torch.__version__}
    json.dump(config, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    log = open(os.path.join(a.out, "metrics.jsonl"), "w")
    aug = d.get("augment") or {}
    gen = torch.Generator().manual_seed(seed)
    metric, split = e.get("metric", "accuracy"), e.get("split", "val")
    best, best_state, step, start, window = -1.0, None, 0, time.time(), []
    evals = {"val": val, "test": test, "train": train}
    while step < total and (a.max_steps is None or step < a.max_steps):
        epoch = step // per_epoch
        order = torch.randperm(n, generator=gen).numpy()
        rng = np.random.default_rng([seed, epoch])
        model.train()
        for k in range(per_epoch):
            if step >= total or (a.max_steps is not None and step >= a.max_steps): break
            idx = order[k * batch:(k + 1) * batch]
            chips = np.stack([augment(train[0][i], aug, rng) for i in idx])
            x, y = prepare(chips, size), torch.from_numpy(train[1][idx])
            f = factor(step)
            FakeQuant.step = step
            for g in opt.param_groups: g["lr"] = g["base"] * f
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if t.get("clip_grad_norm") is not None:
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], float(t["clip_grad_norm"]))
            opt.step()
            window.append(loss.item()); step += 1
            if step % int(t.get("log_every", 50)) == 0:
                log.write(json.dumps({"type": "train", "step": step, "loss": sum(window) / len(window), "lr": lr * f}) + "\n"); log.flush()
                window = []
        res = evaluate(model, *evals[split][:2], size, int(e.get("batch", 64)), classes)
        log.write(json.dumps({"type": "eval", "epoch": epoch + 1, "step": step, "split": split, **res}) + "\n"); log.flush()
        print(f"epoch {epoch + 1} step {step}/{total}: {split} {metric} {100 * res[metric]:.2f}%", flush=True)
        if res[metric] > best:
            best, best_state = res[metric], {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)   # --max-steps 0: the initial (e.g. --init-h5) model as it is
    final = evaluate(model, *test[:2], size, int(e.get("batch", 64)), classes)
    out = {"split": "test", **final, "best_" + split: best, "steps": step, "seconds": time.time() - start}
    json.dump(out, open(os.path.join(a.out, "final.json"), "w"), indent=1)
    print(f"final test: accuracy {100 * final['accuracy']:.2f}%, macro accuracy {100 * final['macro_accuracy']:.2f}% ({step} steps, {out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
