import Foundation
import Kernels
import Autodiff

/// Hessian-guided mixed precision (the HAWQ family). Per layer l with weights W_l (n_l of them):
/// - Tr(H_l) by Hutchinson: E[v^T H v] over Rademacher v (entries +-1), with H v from gradients alone,
///   H v ~ (g(w + eps v) - g(w - eps v)) / (2 eps). One v over all layers at once gives every layer's
///   block-diagonal trace (E[v_l^T (H v)_l] = Tr(H_ll): cross terms vanish in expectation).
/// - sensitivity of b bits: Omega_l(b) = Tr(H_l) / n_l * ||Q_b(W_l) - W_l||^2, Q_b per-output-channel
///   asymmetric min-max quantization (the default weight quantizer).
/// - bits per layer minimising sum Omega under a model-size budget (sum n_l b_l <= average * sum n_l):
///   greedy from the highest choice, each step lowering the layer whose next lower choice adds the least
///   Omega per bit saved, until the budget holds; then, while bits are left, raising the layer whose next
///   higher choice removes the most Omega per bit and still fits (HAWQ-v2 searches the same Pareto front,
///   HAWQ-v3 solves it as an integer program).
public enum MixedPrecision {
    /// Hutchinson's estimate of the Hessian trace of each parameter tensor's diagonal block, averaged
    /// over `samples` Rademacher vectors. `gradient` returns the loss gradient of every parameter at the
    /// parameters' current values (same order as `params`). Parameters are restored bit for bit.
    public static func hutchinsonTraces(params: [Tensor], samples: Int, epsilon: Float = 1e-3, seed: UInt64,
                                        gradient: () -> [Tensor]) -> [Double] {
        var rng = RNG(seed: seed)
        var sums = [Double](repeating: 0, count: params.count)
        let saved = params.map { $0.scalars }
        for _ in 0..<max(samples, 1) {
            let vs: [[Float]] = params.map { p in (0..<p.count).map { _ in rng.nextUInt64() & 1 == 0 ? -1 : 1 } }
            func set(_ sign: Float) {
                for (k, p) in params.enumerated() {
                    let ptr = p.pointer
                    for i in 0..<p.count { ptr[i] = saved[k][i] + sign * epsilon * vs[k][i] }
                }
            }
            set(1); let gPlus = gradient().map(\.scalars)
            set(-1); let gMinus = gradient().map(\.scalars)
            for k in params.indices {
                var s = 0.0
                for i in 0..<params[k].count { s += Double(vs[k][i]) * Double(gPlus[k][i] - gMinus[k][i]) / (2 * Double(epsilon)) }
                sums[k] += s
            }
        }
        for (k, p) in params.enumerated() { p.pointer.update(from: saved[k], count: p.count) }
        return sums.map { $0 / Double(max(samples, 1)) }
    }

    /// ||Q_b(W) - W||^2 with the default weight quantizer's scheme at `bits` (per output channel,
    /// asymmetric, min-max range): a fixed `FakeQuantize` observes W once and quantizes it.
    public static func quantizationError(_ w: Tensor, bits: Int) -> Double {
        guard let q = try? FakeQuantize(scheme: QuantScheme(bits: bits, axis: 0), channels: w.shape[0], mode: .fixed) else { return .infinity }
        let d = noGrad { () -> Tensor in
            q.calibrating = true; _ = q(w); q.calibrating = false
            return q(w) - w
        }
        return Double(noGrad { (d * d).sum() }.item)
    }

    public struct Layer: Sendable, Codable, Equatable {
        public var path: String
        public var weights: Int
        public var trace: Double
        /// ||Q_b(W) - W||^2 by bits (as strings, for JSON).
        public var errors: [String: Double]
        public init(path: String, weights: Int, trace: Double, errors: [String: Double]) {
            self.path = path; self.weights = weights; self.trace = trace; self.errors = errors
        }
        /// A negative trace estimate (Hutchinson's noise with few samples, or a layer off a minimum) counts
        /// by its magnitude: quantizing a layer never lowers its sensitivity.
        public func omega(_ bits: Int) -> Double { Swift.abs(trace) / Double(max(weights, 1)) * (errors["\(bits)"] ?? .infinity) }
    }

    /// Bits per layer (same order as `layers`) minimising the summed Omega with
    /// sum(weights * bits) <= averageBits * sum(weights), choosing from `choices`. Throws when even the
    /// lowest choice everywhere exceeds the budget.
    public static func allocate(_ layers: [Layer], choices: [Int], averageBits: Double) throws -> [Int] {
        let options = Array(Set(choices)).sorted()
        guard let top = options.last, let bottom = options.first else { throw QuantConfigError(path: "choices", "no bit choices given") }
        let total = layers.reduce(0) { $0 + $1.weights }
        let budget = averageBits * Double(total)
        guard Double(total * bottom) <= budget + 1e-9 else {
            throw QuantConfigError(path: "average bits", "\(averageBits) is below the lowest choice \(bottom): no allocation fits")
        }
        var bits = [Int](repeating: top, count: layers.count)
        var used = Double(total * top)
        while used > budget + 1e-9 {
            var best: (Int, Int, Double)? = nil   // layer, lower bits, Omega added per bit saved
            for (i, l) in layers.enumerated() {
                guard let k = options.firstIndex(of: bits[i]), k > 0 else { continue }
                let lower = options[k - 1]
                let cost = (l.omega(lower) - l.omega(bits[i])) / Double(l.weights * (bits[i] - lower))
                if best == nil || cost < best!.2 || (cost == best!.2 && i < best!.0) { best = (i, lower, cost) }
            }
            guard let (i, lower, _) = best else { break }
            used -= Double(layers[i].weights * (bits[i] - lower))
            bits[i] = lower
        }
        // Lowering in steps can overshoot: spend what is left where it helps most.
        while true {
            var best: (Int, Int, Double)? = nil   // layer, higher bits, Omega removed per bit spent
            for (i, l) in layers.enumerated() {
                guard let k = options.firstIndex(of: bits[i]), k + 1 < options.count else { continue }
                let higher = options[k + 1], extra = Double(l.weights * (higher - bits[i]))
                guard used + extra <= budget + 1e-9 else { continue }
                let gain = (l.omega(bits[i]) - l.omega(higher)) / extra
                if gain > 0, best == nil || gain > best!.2 { best = (i, higher, gain) }
            }
            guard let (i, higher, _) = best else { break }
            used += Double(layers[i].weights * (higher - bits[i]))
            bits[i] = higher
        }
        return bits
    }
}
