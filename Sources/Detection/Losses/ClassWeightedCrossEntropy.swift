import Autodiff
import Foundation

/// How class weights follow from per-class training-sample counts `n_j`, both normalised to sum to the
/// number of classes (as Cui et al.'s code does), so the loss keeps its scale.
public enum ClassWeighting: Sendable, Equatable {
    /// `w_j ~ 1 / n_j`.
    case inverseFrequency
    /// Class-balanced loss (Cui et al., CVPR 2019): `w_j ~ (1 - beta) / (1 - beta^n_j)`, the inverse of
    /// the "effective number" of samples; beta 0.999 is the paper's common choice (beta -> 1 approaches
    /// inverse frequency, beta = 0 gives equal weights).
    case effectiveNumber(beta: Double = 0.999)
}

/// Class weights from class counts (computed in Double, returned as Float32).
/// Throws for an empty list, a class without samples (its weight would be infinite: drop the class
/// from the classifier or merge it) or a beta outside [0, 1).
public func classWeights(counts: [Int], _ weighting: ClassWeighting) throws -> [Float] {
    guard !counts.isEmpty else { throw DetectionConfigError(key: "class_counts", "no classes given") }
    if let j = counts.firstIndex(where: { $0 <= 0 }) {
        throw DetectionConfigError(key: "class_counts", "class \(j) has \(counts[j]) training samples; every class needs at least one (drop or merge empty classes)")
    }
    let raw: [Double]
    switch weighting {
    case .inverseFrequency:
        raw = counts.map { 1 / Double($0) }
    case .effectiveNumber(let beta):
        guard beta >= 0 && beta < 1 else {
            throw DetectionConfigError(key: "class_weights.beta", "\(beta) must be in [0, 1); 0.999 is Cui et al.'s usual value")
        }
        raw = counts.map { (1 - beta) / (1 - Foundation.pow(beta, Double($0))) }
    }
    let total = raw.reduce(0, +)
    return raw.map { Float($0 / total * Double(counts.count)) }
}

/// Softmax cross-entropy with a weight per class: PyTorch's `F.cross_entropy(weight=w)`, the plain
/// re-weighting baseline of the long-tail losses. `.mean` is PyTorch's weighted mean,
/// `sum_i w_{y_i} CE_i / sum_i w_{y_i}` (an empty batch gives 0, PyTorch NaN); `.none` is `[M]`.
public func classWeightedCrossEntropy(_ logits: Tensor, labels: [Int], classWeights: [Float],
                                      reduction: Reduction = .mean) -> Tensor {
    precondition(logits.rank == 2, "classWeightedCrossEntropy: logits must be [M, K], got \(logits.shape)")
    let (m, k) = (logits.shape[0], logits.shape[1])
    checkLabels(labels, rows: m, classes: k, background: false, "classWeightedCrossEntropy")
    precondition(classWeights.count == k && classWeights.allSatisfy { $0 >= 0 && $0.isFinite },
                 "classWeightedCrossEntropy: need \(k) finite non-negative class weights, got \(classWeights)")
    if m == 0 { return reduction == .none ? logits.sum(axes: [1]) : logits.sum() }
    let w = labels.map { classWeights[$0] }
    let weighted = Loss.crossEntropy(logits, targets: labels, reduction: .none) * constant([m], w)
    switch reduction {
    case .none: return weighted
    case .sum: return weighted.sum()
    case .mean: return weighted.sum() / w.reduce(0, +)
    }
}
