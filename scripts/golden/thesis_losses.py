"""Golden values for Sources/Detection/Losses: the thesis' detector losses and their published
baselines, values and input gradients from torch autograd.

Usage (from the repo root):
  /tmp/qat-reference-venv/bin/python scripts/golden/thesis_losses.py \
      > Tests/DetectionTests/Fixtures/thesis_losses.json

mmdetection and the EQL repositories are not installed: each reference below is the cited function's
formula copied as plain torch code, in the reference's operation order (so Float32 values agree to
rounding). Labels use the Swift convention: a class index, or -1 for background (mmdetection's
background index is num_classes; the script converts).

- qfl:      mmdet/models/losses/gfocal_loss.py, quality_focal_loss (GFL, Li et al. 2020), before and
            after its row sum; reduction 'mean' is mmdet's mean of the per-anchor (row) losses.
- vfl:      mmdet/models/losses/varifocal_loss.py, varifocal_loss (VFNet, Zhang et al. 2021);
            weight_reduce_loss without weights: 'mean' over all elements.
- ghmc:     mmdet/models/losses/ghm_loss.py, GHMC.forward (Li et al. 2019), v2.x form:
            BCE(pred, target, weights, reduction='sum') / tot; sequences of calls carry acc_sum.
- ohem:     no library function: keep all positives (label >= 0) and the hardest negatives (label -1)
            by loss, max(ratio * #positives, minimum) of them, ties to the lower index; label -2 is
            ignored. A second implementation of the Swift spec (a stable sort), not a reference.
- eql:      tztztztztz/eqlv2 mmdet/models/losses/eql.py, EQL.forward (= eql.detectron2
            projects/EQL/eql/fast_rcnn.py, eql_loss), Tan et al. CVPR 2020: sum(BCE * w) / n_i.
- seql:     softmax EQL, the paper's eqs. (Tan et al. 2020, sec. 3.4) as BagOfTricks-LT writes them
            (SEQL.forward: p = exp(z) / sum(w exp(z)), nll mean), with the Bernoulli beta given.
- eqlv2:    tztztztztz/eqlv2 mmdet/models/losses/eqlv2.py, EQLv2.forward + collect_grad +
            get_weight, adapted to a classifier without a background column (the official's last
            column is background/objectness: weight 1, no gradient collected). Each case is also
            run through the official code verbatim with a background column at logit -100 on
            all-foreground batches, and the script asserts both agree (loss, class-column
            gradients, collected gradients).
- seesaw:   mmdet/models/losses/seesaw_loss.py, seesaw_ce_loss + the cum_samples update of
            SeesawLoss.forward, without the objectness branch (the fg/bg head does objectness).
- wce:      F.cross_entropy(weight=w) with w from class counts: inverse frequency, or the effective
            number of Cui et al. CVPR 2019 ((1 - beta) / (1 - beta^n)), both normalised to sum to the
            class count as Cui et al.'s code does; weights computed in float64, then float32.
- margin:   the thesis' hard-sample focusing (support samples): margin = z_y - max_{j != y} z_j
            (ties to the lowest index), support = margin < m and weight > 0,
            loss = sum((m - margin) * w over support) / max(1, #support); and the binary form on
            one fg/bg logit s with y = +-1: margin = y * s.
"""
import json, math
import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)
out = {"torch": torch.__version__}


def flat(t):
    """Float32 values as their shortest round-tripping decimals (checked: decimal -> Double -> Float32,
    the path the Swift tests take, gives back the same bits)."""
    vals = []
    for v in torch.as_tensor(t).detach().reshape(-1).to(torch.float32).numpy():
        d = float(np.format_float_positional(v, unique=True, trim="-")) if np.isfinite(v) else float(v)
        assert np.float32(d) == v or (np.isnan(v) and np.isnan(d)), (v, d)
        vals.append(int(d) if d.is_integer() and abs(d) < 2 ** 24 else d)
    return vals


def ints(t):
    return [int(v) for v in torch.as_tensor(t).reshape(-1).tolist()]


def grads_of(f, x, upstream_shape):
    """Value of f(x) and d(sum(f * upstream))/dx; the upstream is 1 for a scalar loss."""
    x = x.clone().requires_grad_(True)
    y = f(x)
    g = torch.randn(upstream_shape) if upstream_shape is not None else torch.tensor(1.0)
    y.backward(g)
    grad = x.grad if x.grad is not None else torch.zeros_like(x)
    return y.detach(), grad, g


