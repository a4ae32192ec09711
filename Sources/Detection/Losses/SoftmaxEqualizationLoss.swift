import Autodiff
import Kernels

/// Softmax Equalization Loss (Tan et al., CVPR 2020, section 3.4, the form for classifiers without a
/// background class): `-log p~_y` with `p~_j = exp(z_j) / sum_k w~_k exp(z_k)` and
/// `w~_k = 1 - beta T_lambda(f_k) (1 - y_k)`: a rare class (`f_k < lambda`) drops out of the softmax
/// denominator of the other classes' samples, so their positives do not push its logit down. `beta` is
/// Bernoulli(gamma) per element (each entry of the M x K matrix, as BagOfTricks-LT's `SEQL` draws it), so
/// a share `1 - gamma` of those negative gradients is kept. Mean over the samples (`nll_loss`). The
/// draws come from the caller's `rng` (M x K uniforms, `fillBernoulli`), so a seeded or checkpointed
/// generator gives the same draws again.
///
/// Written max-subtracted (`z - max_j z_j` in both terms), which is the paper's formula without the
/// overflow of `exp(z)` above 88; the label's own term always stays in the denominator (w~_y = 1).
/// The weight is a constant multiplied onto `exp`, so a stopped logit's gradient is exactly 0. A sample
/// whose every competitor is stopped has p~_y = 1: its loss and gradient are exactly 0 (as in the
/// reference, where exp(z_y) / exp(z_y) is exactly 1; the max-shifted form would leave rounding).
/// Defaults gamma 0.9 and lambda 5e-3 are BagOfTricks-LT's (`LOSS.SEQL`, CIFAR-LT); set lambda from the
/// aircraft types' frequencies. `labels` are classes in `0..<K`; an empty batch gives 0.
public func softmaxEqualizationLoss(_ logits: Tensor, labels: [Int], frequencies: [Float], lambda: Float = 5e-3,
                                    gamma: Float = 0.9, rng: inout RNG) -> Tensor {
    precondition(gamma >= 0 && gamma <= 1, "softmaxEqualizationLoss: gamma \(gamma) is a probability")
    var beta = [Float](repeating: 0, count: logits.count)
    rng.fillBernoulli(&beta, count: beta.count, p: gamma)
    return softmaxEqualizationLoss(logits, labels: labels, frequencies: frequencies, lambda: lambda, beta: beta)
}

/// The same with the Bernoulli draws given (`beta`, row-major `[M, K]`, each 0 or 1).
public func softmaxEqualizationLoss(_ logits: Tensor, labels: [Int], frequencies: [Float], lambda: Float = 5e-3,
                                    beta: [Float]) -> Tensor {
    precondition(logits.rank == 2, "softmaxEqualizationLoss: logits must be [M, K], got \(logits.shape)")
    let (m, k) = (logits.shape[0], logits.shape[1])
    checkLabels(labels, rows: m, classes: k, background: false, "softmaxEqualizationLoss")
    precondition(frequencies.count == k, "softmaxEqualizationLoss: \(frequencies.count) frequencies for \(k) classes")
    precondition(beta.count == m * k && beta.allSatisfy { $0 == 0 || $0 == 1 },
                 "softmaxEqualizationLoss: beta must hold \(m * k) values, each 0 or 1")
    if m == 0 { return logits.sum() }
    var w = [Float](repeating: 1, count: m * k)
    var competing = [Float](repeating: 0, count: m)
    for (i, y) in labels.enumerated() {
        for j in 0..<k where j != y {
            if frequencies[j] < lambda && beta[i * k + j] == 1 { w[i * k + j] = 0 } else { competing[i] = 1 }
        }
    }
    let shift = noGrad { logits.max(axes: [1], keepDims: true) }.detached()
    let z = logits - shift
    let denominator = (z.exp() * constant([m, k], w)).sum(axes: [1])
    let zy = z.reshaped([m * k]).indexSelect(axis: 0, indices: labelIndices(labels, classes: k))
    var nll = denominator.log() - zy
    if competing.contains(0) { nll = nll.masked(by: constant([m], competing)) }
    return perSample(nll.sum(), rows: m)
}
