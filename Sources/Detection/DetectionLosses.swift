import Autodiff

// Detection losses composed of tape primitives (no backward code of their own), each written in the
// operation order of its torchvision reference so values agree to Float32 rounding.

/// Sigmoid focal loss (Lin et al. 2017, RetinaNet): `alpha_t (1 - p_t)^gamma BCE(x, y)` with
/// `p = sigmoid(x)`, `p_t = p y + (1 - p)(1 - y)`, `alpha_t = alpha y + (1 - alpha)(1 - y)`;
/// torchvision's `ops.sigmoid_focal_loss` (`alpha = -1` turns the weighting off). `targets` has the
/// logits' shape, 0/1 per class (soft targets work too). RetinaNet sums it over the non-ignored anchors
/// and divides by max(1, #foreground).
public func sigmoidFocalLoss(_ logits: Tensor, targets: Tensor, alpha: Float = 0.25, gamma: Float = 2,
                             reduction: Reduction = .none) -> Tensor {
    precondition(logits.shape == targets.shape, "sigmoidFocalLoss: logits \(logits.shape) and targets \(targets.shape) differ")
    precondition(alpha == -1 || (alpha >= 0 && alpha <= 1), "sigmoidFocalLoss: alpha \(alpha) must be in [0, 1], or -1 for no weighting")
    precondition(gamma >= 0, "sigmoidFocalLoss: gamma \(gamma) must be >= 0")
    let p = logits.sigmoid()
    let ce = Loss.bceWithLogits(logits, targets: targets, reduction: .none)
    let pT = p * targets + (1 - p) * (1 - targets)
    // torch evaluates `x ** 2` as a square (forward and backward).
    let modulating = gamma == 2 ? (1 - pT).square() : (1 - pT).pow(gamma)
    var loss = ce * modulating
    if alpha >= 0 {
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    }
    return reduced(loss, reduction)
}

/// Generalized IoU loss `1 - GIoU` of paired boxes `[n, 4]` xyxy (row i of `pred` against row i of
/// `target`): torchvision's `ops.generalized_box_iou_loss`, `eps` added to the union and the enclosing
/// area. Differentiable in both inputs; where two coordinates tie, the min/max gradient is split
/// evenly, as PyTorch's `torch.max(a, b)` does.
public func generalizedIoULoss(_ pred: Tensor, _ target: Tensor, eps: Float = 1e-7, reduction: Reduction = .none) -> Tensor {
    precondition(pred.rank == 2 && pred.shape[1] == 4 && pred.shape == target.shape,
                 "generalizedIoULoss: boxes must be [n, 4] of equal shape, got \(pred.shape) and \(target.shape)")
    let n = pred.shape[0]
    let p = pred.split(axis: 1, sizes: [1, 1, 1, 1]), t = target.split(axis: 1, sizes: [1, 1, 1, 1])
    let (x1, y1, x2, y2) = (p[0], p[1], p[2], p[3])
    let (x1g, y1g, x2g, y2g) = (t[0], t[1], t[2], t[3])

    // torchvision's _loss_inter_union: the intersection is written only where it is non-empty.
    let xk1 = maximum(x1, x1g), yk1 = maximum(y1, y1g), xk2 = minimum(x2, x2g), yk2 = minimum(y2, y2g)
    let overlapping = mask(n) { i in yk2.pointer[i] > yk1.pointer[i] && xk2.pointer[i] > xk1.pointer[i] }
    let inter = Tensor.select(overlapping, (xk2 - xk1) * (yk2 - yk1), Tensor.zeros([n, 1]))
    let union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    let iou = inter / (union + eps)

    let xc1 = minimum(x1, x1g), yc1 = minimum(y1, y1g), xc2 = maximum(x2, x2g), yc2 = maximum(y2, y2g)
    let enclosing = (xc2 - xc1) * (yc2 - yc1)
    let giou = iou - ((enclosing - union) / (enclosing + eps))
    return reduced((1 - giou).reshaped([n]), reduction)
}

/// Mean (or summed) absolute difference: PyTorch's `F.l1_loss`, mean by default (RetinaNet v1 sums
/// over foreground anchors). The gradient at a zero difference is 0, like `sign(0)`.
public func l1Loss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
    precondition(input.shape == target.shape, "l1Loss: input \(input.shape) and target \(target.shape) differ")
    return reduced((input - target).abs(), reduction)
}

func reduced(_ t: Tensor, _ r: Reduction) -> Tensor {
    switch r {
    case .mean: return t.mean()
    case .sum: return t.sum()
    case .none: return t
    }
}

/// A constant 0/1 tensor `[n, 1]` (never differentiated) from a predicate on row i.
private func mask(_ n: Int, _ predicate: (Int) -> Bool) -> Tensor {
    Tensor(shape: [n, 1], scalars: (0..<n).map { predicate($0) ? 1 : 0 })
}

/// Elementwise max of two same-shape tensors with PyTorch's gradient rule (derivatives.yaml,
/// `maximum`): the gradient goes to the larger input and is halved between them on a tie. On a tie
/// the value is `(a + b) * 0.5`, which is exactly `a`.
func maximum(_ a: Tensor, _ b: Tensor) -> Tensor {
    let n = a.count
    let greater = Tensor(shape: a.shape, scalars: (0..<n).map { a.pointer[$0] > b.pointer[$0] ? 1 : 0 })
    let tie = Tensor(shape: a.shape, scalars: (0..<n).map { a.pointer[$0] == b.pointer[$0] ? 1 : 0 })
    return Tensor.select(greater, a, Tensor.select(tie, (a + b) * 0.5, b))
}

/// Elementwise min with PyTorch's `minimum` gradient rule (see `maximum`).
func minimum(_ a: Tensor, _ b: Tensor) -> Tensor {
    let n = a.count
    let less = Tensor(shape: a.shape, scalars: (0..<n).map { a.pointer[$0] < b.pointer[$0] ? 1 : 0 })
    let tie = Tensor(shape: a.shape, scalars: (0..<n).map { a.pointer[$0] == b.pointer[$0] ? 1 : 0 })
    return Tensor.select(less, a, Tensor.select(tie, (a + b) * 0.5, b))
}
