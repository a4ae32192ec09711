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
        guard model.namedModules().contains(where: { $0.1 is BatchNorm2d }), !batches.isEmpty else { return [] }
        return BatchStatisticsMode.run(model) { norms in
            noGrad {
                for (k, x) in batches.enumerated() {
                    for (_, bn) in norms { bn.momentum = 1 / Float(k + 1) }
                    _ = forward(x)
                }
            }
            return norms.map(\.0)
        }
    }
}
