import Autodiff
import Foundation

/// Equalization Loss v2 (Tan et al., CVPR 2021, "Equalization Loss v2: A New Gradient Balance Approach
/// for Long-tailed Object Detection"), as the official `EQLv2` (tztztztztz/eqlv2
/// mmdet/models/losses/eqlv2.py: `forward`, `get_weight`, `collect_grad`). Sigmoid BCE per class,
/// `sum(w * BCE) / M`, with per-class weights from the accumulated ratio `r_j` of positive to negative
/// gradient magnitude: `negative w_j = 1 / (1 + exp(-gamma (r_j - mu)))`,
/// `positive w_j = 1 + alpha (1 - negative w_j)`. A class whose positives are outweighed by negative
/// gradients (a rare class) gets its negatives down-weighted and its positives up-weighted.
///
/// After each call the state takes this batch's gradients, exactly as `collect_grad` does (single
/// process: its all_reduce is the identity): the analytic BCE gradient `|sigmoid(x) - y|` times the
/// weight used, summed over samples into `positiveGradients` (y = 1) and `negativeGradients` (y = 0);
/// `gradientRatio = positive / (negative + 1e-10)`. It starts at 100, which makes every weight 1.
///
/// Adaptation (documented deviation): the official classifier has a background column (last logit;
/// weight fixed at 1, gradients not collected, background samples labelled with it). The thesis' type
/// classifier sees foreground samples only and has no such column, so every column is a class: all are
/// weighted by their ratio and all collect gradients. On an all-foreground batch this equals the
/// official with a background logit far below 0 (the fixture script checks that against the verbatim
/// official code). `labels` are classes in `0..<K`. An empty batch gives 0 and leaves the state as it
/// is (the official divides by 0). Defaults gamma 12, mu 0.8, alpha 4 are the official's (LVIS).
public final class EQLv2 {
    public let numClasses: Int
    public let gamma: Float
    public let mu: Float
    public let alpha: Float
    /// Accumulated positive / negative gradient magnitude per class (the official's `pos_grad`, `neg_grad`).
    public private(set) var positiveGradients: [Float]
    public private(set) var negativeGradients: [Float]
    /// The official's `pos_neg`: positive / (negative + 1e-10), 100 before the first batch.
    public private(set) var gradientRatio: [Float]

    public init(numClasses: Int, gamma: Float = 12, mu: Float = 0.8, alpha: Float = 4) throws {
        guard numClasses >= 1 else { throw DetectionConfigError(key: "num_classes", "must be at least 1, got \(numClasses)") }
        guard gamma > 0 else { throw DetectionConfigError(key: "eqlv2.gamma", "\(gamma) must be > 0 (the slope of the weight mapping)") }
        guard alpha >= 0 else { throw DetectionConfigError(key: "eqlv2.alpha", "\(alpha) must be >= 0") }
        guard mu.isFinite else { throw DetectionConfigError(key: "eqlv2.mu", "\(mu) must be a finite number") }
        self.numClasses = numClasses
        self.gamma = gamma; self.mu = mu; self.alpha = alpha
        positiveGradients = [Float](repeating: 0, count: numClasses)
        negativeGradients = [Float](repeating: 0, count: numClasses)
        gradientRatio = [Float](repeating: 100, count: numClasses)
    }

    /// Puts back the accumulated gradients of a checkpoint (the ratio follows from them).
    public func restore(positiveGradients pos: [Float], negativeGradients neg: [Float]) throws {
        guard pos.count == numClasses && neg.count == numClasses else {
            throw DetectionConfigError(key: "eqlv2.state", "\(pos.count) / \(neg.count) saved gradients for \(numClasses) classes; the checkpoint was written for another class count")
        }
        positiveGradients = pos
        negativeGradients = neg
        gradientRatio = zip(pos, neg).map { $0 / ($1 + Float(1e-10)) }
    }

    /// (negative weight, positive weight) of each class from the current ratio (`get_weight`).
    public var currentWeights: (negative: [Float], positive: [Float]) {
        let neg = gradientRatio.map { 1 / (1 + Foundation.exp(-gamma * ($0 - mu))) }
        return (neg, neg.map { 1 + alpha * (1 - $0) })
    }

    /// The loss of one batch (a scalar), then the state update.
    public func loss(_ logits: Tensor, labels: [Int]) -> Tensor {
        precondition(logits.rank == 2 && logits.shape[1] == numClasses,
                     "EQLv2: logits must be [M, \(numClasses)], got \(logits.shape)")
        let (m, k) = (logits.shape[0], numClasses)
        checkLabels(labels, rows: m, classes: k, background: false, "EQLv2")
        if m == 0 { return logits.sum() }
        let (negW, posW) = currentWeights
        var w = [Float](repeating: 0, count: m * k)
        for (i, y) in labels.enumerated() {
            for j in 0..<k { w[i * k + j] = j == y ? posW[j] : negW[j] }
        }
        let loss = perSample((Loss.bceWithLogits(logits, targets: classTargets(labels, classes: k), reduction: .none)
                              * constant([m, k], w)).sum(), rows: m)
        collectGradients(logits, labels: labels, weights: w)
        return loss
    }

    /// `collect_grad`: |dBCE/dx| = 1 - p on the label column, p elsewhere, times the weight, summed
    /// over samples in order.
    private func collectGradients(_ logits: Tensor, labels: [Int], weights w: [Float]) {
        let k = numClasses
        let prob = noGrad { logits.detached().sigmoid() }
        let p = prob.pointer
        var pos = [Float](repeating: 0, count: k), neg = [Float](repeating: 0, count: k)
        for (i, y) in labels.enumerated() {
            for j in 0..<k {
                let e = i * k + j
                if j == y { pos[j] += Swift.abs(p[e] - 1) * w[e] } else { neg[j] += p[e] * w[e] }
            }
        }
        for j in 0..<k {
            positiveGradients[j] += pos[j]
            negativeGradients[j] += neg[j]
            gradientRatio[j] = positiveGradients[j] / (negativeGradients[j] + Float(1e-10))
        }
    }
}
