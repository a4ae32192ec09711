import Autodiff

/// Gradient Harmonizing Mechanism for classification (Li, Liu & Wang, AAAI 2019, "Gradient Harmonized
/// Single-stage Detector"), as mmdetection's `GHMC` (mmdet/models/losses/ghm_loss.py, v2.x `forward`).
///
/// Each element's gradient norm `g = |sigmoid(x) - t|` falls in one of `bins` equal bins of [0, 1]
/// (edges `i / bins`, the last raised by 1e-6 so g = 1 counts). Among the valid elements (label weight
/// > 0; `tot` = their count, at least 1) a bin with `n_i` members gets weight `tot / n_i`, or with
/// momentum `tot / acc_i` where `acc_i <- momentum * acc_i + (1 - momentum) * n_i` is updated only for
/// bins that are non-empty in this batch (mmdet's buffer `acc_sum`, starting at 0, no bias correction);
/// weights are divided by the number of non-empty bins, and the loss is `sum(weight * BCE) / tot`.
/// Easy negatives (the crowded bin near 0) and outliers (the bin near 1) lose weight.
///
/// The weights are constants: the gradient flows only through the BCE (mmdet detaches `g`).
/// Defaults: 10 bins (the paper and mmdet's class default; mmdet's RetinaNet-GHM config uses 30) and
/// momentum 0.75 (mmdet's RetinaNet-GHM config; the class default 0 means per-batch counts).
/// The state is `accumulatedCounts`; a checkpoint saves it and `restore` puts it back.
public final class GHMC {
    public let bins: Int
    /// Kept as the Double a recipe gives: mmdet computes `(1 - momentum) * n` in Python doubles.
    public let momentum: Double
    /// mmdet's `acc_sum`: the smoothed member count of each bin (used only when momentum > 0).
    public private(set) var accumulatedCounts: [Float]
    private let edges: [Float]

    public init(bins: Int = 10, momentum: Double = 0.75) throws {
        guard bins >= 1 else { throw DetectionConfigError(key: "ghm.bins", "\(bins) must be at least 1") }
        guard momentum >= 0 && momentum < 1 else {
            throw DetectionConfigError(key: "ghm.momentum", "\(momentum) must be in [0, 1): 0 uses each batch's counts alone")
        }
        self.bins = bins
        self.momentum = momentum
        accumulatedCounts = [Float](repeating: 0, count: bins)
        // torch: arange(bins + 1).float() / bins in Float32, then edges[-1] += 1e-6.
        var e = (0...bins).map { Float($0) / Float(bins) }
        e[bins] += Float(1e-6)
        edges = e
    }

    /// Puts back the counts of a checkpoint.
    public func restore(accumulatedCounts counts: [Float]) throws {
        guard counts.count == bins else {
            throw DetectionConfigError(key: "ghm.acc_sum", "\(counts.count) saved counts for \(bins) bins; the checkpoint was written with another bin count")
        }
        accumulatedCounts = counts
    }

    /// The loss of one batch (a scalar); updates `accumulatedCounts` when momentum > 0.
    /// `targets` are binary (0/1, the logits' shape); `labelWeights` (same shape, 1 when nil) marks
    /// valid elements with a value > 0: ignored anchors get 0.
    public func loss(_ logits: Tensor, targets: Tensor, labelWeights: Tensor? = nil) -> Tensor {
        precondition(logits.shape == targets.shape, "GHMC: logits \(logits.shape) and targets \(targets.shape) differ")
        precondition(labelWeights.map { $0.shape == logits.shape } ?? true,
                     "GHMC: label weights \(labelWeights!.shape) differ from logits \(logits.shape)")
        let n = logits.count
        let prob = noGrad { logits.detached().sigmoid() }
        let p = prob.pointer, t = targets.pointer, lw = labelWeights?.pointer

        // Bin of each valid element (-1: invalid, or a NaN g that no bin holds, as in mmdet).
        var bin = [Int](repeating: -1, count: n)
        var members = [Int](repeating: 0, count: bins)
        var valid = 0
        for i in 0..<n where lw.map({ $0[i] > 0 }) ?? true {
            valid += 1
            let g = Swift.abs(p[i] - t[i])
            guard !g.isNaN else { continue }
            var b = Swift.min(Int(Swift.min(g, 1) * Float(bins)), bins - 1)   // a first guess, then the edges decide
            while b > 0 && g < edges[b] { b -= 1 }
            while b < bins - 1 && g >= edges[b + 1] { b += 1 }
            guard g >= edges[b] && g < edges[b + 1] else { continue }
            bin[i] = b
            members[b] += 1
        }
        let tot = Float(Swift.max(valid, 1))
        var binWeight = [Float](repeating: 0, count: bins)
        var nonEmpty = 0
        for b in 0..<bins where members[b] > 0 {
            if momentum > 0 {
                accumulatedCounts[b] = Float(momentum) * accumulatedCounts[b] + Float((1 - momentum) * Double(members[b]))
                // Python's `tot / tensor` is torch's `__rtruediv__`: reciprocal, then multiply.
                binWeight[b] = (1 / accumulatedCounts[b]) * tot
            } else {
                binWeight[b] = Float(Double(tot) / Double(members[b]))   // two Python numbers: a double division
            }
            nonEmpty += 1
        }
        let divisor = Float(Swift.max(nonEmpty, 1))
        let weights = constant(logits.shape, bin.map { $0 < 0 ? 0 : binWeight[$0] / divisor })
        return (Loss.bceWithLogits(logits, targets: targets, reduction: .none) * weights).sum() / tot
    }
}
