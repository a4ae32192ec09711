import Foundation
import Kernels
import Autodiff

/// Weight initialisers (PyTorch's `torch.nn.init` definitions). All draw from the caller's RNG.
public enum Init {
    public enum FanMode: Sendable { case fanIn, fanOut }

    /// (fan_in, fan_out) of a weight: [out, in, kh, kw] or [out, in].
    public static func fans(_ shape: [Int]) -> (Int, Int) {
        precondition(shape.count >= 2, "Init.fans: weight needs rank >= 2, got \(shape)")
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// Kaiming (He) normal: std = gain / sqrt(fan), gain sqrt(2) for ReLU.
    public static func kaimingNormal(_ t: Tensor, mode: FanMode = .fanIn, gain: Float = Float(2).squareRoot(), rng: inout RNG) {
        let (fi, fo) = fans(t.shape)
        let std = gain / Float(mode == .fanIn ? fi : fo).squareRoot()
        rng.fillNormal(t.pointer, count: t.count, std: std)
    }

    /// Kaiming uniform: bound = gain * sqrt(3 / fan). PyTorch's default layer init uses a = sqrt(5),
    /// i.e. gain = sqrt(2 / (1 + 5)), which gives bound = 1 / sqrt(fan_in).
    public static func kaimingUniform(_ t: Tensor, mode: FanMode = .fanIn, gain: Float = Float(2).squareRoot(), rng: inout RNG) {
        let (fi, fo) = fans(t.shape)
        let bound = gain * (3 / Float(mode == .fanIn ? fi : fo)).squareRoot()
        rng.fillUniform(t.pointer, count: t.count, low: -bound, high: bound)
    }

    public static func uniform(_ t: Tensor, bound: Float, rng: inout RNG) {
        rng.fillUniform(t.pointer, count: t.count, low: -bound, high: bound)
    }

    public static func normal(_ t: Tensor, mean: Float = 0, std: Float, rng: inout RNG) {
        rng.fillNormal(t.pointer, count: t.count, mean: mean, std: std)
    }

    public static func constant(_ t: Tensor, _ v: Float) { t.pointer.initialize(repeating: v, count: t.count) }

    /// RetinaNet's classification bias: -log((1 - pi) / pi), so every anchor starts at probability pi.
    public static func priorProbabilityBias(_ t: Tensor, pi: Float = 0.01) {
        precondition(pi > 0 && pi < 1, "Init.priorProbabilityBias: pi must be in (0, 1), got \(pi)")
        constant(t, -Foundation.log((1 - pi) / pi))
    }
}

/// Counts multiply-accumulates of Conv2d and Linear layers during a forward pass (task-local, so
/// only the summary's own forward is counted).
public final class MACCounter: @unchecked Sendable {
    @TaskLocal public static var current: MACCounter?
    public private(set) var entries: [(path: String, macs: Int)] = []
    public init() {}
    func add(_ path: String, _ macs: Int) { entries.append((path, macs)) }
    public var total: Int { entries.reduce(0) { $0 + $1.macs } }
}
