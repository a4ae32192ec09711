import Autodiff

/// Quality Focal Loss (Li et al., NeurIPS 2020, "Generalized Focal Loss"), as mmdetection's
/// `quality_focal_loss` (mmdet/models/losses/gfocal_loss.py): the target of a positive anchor's class
/// is the IoU `q` of its regressed box with its ground truth, so the score learns localisation quality
/// and ranks detections by it (ALGORITHMS.md section 6, quality-aware targets).
///
/// - every element: `BCE(x, 0) * sigmoid(x)^beta` (a negative for every class);
/// - the label column of a positive row instead: `BCE(x, q) * |q - sigmoid(x)|^beta`.
///
/// Like mmdet, the modulating factors are not detached: their gradient flows. `labels[i]` is a class
/// index in `0..<K` or -1 for background; `quality[i]` (in [0, 1]) is read only on positive rows. The
/// class-agnostic fg/bg logit of the thesis' decoupled head is `K = 1` with labels 0 / -1. Ignored
/// anchors are left out by the caller (rows not passed, or their loss masked).
///
/// Reduction: `.none` gives the elementwise `[M, K]` loss (mmdet's before its row sum), `.sum` the total,
/// `.mean` mmdet's mean of the per-anchor (row) losses, i.e. total / M. GFL's head sums and divides by
/// the number of positives. beta 2 is the paper's and mmdet's default.
public func qualityFocalLoss(_ logits: Tensor, labels: [Int], quality: [Float], beta: Float = 2,
                             reduction: Reduction = .none) -> Tensor {
    precondition(logits.rank == 2, "qualityFocalLoss: logits must be [M, K], got \(logits.shape)")
    let (m, k) = (logits.shape[0], logits.shape[1])
    checkLabels(labels, rows: m, classes: k, background: true, "qualityFocalLoss")
    precondition(quality.count == m, "qualityFocalLoss: \(quality.count) quality values for \(m) rows")
    precondition(zip(labels, quality).allSatisfy { $0 < 0 || ($1 >= 0 && $1 <= 1) },
                 "qualityFocalLoss: a positive's quality is outside [0, 1]")
    precondition(beta >= 0, "qualityFocalLoss: beta \(beta) must be >= 0")

    let p = logits.sigmoid()
    var loss = Loss.bceWithLogits(logits, targets: Tensor.zeros([m, k]), reduction: .none) * p.pow(beta)
    if labels.contains(where: { $0 >= 0 }) {
        let q = classTargets(labels, classes: k, values: quality)
        let positive = classTargets(labels, classes: k)
        // mmdet overwrites these entries in place (index_put), so their negative-form term gets no gradient.
        let positiveLoss = Loss.bceWithLogits(logits, targets: q, reduction: .none) * (q - p).abs().pow(beta)
        loss = Tensor.select(positive, positiveLoss, loss)
    }
    switch reduction {
    case .none: return loss
    case .sum: return loss.sum()
    case .mean: return perSample(loss.sum(), rows: m)
    }
}