def random_labels(m, k, fg_share):
    lab = torch.randint(0, k, (m,))
    lab[torch.rand(m) >= fg_share] = -1
    return lab


def to_mmdet_labels(labels, k):
    return torch.where(labels < 0, torch.full_like(labels, k), labels)


# ---------------------------------------------------------------- QFL (GFL)
def qfl_elementwise(pred, label, score, beta):
    """mmdet quality_focal_loss up to (not including) loss.sum(dim=1)."""
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction='none') * scale_factor.pow(beta)
    bg_class_ind = pred.size(1)
    pos = ((label >= 0) & (label < bg_class_ind)).nonzero().squeeze(1)
    pos_label = label[pos].long()
    scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
    loss[pos, pos_label] = F.binary_cross_entropy_with_logits(
        pred[pos, pos_label], score[pos], reduction='none') * scale_factor.abs().pow(beta)
    return loss


def qfl_case(m, k, labels, quality, logits, beta, reduction):
    mm_labels = to_mmdet_labels(labels, k)
    def f(x):
        el = qfl_elementwise(x, mm_labels, quality, beta)
        if reduction == "none":
            return el
        rows = el.sum(dim=1, keepdim=False)
        return rows.sum() if reduction == "sum" else rows.mean()
    value, grad, g = grads_of(f, logits, (m, k) if reduction == "none" else None)
    return {"m": m, "k": k, "beta": beta, "reduction": reduction, "labels": ints(labels), "quality": flat(quality),
            "logits": flat(logits), "upstream": flat(g), "value": flat(value), "grad_logits": flat(grad)}


qfl = []
for m, k, fg, beta, reduction in [(12, 4, 0.3, 2.0, "none"), (10, 3, 0.4, 2.0, "sum"), (9, 3, 0.5, 1.5, "none"),
                                  (14, 5, 0.3, 2.0, "mean")]:
    lab = random_labels(m, k, fg)
    qfl.append(qfl_case(m, k, lab, torch.rand(m), torch.randn(m, k) * 2.5, beta, reduction))
qfl.append(qfl_case(8, 3, torch.full((8,), -1), torch.rand(8), torch.randn(8, 3) * 2.5, 2.0, "sum"))   # all negative
qfl.append(qfl_case(0, 3, torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0, 3), 2.0, "sum"))  # empty
lab = torch.tensor([0, 1, -1, 1, 0, -1])
qfl.append(qfl_case(6, 2, lab, torch.tensor([0.0, 1.0, 0.5, 0.0, 1.0, 0.3]), torch.randn(6, 2) * 2.5, 2.0, "none"))  # q = 0, 1
lab = random_labels(16, 1, 0.4)                                       # class-agnostic fg/bg logit (K = 1)
qfl.append(qfl_case(16, 1, lab, torch.rand(16), torch.randn(16, 1) * 2.5, 2.0, "sum"))
out["qfl"] = qfl


