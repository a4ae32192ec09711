import Autodiff

/// Sigmoid Equalization Loss (Tan et al., CVPR 2020, "Equalization Loss for Long-Tailed Object
/// Recognition"), as the official `EQL.forward` (tztztztztz/eqlv2 mmdet/models/losses/eql.py, the same
/// as eql.detectron2's `eql_loss`): `sum(w * BCE(x, y)) / M` with
/// `w_j = 1 - E(r) T_lambda(f_j) (1 - y_j)`, where `T_lambda(f_j) = 1` for a rare class (frequency
/// `f_j < lambda`) and `E(r) = 1` for a foreground sample. Each positive of a frequent class otherwise
/// pushes every rare class down; the weight stops those negative gradients onto rare classes, which are
/// then learnt from their own positives alone.
///
/// For the thesis' fine-grained type classifier (ALGORITHMS.md section 6: gradient stopping belongs to
/// the class head, not the fg/bg head). `labels[i]` is a class in `0..<K`, or -1 for a background
/// sample (E = 0, all-zero target row: the official's label `K`); `frequencies[j]` is class j's share
/// (the paper uses the fraction of training images containing it). The weight is a constant, so a
/// stopped gradient is exactly 0. lambda 1.77e-3 is the official LVIS setting (both repositories); with a
/// few aircraft types it must be set from the data. An empty batch gives 0 (the official gives NaN).
public func equalizationLoss(_ logits: Tensor, labels: [Int], frequencies: [Float], lambda: Float = 0.00177) -> Tensor {
    precondition(logits.rank == 2, "equalizationLoss: logits must be [M, K], got \(logits.shape)")
    let (m, k) = (logits.shape[0], logits.shape[1])
    checkLabels(labels, rows: m, classes: k, background: true, "equalizationLoss")
    precondition(frequencies.count == k, "equalizationLoss: \(frequencies.count) frequencies for \(k) classes")
    let targets = classTargets(labels, classes: k)
    let weights = equalizationWeights(labels: labels, rare: frequencies.map { $0 < lambda })
    return perSample((Loss.bceWithLogits(logits, targets: targets, reduction: .none) * weights).sum(), rows: m)
}

/// `[M, K]`: 0 where a foreground sample's negative class is rare, 1 elsewhere.
func equalizationWeights(labels: [Int], rare: [Bool]) -> Tensor {
    let k = rare.count
    var w = [Float](repeating: 1, count: labels.count * k)
    for (i, y) in labels.enumerated() where y >= 0 {
        for j in 0..<k where rare[j] && j != y { w[i * k + j] = 0 }
    }
    return constant([labels.count, k], w)
}
