import Foundation
import Autodiff
import NN

/// BatchNorm re-estimation after QAT (Nagel et al. 2022, "Overcoming Oscillations in Quantization-Aware
/// Training", section 4.1): the running statistics that eval-mode BN uses were averaged over the training
/// steps while the weights and quantizers moved; re-estimating them on the final quantized model removes
/// that lag. Every BatchNorm2d (plain or folded into its conv, frozen or not) forgets its running
/// statistics and takes the cumulative average of the batch statistics of `batches` forwards, as
/// PyTorch's `momentum=None` does (the running variance is the mean of the unbiased batch variances).
/// Everything else runs in eval mode: quantizers keep their ranges and apply no quantization dropout,
/// dropout is off. Modes, momenta and frozen flags are restored. Returns the paths of the re-estimated
/// BatchNorms (none: the model has no BatchNorm2d).
public enum BatchNormReestimation {
    @discardableResult
    public static func run(_ model: Module, batches: [Tensor], forward: (Tensor) -> Tensor) -> [String] {
        let norms = model.namedModules().compactMap { p, m in (m as? BatchNorm2d).map { (p, $0) } }
        guard !norms.isEmpty, !batches.isEmpty else { return [] }
        let modes = model.namedModules().map { ($0.1, $0.1.isTraining) }
        let saved = norms.map { ($0.1.momentum, $0.1.frozenStatistics) }
        defer {
            for (m, t) in modes { m.train(t) }   // pre-order: each child set after its parent
            for ((_, bn), (m, f)) in zip(norms, saved) { bn.momentum = m; bn.frozenStatistics = f }
        }
        model.eval()
        for (_, bn) in norms { bn.train(); bn.frozenStatistics = false }
        noGrad {
            for (k, x) in batches.enumerated() {
                for (_, bn) in norms { bn.momentum = 1 / Float(k + 1) }
                _ = forward(x)
            }
        }
        return norms.map(\.0)
    }
}
