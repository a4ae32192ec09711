import Foundation
import Kernels
import Autodiff
import NN

/// Installed in a layer's input-quantizer slot by the mixed-precision search to measure the layer's
/// input (its sensitivity to input bits), in three phases over the same calibration batches:
/// - `.calibrate`: one fixed per-tensor `FakeQuantize` per bit choice observes the input (the recipe's
///   activation range method);
/// - `.measure`: adds up ||Q_b(x) - x||^2 per choice and the input's elements, and makes the batch's
///   probe tensor delta (zeros, shaped as x, requiring gradients);
/// - `.probe`: returns x + delta of the current batch (delta = 0: the same values), so the gradient that
///   reaches delta is the loss gradient with respect to x.
public final class ActivationProbe: Module {
    public enum Phase: Sendable { case calibrate, measure, probe }
    public var phase: Phase = .calibrate
    /// The calibration batch being run (selects its delta).
    public var batch = 0
    public let bits: [Int]
    let quantizers: [FakeQuantize]
    /// Summed ||Q_b(x) - x||^2 per entry of `bits`.
    public private(set) var errors: [Double]
    /// Input elements seen in `.measure`.
    public private(set) var elements = 0
    /// One probe tensor per batch (made in `.measure`).
    public private(set) var deltas: [Int: Tensor] = [:]

    public init(bits: [Int], rangeMethod: RangeMethod, path: String) throws {
        self.bits = bits
        quantizers = try bits.map { try FakeQuantize(scheme: QuantScheme(bits: $0), channels: 1, mode: .fixed, rangeMethod: rangeMethod, path: path) }
        errors = [Double](repeating: 0, count: bits.count)
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        switch phase {
        case .calibrate:
            noGrad { for q in quantizers { q.calibrating = true; _ = q(x); q.calibrating = false } }
            return x
        case .measure:
            noGrad {
                for (k, q) in quantizers.enumerated() {
                    let d = q(x) - x
                    errors[k] += Double((d * d).sum().item)
                }
            }
            elements += x.count
            deltas[batch] = Tensor.zeros(x.shape, requiresGrad: true)
            return x
        case .probe:
            guard let d = deltas[batch], d.shape == x.shape else { return x }
            return x + d
        }
    }
}
