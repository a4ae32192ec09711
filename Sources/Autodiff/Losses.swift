import Kernels

// Composite ops: built only from primitives, so they need no backward code of their own.

extension Tensor {
    /// Softmax along `axis` (max-subtracted for stability; the max carries no gradient since it cancels).
    public func softmax(axis: Int = -1) -> Tensor {
        let m = noGrad { self.max(axes: [axis], keepDims: true) }.detached()
        let e = (self - m).exp()
        return e / e.sum(axes: [axis], keepDims: true)
    }

    public func logSoftmax(axis: Int = -1) -> Tensor {
        let m = noGrad { self.max(axes: [axis], keepDims: true) }.detached()
        let z = self - m
        return z - z.exp().sum(axes: [axis], keepDims: true).log()
    }
}

public enum Reduction: Sendable { case mean, sum, none }

public enum Loss {
    /// The total of a loss dictionary, summed in name order so its bits do not depend on dictionary
    /// order (the training loop's objective). `terms` must not be empty.
    public static func total(_ terms: [String: Tensor]) -> Tensor {
        precondition(!terms.isEmpty, "Loss.total: no loss terms")
        let names = terms.keys.sorted()
        return names.dropFirst().reduce(terms[names[0]]!) { $0 + terms[$1]! }
    }

    /// Cross-entropy of logits [N, C] against class indices (PyTorch's `cross_entropy`, mean by default).
    public static func crossEntropy(_ logits: Tensor, targets: [Int], reduction: Reduction = .mean) -> Tensor {
        precondition(logits.rank == 2, "cross_entropy: logits must be [N, C], got shape \(logits.shape)")
        let (n, c) = (logits.shape[0], logits.shape[1])
        precondition(targets.count == n, "cross_entropy: \(targets.count) targets for logits of shape \(logits.shape)")
        precondition(targets.allSatisfy { $0 >= 0 && $0 < c }, "cross_entropy: a target is outside 0..<\(c)")
        let picked = logits.logSoftmax(axis: 1).reshaped([n * c]).indexSelect(axis: 0, indices: targets.enumerated().map { $0.offset * c + $0.element })
        return reduce(picked.neg(), reduction)
    }

    /// Knowledge-distillation loss (Hinton et al. 2015): T^2 x KL(softmax(teacher / T) || softmax(student / T))
    /// averaged over the batch, PyTorch's `kl_div(log_softmax(s / T), softmax(t / T), reduction="batchmean") * T * T`.
    /// The teacher's logits [N, C] carry no gradient.
    public static func distillation(student: Tensor, teacher: Tensor, temperature: Float = 1) -> Tensor {
        precondition(student.rank == 2 && student.shape == teacher.shape, "distillation: student \(student.shape) and teacher \(teacher.shape) must be equal [N, C]")
        precondition(temperature > 0, "distillation: temperature must be positive, got \(temperature)")
        let n = student.shape[0]
        let logQ = noGrad { (teacher.detached() * (1 / temperature)).logSoftmax(axis: 1) }.detached()
        let q = noGrad { logQ.exp() }.detached()
        let logP = (student * (1 / temperature)).logSoftmax(axis: 1)
        return (q * (logQ - logP)).sum() * (temperature * temperature / Float(n))
    }

    /// Binary cross-entropy on logits: softplus(x) - x*y, stable for any x (PyTorch's `binary_cross_entropy_with_logits`).
    public static func bceWithLogits(_ logits: Tensor, targets: Tensor, reduction: Reduction = .mean) -> Tensor {
        precondition(logits.shape == targets.shape, "bce_with_logits: logits \(logits.shape) and targets \(targets.shape) differ")
        return reduce(logits.softplus() - logits * targets, reduction)
    }

    /// Smooth L1 (Huber with PyTorch's beta convention): 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta.
    public static func smoothL1(_ input: Tensor, _ target: Tensor, beta: Float = 1, reduction: Reduction = .mean) -> Tensor {
        precondition(input.shape == target.shape, "smooth_l1: input \(input.shape) and target \(target.shape) differ")
        precondition(beta >= 0, "smooth_l1: beta must be >= 0, got \(beta)")
        let d = input - target
        let ad = d.abs()
        if beta == 0 { return reduce(ad, reduction) }
        let inner = noGrad { ad.less(than: beta) }
        return reduce(Tensor.select(inner, d.square() * (0.5 / beta), ad - 0.5 * beta), reduction)
    }

    static func reduce(_ t: Tensor, _ r: Reduction) -> Tensor {
        switch r {
        case .mean: return t.mean()
        case .sum: return t.sum()
        case .none: return t
        }
    }
}