# ---------------------------------------------------------------- VFL (VFNet)
def varifocal_loss(pred, target, alpha, gamma, iou_weighted):
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    if iou_weighted:
        focal_weight = target * (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    else:
        focal_weight = (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    return F.binary_cross_entropy_with_logits(pred, target, reduction='none') * focal_weight


def soft_targets(labels, quality, k):
    t = torch.zeros(len(labels), k)
    for i, (l, q) in enumerate(zip(labels.tolist(), quality.tolist())):
        if l >= 0:
            t[i, l] = q
    return t


def vfl_case(m, k, targets, logits, alpha, gamma, iou_weighted, reduction):
    def f(x):
        el = varifocal_loss(x, targets, alpha, gamma, iou_weighted)
        return el if reduction == "none" else (el.sum() if reduction == "sum" else el.mean())
    value, grad, g = grads_of(f, logits, (m, k) if reduction == "none" else None)
    return {"m": m, "k": k, "alpha": alpha, "gamma": gamma, "iou_weighted": iou_weighted, "reduction": reduction,
            "targets": flat(targets), "logits": flat(logits), "upstream": flat(g), "value": flat(value),
            "grad_logits": flat(grad)}


vfl = []
for m, k, iw, alpha, gamma, reduction in [(12, 4, True, 0.75, 2.0, "none"), (10, 3, False, 0.75, 2.0, "sum"),
                                          (9, 3, True, 0.25, 1.5, "none"), (14, 5, True, 0.75, 2.0, "mean")]:
    lab = random_labels(m, k, 0.35)
    vfl.append(vfl_case(m, k, soft_targets(lab, torch.rand(m), k), torch.randn(m, k) * 2.5, alpha, gamma, iw, reduction))
vfl.append(vfl_case(8, 3, torch.zeros(8, 3), torch.randn(8, 3) * 2.5, 0.75, 2.0, True, "sum"))       # all negative
vfl.append(vfl_case(0, 3, torch.zeros(0, 3), torch.zeros(0, 3), 0.75, 2.0, True, "sum"))              # empty
lab = torch.tensor([0, 1, -1, 1, 0, -1])
t = soft_targets(lab, torch.tensor([0.0, 1.0, 0.5, 0.0, 1.0, 0.3]), 2)                               # q = 0, 1
vfl.append(vfl_case(6, 2, t, torch.randn(6, 2) * 2.5, 0.75, 2.0, True, "none"))
vfl.append(vfl_case(6, 2, t, torch.randn(6, 2) * 2.5, 0.75, 2.0, False, "none"))
lab = random_labels(16, 1, 0.4)
vfl.append(vfl_case(16, 1, soft_targets(lab, torch.rand(16), 1), torch.randn(16, 1) * 2.5, 0.75, 2.0, True, "sum"))
out["vfl"] = vfl


# ---------------------------------------------------------------- GHM-C
class GHMC:
    """mmdet GHMC (v2.x), sigmoid only, loss_weight 1."""

    def __init__(self, bins=10, momentum=0):
        self.bins = bins
        self.momentum = momentum
        self.edges = torch.arange(bins + 1).float() / bins
        self.edges[-1] += 1e-6
        self.acc_sum = torch.zeros(bins)

    def forward(self, pred, target, label_weight):
        target, label_weight = target.float(), label_weight.float()
        edges = self.edges
        mmt = self.momentum
        weights = torch.zeros_like(pred)
        g = torch.abs(pred.sigmoid().detach() - target)
        valid = label_weight > 0
        tot = max(valid.float().sum().item(), 1.0)
        n = 0
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                if mmt > 0:
                    self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                    weights[inds] = tot / self.acc_sum[i]
                else:
                    weights[inds] = tot / num_in_bin
                n += 1
        if n > 0:
            weights = weights / n
        return F.binary_cross_entropy_with_logits(pred, target, weights, reduction='sum') / tot


def ghm_logits(m, k, targets, edges):
    """Random logits whose gradient norm g stays 2e-6 away from every bin edge, so an ulp of
    difference between two sigmoid implementations cannot move an element to another bin."""
    while True:
        x = torch.randn(m, k) * 3
        g = (x.sigmoid() - targets).abs()
        if m * k == 0 or (g[..., None] - edges).abs().min() > 2e-6:
            return x


def ghmc_case(bins, momentum, steps):
    ref = GHMC(bins, momentum)
    rec = []
    for m, k, pos_share, ignore_share in steps:
        t = (torch.rand(m, k) < pos_share).float()
        w = (torch.rand(m, k) >= ignore_share).float()
        x = ghm_logits(m, k, t, ref.edges)
        value, grad, g = grads_of(lambda p: ref.forward(p, t, w), x, None)
        rec.append({"m": m, "k": k, "logits": flat(x), "targets": flat(t), "label_weights": flat(w),
                    "value": flat(value), "grad_logits": flat(grad), "acc_sum": flat(ref.acc_sum)})
    return {"bins": bins, "momentum": momentum, "steps": rec}


out["ghmc"] = [
    ghmc_case(10, 0.75, [(20, 3, 0.2, 0.0), (20, 3, 0.2, 0.0), (16, 3, 0.3, 0.0)]),
    ghmc_case(10, 0.75, [(24, 2, 0.25, 0.3), (18, 2, 0.25, 0.3)]),                 # ignored elements
    ghmc_case(10, 0.0, [(20, 3, 0.2, 0.0), (12, 3, 0.5, 0.2)]),                    # no momentum
    ghmc_case(30, 0.75, [(30, 1, 0.3, 0.1), (30, 1, 0.3, 0.1)]),                   # mmdet's RetinaNet-GHM bins, K = 1
    ghmc_case(10, 0.75, [(12, 2, 0.3, 0.0), (8, 2, 0.3, 1.0), (0, 2, 0.3, 0.0), (10, 2, 0.3, 0.0)]),  # all ignored, empty
]


# ---------------------------------------------------------------- OHEM selection
def ohem(losses, labels, ratio, minimum):
    pos = [i for i, l in enumerate(labels) if l >= 0]
    neg = [i for i, l in enumerate(labels) if l == -1]
    k = min(max(ratio * len(pos), minimum), len(neg))
    neg.sort(key=lambda i: (-losses[i], i))
    w = [0.0] * len(labels)
    for i in pos + neg[:k]:
        w[i] = 1.0
    return w


def ohem_case(losses, labels, ratio, minimum):
    losses = torch.as_tensor(losses, dtype=torch.float32)
    vals = [float(v) for v in losses.tolist()]
    return {"losses": flat(losses), "labels": ints(torch.as_tensor(labels)), "ratio": ratio, "minimum": minimum,
            "weights": ohem(vals, [int(l) for l in labels], ratio, minimum)}


def ohem_labels(m, pos_share, ignore_share):
    r = torch.rand(m)
    lab = torch.full((m,), -1)
    lab[r < pos_share] = torch.randint(0, 3, (m,))[r < pos_share]
    lab[(r >= pos_share) & (r < pos_share + ignore_share)] = -2
    return lab.tolist()


out["ohem"] = [
    ohem_case(torch.rand(40) * 3, ohem_labels(40, 0.1, 0.1), 3, 3),
    ohem_case(torch.randint(0, 4, (30,)).float() * 0.5, ohem_labels(30, 0.1, 0.1), 3, 3),   # many equal losses
    ohem_case(torch.rand(20), [-1] * 15 + [-2] * 5, 3, 4),                                 # no positive: the minimum
    ohem_case(torch.rand(12), ohem_labels(12, 0.5, 0.0), 3, 0),                             # fewer negatives than asked
    ohem_case(torch.zeros(0), [], 3, 3),                                                     # empty
    ohem_case(torch.rand(10), [-1] * 10, 1, 0),                                              # no positive, minimum 0
]


# ---------------------------------------------------------------- EQL (sigmoid)
def eql_forward(cls_score, label, freq_info, lambda_):
    """tztztztztz/eqlv2 EQL.forward; label == n_c is background."""
    n_i, n_c = cls_score.size()
    target = cls_score.new_zeros(n_i, n_c + 1)
    target[torch.arange(n_i), label] = 1
    target = target[:, :n_c]
    exclude = (label != n_c).float().view(n_i, 1).expand(n_i, n_c)
    threshold = cls_score.new_zeros(n_c)
    threshold[freq_info < lambda_] = 1
    threshold = threshold.view(1, n_c).expand(n_i, n_c)
    eql_w = 1 - exclude * threshold * (1 - target)
    cls_loss = F.binary_cross_entropy_with_logits(cls_score, target, reduction='none')
    return torch.sum(cls_loss * eql_w) / n_i


def eql_case(m, k, labels, freq, lam, logits):
    mm = to_mmdet_labels(labels, k)
    value, grad, _ = grads_of(lambda x: eql_forward(x, mm, freq, lam), logits, None)
    return {"m": m, "k": k, "labels": ints(labels), "frequencies": flat(freq), "lambda": lam, "logits": flat(logits),
            "value": flat(value), "grad_logits": flat(grad)}


freq = torch.tensor([0.2, 0.001, 0.05, 0.0005, 0.3, 0.004])
out["eql"] = [
    eql_case(12, 6, torch.randint(0, 6, (12,)), freq, 0.00177, torch.randn(12, 6) * 2.5),
    eql_case(14, 6, random_labels(14, 6, 0.6), freq, 0.01, torch.randn(14, 6) * 2.5),          # background rows
    eql_case(10, 4, torch.randint(0, 4, (10,)), torch.tensor([0.001, 0.002, 0.0001, 0.0015]), 0.00177,
             torch.randn(10, 4) * 2.5),                                                         # every class rare
    eql_case(10, 4, torch.randint(0, 4, (10,)), torch.tensor([0.1, 0.2, 0.3, 0.4]), 0.00177,
             torch.randn(10, 4) * 2.5),                                                         # none rare: BCE
    eql_case(9, 3, torch.randint(0, 3, (9,)), torch.tensor([0.5, 0.0015, 0.0017]), 0.0017, torch.randn(9, 3) * 2.5),
]
# empty batch: the official divides by n_i = 0 (NaN); the Swift loss divides by max(1, n_i) and gives 0.
out["eql_empty"] = {"k": 3, "frequencies": flat(torch.tensor([0.5, 0.001, 0.1])), "lambda": 0.00177}


# ---------------------------------------------------------------- softmax EQL
def seql_forward(inputs, targets, t_lambda, beta):
    """BagOfTricks-LT SEQL.forward with the Bernoulli draws `beta` given."""
    onehot_label = F.one_hot(targets, inputs.size(1)).float()
    w = 1 - beta * t_lambda * (1 - onehot_label)
    p = torch.exp(inputs) / ((w * torch.exp(inputs)).sum(axis=1, keepdims=True))
    return F.nll_loss(torch.log(p), targets)


def seql_case(m, k, labels, freq, lam, gamma, logits):
    beta = (torch.rand(m, k) < gamma).float()
    t_lambda = (freq < lam).float()
    value, grad, _ = grads_of(lambda x: seql_forward(x, labels, t_lambda, beta), logits, None)
    return {"m": m, "k": k, "labels": ints(labels), "frequencies": flat(freq), "lambda": lam, "beta": flat(beta),
            "logits": flat(logits), "value": flat(value), "grad_logits": flat(grad)}


out["seql"] = [
    seql_case(12, 6, torch.randint(0, 6, (12,)), freq, 0.005, 0.9, torch.randn(12, 6) * 2.5),
    seql_case(10, 6, torch.randint(0, 6, (10,)), freq, 0.06, 0.5, torch.randn(10, 6) * 2.5),
    seql_case(8, 4, torch.randint(0, 4, (8,)), torch.tensor([0.001, 0.002, 0.0001, 0.0015]), 0.005, 1.0,
              torch.randn(8, 4) * 2.5),                                                          # beta all 1
    seql_case(8, 4, torch.randint(0, 4, (8,)), torch.tensor([0.001, 0.002, 0.0001, 0.0015]), 0.005, 0.0,
              torch.randn(8, 4) * 2.5),                                                          # beta all 0: CE
    seql_case(9, 3, torch.tensor([1, 1, 2, 0, 1, 2, 2, 1, 0]), torch.tensor([0.5, 0.001, 0.004]), 0.005, 0.9,
              torch.randn(9, 3) * 2.5),
]


# ---------------------------------------------------------------- EQLv2
def map_func(x, gamma, mu):
    return 1 / (1 + torch.exp(-gamma * (x - mu)))


class EQLv2Official:
    """tztztztztz/eqlv2 EQLv2 (forward, get_weight, collect_grad) verbatim, single process (all_reduce
    is the identity); the last logit column is the background class."""

    def __init__(self, num_classes, gamma, mu, alpha):
        self.num_classes, self.gamma, self.mu, self.alpha = num_classes, gamma, mu, alpha
        self.pos_grad = torch.zeros(num_classes)
        self.neg_grad = torch.zeros(num_classes)
        self.pos_neg = torch.ones(num_classes) * 100

    def forward(self, cls_score, label):
        self.n_i, self.n_c = cls_score.size()
        target = cls_score.new_zeros(self.n_i, self.n_c)
        target[torch.arange(self.n_i), label] = 1
        pos_w, neg_w = self.get_weight(cls_score)
        weight = pos_w * target + neg_w * (1 - target)
        cls_loss = F.binary_cross_entropy_with_logits(cls_score, target, reduction='none')
        cls_loss = torch.sum(cls_loss * weight) / self.n_i
        self.collect_grad(cls_score.detach(), target.detach(), weight.detach())
        return cls_loss

    def collect_grad(self, cls_score, target, weight):
        prob = torch.sigmoid(cls_score)
        grad = target * (prob - 1) + (1 - target) * prob
        grad = torch.abs(grad)
        pos_grad = torch.sum(grad * target * weight, dim=0)[:-1]
        neg_grad = torch.sum(grad * (1 - target) * weight, dim=0)[:-1]
        self.pos_grad += pos_grad
        self.neg_grad += neg_grad
        self.pos_neg = self.pos_grad / (self.neg_grad + 1e-10)

    def get_weight(self, cls_score):
        neg_w = torch.cat([map_func(self.pos_neg, self.gamma, self.mu), cls_score.new_ones(1)])
        pos_w = 1 + self.alpha * (1 - neg_w)
        neg_w = neg_w.view(1, -1).expand(self.n_i, self.n_c)
        pos_w = pos_w.view(1, -1).expand(self.n_i, self.n_c)
        return pos_w, neg_w


class EQLv2Adapted(EQLv2Official):
    """The official code without the background column: every column is a class, all are weighted by
    the gradient ratio and all collect gradients; the loss is still divided by n_i."""

    def collect_grad(self, cls_score, target, weight):
        prob = torch.sigmoid(cls_score)
        grad = target * (prob - 1) + (1 - target) * prob
        grad = torch.abs(grad)
        pos_grad = torch.sum(grad * target * weight, dim=0)
        neg_grad = torch.sum(grad * (1 - target) * weight, dim=0)
        self.pos_grad += pos_grad
        self.neg_grad += neg_grad
        self.pos_neg = self.pos_grad / (self.neg_grad + 1e-10)

    def get_weight(self, cls_score):
        neg_w = map_func(self.pos_neg, self.gamma, self.mu)
        pos_w = 1 + self.alpha * (1 - neg_w)
        return pos_w.view(1, -1).expand(self.n_i, self.n_c), neg_w.view(1, -1).expand(self.n_i, self.n_c)


def close(a, b, tol=1e-5):
    a, b = a.double(), b.double()
    scale = max(b.abs().max().item() if b.numel() else 0.0, 1e-12)
    return a.shape == b.shape and ((a - b).abs() <= tol * scale).all().item()


def eqlv2_case(k, gamma, mu, alpha, steps):
    adapted = EQLv2Adapted(k, gamma, mu, alpha)
    official = EQLv2Official(k, gamma, mu, alpha)
    rec = []
    for m, skew in steps:
        probs = torch.tensor([skew ** j for j in range(k)])
        labels = torch.multinomial(probs, m, replacement=True) if m > 0 else torch.zeros(0, dtype=torch.long)
        x = torch.randn(m, k) * 2.5
        if m > 0:
            value, grad, _ = grads_of(lambda z: adapted.forward(z, labels), x, None)
            # The official code on the same batch with a background column far below zero.
            xo = torch.cat([x, torch.full((m, 1), -100.0)], dim=1)
            vo, go, _ = grads_of(lambda z: official.forward(z, labels), xo, None)
            assert close(value, vo) and close(grad, go[:, :k]), "EQLv2 adaptation differs from the official code"
            assert close(adapted.pos_grad, official.pos_grad) and close(adapted.neg_grad, official.neg_grad)
        else:
            # The official divides by n_i = 0; the Swift loss returns 0 and collects nothing.
            value, grad = torch.tensor(0.0), torch.zeros(0, k)
        rec.append({"m": m, "labels": ints(labels), "logits": flat(x), "value": flat(value), "grad_logits": flat(grad),
                    "pos_grad": flat(adapted.pos_grad), "neg_grad": flat(adapted.neg_grad)})
    return {"k": k, "gamma": gamma, "mu": mu, "alpha": alpha, "steps": rec}


out["eqlv2"] = [
    eqlv2_case(5, 12.0, 0.8, 4.0, [(16, 0.5), (16, 0.5), (16, 0.5)]),
    eqlv2_case(4, 12.0, 0.8, 4.0, [(20, 0.3), (12, 0.3), (0, 0.3), (20, 0.3)]),     # an empty step
    eqlv2_case(6, 12.0, 0.8, 4.0, [(24, 0.6), (24, 0.6), (24, 0.6), (24, 0.6)]),
    eqlv2_case(3, 8.0, 0.6, 2.0, [(10, 1.0), (10, 1.0)]),
    eqlv2_case(1, 12.0, 0.8, 4.0, [(8, 1.0), (8, 1.0)]),                            # one class: no negatives
]


# ---------------------------------------------------------------- Seesaw
def seesaw_ce_loss(cls_score, labels, cum_samples, num_classes, p, q, eps, reduction):
    """mmdet seesaw_ce_loss (label_weights None, avg_factor None)."""
    onehot_labels = F.one_hot(labels, num_classes)
    seesaw_weights = cls_score.new_ones(onehot_labels.size())
    if p > 0:
        sample_ratio_matrix = cum_samples[None, :].clamp(min=1) / cum_samples[:, None].clamp(min=1)
        index = (sample_ratio_matrix < 1.0).float()
        sample_weights = sample_ratio_matrix.pow(p) * index + (1 - index)
        mitigation_factor = sample_weights[labels.long(), :]
        seesaw_weights = seesaw_weights * mitigation_factor
    if q > 0:
        scores = F.softmax(cls_score.detach(), dim=1)
        self_scores = scores[torch.arange(0, len(scores)).long(), labels.long()]
        score_matrix = scores / self_scores[:, None].clamp(min=eps)
        index = (score_matrix > 1.0).float()
        compensation_factor = score_matrix.pow(q) * index + (1 - index)
        seesaw_weights = seesaw_weights * compensation_factor
    cls_score = cls_score + (seesaw_weights.log() * (1 - onehot_labels))
    loss = F.cross_entropy(cls_score, labels, weight=None, reduction='none')
    return loss if reduction == "none" else (loss.mean() if reduction == "mean" else loss.sum())


def seesaw_case(k, p, q, eps, reduction, steps):
    cum = torch.zeros(k, dtype=torch.float)
    rec = []
    for m, skew in steps:
        probs = torch.tensor([skew ** j for j in range(k)])
        labels = torch.multinomial(probs, m, replacement=True) if m > 0 else torch.zeros(0, dtype=torch.long)
        for u in labels.unique():                         # SeesawLoss.forward's update, before the loss
            cum[u] += (labels == u.item()).sum()
        x = torch.randn(m, k) * 2.5
        value, grad, g = grads_of(lambda z: seesaw_ce_loss(z, labels, cum, k, p, q, eps, reduction), x,
                                  (m,) if reduction == "none" else None)
        rec.append({"m": m, "labels": ints(labels), "logits": flat(x), "upstream": flat(g), "value": flat(value),
                    "grad_logits": flat(grad), "cum_samples": flat(cum)})
    return {"k": k, "p": p, "q": q, "eps": eps, "reduction": reduction, "steps": rec}


out["seesaw"] = [
    seesaw_case(5, 0.8, 2.0, 1e-2, "mean", [(16, 0.5), (16, 0.5), (16, 0.5)]),
    seesaw_case(4, 0.8, 2.0, 1e-2, "none", [(12, 0.3), (12, 0.3)]),
    seesaw_case(4, 0.0, 2.0, 1e-2, "sum", [(12, 0.4), (12, 0.4)]),                 # compensation only
    seesaw_case(4, 0.8, 0.0, 1e-2, "mean", [(12, 0.4), (12, 0.4)]),                # mitigation only
    seesaw_case(6, 0.8, 2.0, 1e-2, "sum", [(10, 0.6), (0, 0.6), (10, 0.6)]),       # an empty step
    seesaw_case(3, 0.8, 2.0, 0.5, "mean", [(9, 1.0), (9, 1.0)]),                   # equal counts, large eps
]


# ---------------------------------------------------------------- class-weighted cross-entropy
def class_weights(counts, scheme, beta):
    n = np.asarray(counts, dtype=np.float64)
    if scheme == "inverse_frequency":
        w = 1.0 / n
    else:
        w = (1.0 - beta) / (1.0 - np.power(beta, n))
    w = w / w.sum() * len(n)
    return torch.tensor(w, dtype=torch.float32)


def wce_case(counts, scheme, beta, m, reduction):
    k = len(counts)
    labels = torch.randint(0, k, (m,))
    x = torch.randn(m, k) * 2.5
    w = class_weights(counts, scheme, beta)
    value, grad, g = grads_of(lambda z: F.cross_entropy(z, labels, weight=w, reduction=reduction), x,
                              (m,) if reduction == "none" else None)
    return {"counts": counts, "scheme": scheme, "beta": beta, "reduction": reduction, "m": m, "k": k,
            "labels": ints(labels), "logits": flat(x), "weights": flat(w), "upstream": flat(g), "value": flat(value),
            "grad_logits": flat(grad)}


out["wce"] = [
    wce_case([500, 40, 7, 1200], "inverse_frequency", 0.999, 12, "mean"),
    wce_case([500, 40, 7, 1200], "effective_number", 0.999, 12, "mean"),
    wce_case([3, 3000, 30, 300, 1], "effective_number", 0.999, 10, "none"),
    wce_case([3, 3000, 30, 300, 1], "inverse_frequency", 0.999, 10, "sum"),
    wce_case([100, 100, 100], "effective_number", 0.99, 8, "mean"),
    wce_case([100, 5, 1], "inverse_frequency", 0.999, 0, "sum"),                    # empty
]


# ---------------------------------------------------------------- margin focusing (thesis)
def margin_multiclass(x, labels, m, weights):
    n, k = x.shape
    zy = x.gather(1, labels[:, None]).squeeze(1)
    masked = x.detach().clone()
    masked[torch.arange(n), labels] = -float("inf")
    j = masked.argmax(dim=1)                                # first maximal index
    zo = x.gather(1, j[:, None]).squeeze(1)
    margin = zy - zo
    support = (margin.detach() < m) & (weights > 0)
    count = int(support.sum().item())
    c = torch.where(support, weights, torch.zeros_like(weights))
    return ((m - margin) * c).sum() / max(1, count), support


def margin_case(m_samples, k, labels, logits, margin, weights):
    sup = {}
    def f(x):
        loss, s = margin_multiclass(x, labels, margin, weights)
        sup["s"] = s
        return loss
    value, grad, _ = grads_of(f, logits, None)
    return {"m": m_samples, "k": k, "margin": margin, "labels": ints(labels), "logits": flat(logits),
            "weights": flat(weights), "value": flat(value), "grad_logits": flat(grad),
            "support": [bool(v) for v in sup["s"].tolist()]}


mc = []
lab = torch.randint(0, 5, (14,))
mc.append(margin_case(14, 5, lab, torch.randn(14, 5) * 2, 1.0, torch.ones(14)))
lab = torch.randint(0, 4, (12,))
tied = torch.randint(-4, 5, (12, 4)).float() * 0.5          # a coarse grid: ties in the max and margins == m
mc.append(margin_case(12, 4, lab, tied, 1.0, torch.ones(12)))
others = tied.clone()
others[torch.arange(12), lab] = -float("inf")
top = others.max(dim=1, keepdim=True).values
assert ((others == top).sum(dim=1) > 1).any(), "the tie case needs a tie in the max of the other logits"
assert ((tied.gather(1, lab[:, None]) - top) == 1.0).any(), "the tie case needs a margin exactly at m"
lab = torch.randint(0, 3, (10,))
w = (torch.rand(10) < 0.7).float() * (0.5 + torch.rand(10))
mc.append(margin_case(10, 3, lab, torch.randn(10, 3) * 2, 2.0, w))               # weights, some 0
lab = torch.arange(6) % 3
x = torch.full((6, 3), -4.0)
x[torch.arange(6), lab] = 4.0
mc.append(margin_case(6, 3, lab, x, 1.0, torch.ones(6)))                          # no support sample
mc.append(margin_case(0, 3, torch.zeros(0, dtype=torch.long), torch.zeros(0, 3), 1.0, torch.zeros(0)))  # empty
lab = torch.randint(0, 6, (16,))
mc.append(margin_case(16, 6, lab, torch.randn(16, 6) * 3, 0.5, torch.ones(16)))
out["margin"] = mc


def margin_binary(s, y, m, weights):
    margin = y * s
    support = (margin.detach() < m) & (weights > 0)
    count = int(support.sum().item())
    c = torch.where(support, weights, torch.zeros_like(weights))
    return ((m - margin) * c).sum() / max(1, count), support


def binary_case(n, logits, targets, margin, weights):
    sup = {}
    def f(x):
        loss, s = margin_binary(x, targets, margin, weights)
        sup["s"] = s
        return loss
    value, grad, _ = grads_of(f, logits, None)
    return {"m": n, "margin": margin, "targets": flat(targets), "logits": flat(logits), "weights": flat(weights),
            "value": flat(value), "grad_logits": flat(grad), "support": [bool(v) for v in sup["s"].tolist()]}


def signs(n, pos_share):
    return torch.where(torch.rand(n) < pos_share, torch.tensor(1.0), torch.tensor(-1.0))


tied_s, tied_y = torch.randint(-4, 5, (12,)).float() * 0.5, signs(12, 0.5)
assert ((tied_s * tied_y) == 1.0).any(), "the tie case needs a margin exactly at m"
mb = [
    binary_case(20, torch.randn(20) * 3, signs(20, 0.3), 1.0, torch.ones(20)),
    binary_case(16, torch.randn(16) * 3, signs(16, 0.3), 1.0, (torch.rand(16) < 0.75).float()),   # ignored anchors
    binary_case(12, tied_s, tied_y, 1.0, torch.ones(12)),                                          # margin == m
    binary_case(10, torch.randn(10) * 3, torch.full((10,), -1.0), 2.0, torch.ones(10)),            # all background
    binary_case(0, torch.zeros(0), torch.zeros(0), 1.0, torch.zeros(0)),                            # empty
    binary_case(14, torch.randn(14) * 3, signs(14, 0.5), 0.5, 0.5 + torch.rand(14)),               # soft weights
]
out["margin_binary"] = mb

print(json.dumps(out))
