import Autodiff
import Foundation

/// Seesaw loss (Wang et al., CVPR 2021, "Seesaw Loss for Long-Tailed Instance Segmentation"), as
/// mmdetection's `seesaw_ce_loss` with `SeesawLoss.forward`'s class counting
/// (mmdet/models/losses/seesaw_loss.py). Softmax cross-entropy whose negative logits are shifted by
/// `log S_ij` (sample i of class i = y, negative class j):
///
/// - mitigation `(N_j / N_i)^p` when class j has fewer cumulative samples than class i (counts clamped
///   to >= 1), else 1: a frequent class stops pushing a rare one down;
/// - compensation `(sigma_j / sigma_i)^q` when the predicted probability of j exceeds that of the true
///   class (sigma_i clamped to >= eps), else 1: wrongly confident negatives are pushed back up.
///
/// Both factors are computed from detached values (constants); the gradient flows through the CE.
/// The cumulative counts (mmdet's `cum_samples` buffer) are updated with this batch's labels before the
/// loss, as mmdet does. Without the objectness branch: mmdet's Seesaw head adds two objectness logits
/// (fg/bg softmax) to the class logits; in the thesis' detector the decoupled fg/bg head does objectness,
/// so this is the class part alone, on foreground samples (`labels` in `0..<K`). Counts are Float32 like
/// mmdet's buffer (exact up to 2^24 samples per class). Defaults p 0.8, q 2, eps 1e-2 are the paper's
/// and mmdet's. Reduction `.mean` (mmdet's default) averages over samples; an empty batch gives 0.
public final class SeesawLoss {
    public let numClasses: Int
    public let p: Float
    public let q: Float
    public let eps: Float
    /// mmdet's `cum_samples`: the number of samples of each class seen so far.
    public private(set) var cumulativeSamples: [Float]

    public init(numClasses: Int, p: Float = 0.8, q: Float = 2, eps: Float = 1e-2) throws {
        guard numClasses >= 1 else { throw DetectionConfigError(key: "num_classes", "must be at least 1, got \(numClasses)") }
        guard p >= 0 else { throw DetectionConfigError(key: "seesaw.p", "\(p) must be >= 0 (0 turns mitigation off)") }
        guard q >= 0 else { throw DetectionConfigError(key: "seesaw.q", "\(q) must be >= 0 (0 turns compensation off)") }
        guard eps > 0 else { throw DetectionConfigError(key: "seesaw.eps", "\(eps) must be > 0: it bounds the true class's probability in a divisor") }
        self.numClasses = numClasses
        self.p = p; self.q = q; self.eps = eps
        cumulativeSamples = [Float](repeating: 0, count: numClasses)
    }

    /// Puts back the counts of a checkpoint.
    public func restore(cumulativeSamples counts: [Float]) throws {
        guard counts.count == numClasses else {
            throw DetectionConfigError(key: "seesaw.cum_samples", "\(counts.count) saved counts for \(numClasses) classes; the checkpoint was written for another class count")
        }
        cumulativeSamples = counts
    }

    /// The loss of one batch (per sample `[M]` for `.none`); counts this batch's labels first.
    public func loss(_ logits: Tensor, labels: [Int], reduction: Reduction = .mean) -> Tensor {
        precondition(logits.rank == 2 && logits.shape[1] == numClasses,
                     "SeesawLoss: logits must be [M, \(numClasses)], got \(logits.shape)")
        let (m, k) = (logits.shape[0], numClasses)
        checkLabels(labels, rows: m, classes: k, background: false, "SeesawLoss")
        for y in labels { cumulativeSamples[y] += 1 }
        if m == 0 { return reduction == .none ? logits.sum(axes: [1]) : logits.sum() }
        let shift = constant([m, k], seesawLogShifts(logits, labels: labels))
        return Loss.crossEntropy(logits + shift, targets: labels, reduction: reduction)
    }

    /// `log(S_ij) * (1 - onehot)`, row-major `[M, K]`, in mmdet's Float32 operation order.
    private func seesawLogShifts(_ logits: Tensor, labels: [Int]) -> [Float] {
        let k = numClasses
        var s = [Float](repeating: 1, count: labels.count * k)
        if p > 0 {
            let n = cumulativeSamples.map { Swift.max($0, 1) }
            for (i, y) in labels.enumerated() {
                for j in 0..<k {
                    let ratio = n[j] / n[y]
                    if ratio < 1 { s[i * k + j] *= Foundation.pow(ratio, p) }
                }
            }
        }
        if q > 0 {
            let x = logits.pointer
            var scores = [Float](repeating: 0, count: k)
            for (i, y) in labels.enumerated() {
                // softmax of the detached row as ATen's last-dim kernel: exp(x - max), times 1 / sum.
                var top = -Float.infinity
                for j in 0..<k { top = Swift.max(top, x[i * k + j]) }
                var total: Float = 0
                for j in 0..<k { scores[j] = Foundation.exp(x[i * k + j] - top); total += scores[j] }
                let inverse = 1 / total
                for j in 0..<k { scores[j] *= inverse }
                let own = Swift.max(scores[y], eps)
                for j in 0..<k {
                    let ratio = scores[j] / own
                    if ratio > 1 { s[i * k + j] *= q == 2 ? ratio * ratio : Foundation.pow(ratio, q) }
                }
            }
        }
        for (i, y) in labels.enumerated() {
            for j in 0..<k { s[i * k + j] = j == y ? 0 : Foundation.log(s[i * k + j]) }
        }
        return s
    }
}
