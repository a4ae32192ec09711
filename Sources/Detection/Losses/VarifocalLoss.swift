import Autodiff

/// Varifocal loss (Zhang et al., CVPR 2021, VFNet), as mmdetection's `varifocal_loss`
/// (mmdet/models/losses/varifocal_loss.py): `BCE(x, t) * w` elementwise, with soft targets `t`
/// (`[M, K]`: the IoU of the anchor's box with its ground truth at the label column, 0 elsewhere) and
///
/// - `t > 0`: `w = t` (`iouWeighted`, the paper) or `w = 1`;
/// - `t <= 0`: `w = alpha * |sigmoid(x) - t|^gamma` (focal down-weighting of negatives only).
///
/// Unlike focal loss the positives are not down-weighted, so rare high-quality positives keep their
/// gradient. A positive whose IoU target is exactly 0 is a negative here, as in mmdet (`t > 0` decides).
/// The weight is not detached (mmdet's neither). alpha 0.75 and gamma 2 are the paper's and mmdet's
/// defaults. Reduction as mmdet's `weight_reduce_loss` without weights: `.mean` over all M x K elements.
public func varifocalLoss(_ logits: Tensor, targets: Tensor, alpha: Float = 0.75, gamma: Float = 2,
                          iouWeighted: Bool = true, reduction: Reduction = .none) -> Tensor {
    precondition(logits.shape == targets.shape, "varifocalLoss: logits \(logits.shape) and targets \(targets.shape) differ")
    precondition(alpha >= 0, "varifocalLoss: alpha \(alpha) must be >= 0")
    precondition(gamma >= 0, "varifocalLoss: gamma \(gamma) must be >= 0")
    let n = targets.count, t = targets.pointer
    let positive = constant(targets.shape, (0..<n).map { t[$0] > 0 ? 1 : 0 })
    let negative = constant(targets.shape, (0..<n).map { t[$0] <= 0 ? 1 : 0 })
    let p = logits.sigmoid()
    let focalWeight = (iouWeighted ? targets * positive : positive) + alpha * (p - targets).abs().pow(gamma) * negative
    return reduced(Loss.bceWithLogits(logits, targets: targets, reduction: .none) * focalWeight, reduction)
}
