import Foundation
import Kernels
import Autodiff

/// Hessian-guided mixed precision (the HAWQ family). Per layer l with weights W_l (n_l of them):
/// - Tr(H_l) by Hutchinson: E[v^T H v] over Rademacher v (entries +-1), with H v from gradients alone,
///   H v ~ (g(w + eps v) - g(w - eps v)) / (2 eps). One v over all layers at once gives every layer's
///   block-diagonal trace (E[v_l^T (H v)_l] = Tr(H_ll): cross terms vanish in expectation).
/// - sensitivity of b bits: Omega_l(b) = Tr(H_l) / n_l * ||Q_b(W_l) - W_l||^2, Q_b per-output-channel
///   asymmetric min-max quantization (the default weight quantizer).
/// - optionally the inputs too (HAWQ-v2's activation rule): Omega_l^a(b) = Tr_l / n * ||Q_b(x_l) - x_l||^2 with
///   the trace of the Fisher with respect to the input x_l (FIT, Zandonati et al. 2022; computed in
///   `MixedPrecisionSearch`), input bits then under a BitOps budget (sum MACs_l w_l a_l) as well.
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

    /// One quantized tensor's sensitivity: a layer's weights, or a layer's input, whose `weights` then
    /// counts the input's elements over the calibration batches, `trace` is the Fisher trace of the loss
    /// with respect to that input and `errors` its fake-quantization errors summed over the same batches.
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
        try allocate(weights: layers, weightChoices: choices, averageBits: averageBits).weights
    }

    /// Weight and input (activation) bits per layer, minimising the summed Omega of both under two
    /// budgets, as HAWQ-v3's integer program (there with one bit width per layer for both):
    /// - model size: sum n_l w_l <= averageBits * sum n_l (n_l: the layer's weights);
    /// - BitOps: sum M_l w_l a_l <= averageBitOps * sum M_l (M_l: the layer's multiply-accumulates; 16 is
    ///   uniform W4A4's), only when `activations` are given (one row per layer, same order as `weights`,
    ///   `macs` too).
    /// Greedy from the highest choices: while a budget is exceeded, take the lowering (of a weight or an
    /// input) with the least Omega added per unit of relief, relief being the size and BitOps saved as
    /// shares of the exceeded budgets; then, while something fits, the raising with the most Omega removed
    /// per share of both budgets spent. Throws when even the lowest choices everywhere do not fit.
    public static func allocate(weights: [Layer], weightChoices: [Int], averageBits: Double,
                                activations: [Layer] = [], activationChoices: [Int] = [], macs: [Int] = [],
                                averageBitOps: Double = .infinity) throws -> (weights: [Int], activations: [Int]) {
        let wOpts = Array(Set(weightChoices)).sorted(), aOpts = Array(Set(activationChoices)).sorted()
        guard let wTop = wOpts.last, let wBottom = wOpts.first else { throw QuantConfigError(path: "choices", "no bit choices given") }
        let joint = !activations.isEmpty
        if joint {
            guard activations.count == weights.count, macs.count == weights.count else {
                throw QuantConfigError(path: "activations", "\(activations.count) input rows and \(macs.count) MAC counts for \(weights.count) layers: one of each per layer")
            }
            guard !aOpts.isEmpty else { throw QuantConfigError(path: "activation choices", "no bit choices given") }
        }
        let n = weights.map { Double($0.weights) }, m = macs.map(Double.init)
        let sizeBudget = averageBits * n.reduce(0, +)
        let opsBudget = joint ? averageBitOps * m.reduce(0, +) : .infinity
        guard n.reduce(0, +) * Double(wBottom) <= sizeBudget * (1 + 1e-12) else {
            throw QuantConfigError(path: "average bits", "\(averageBits) is below the lowest choice \(wBottom): no allocation fits")
        }
        var w = [Int](repeating: wTop, count: weights.count)
        var a = [Int](repeating: joint ? aOpts.last! : 0, count: joint ? weights.count : 0)
        if joint {
            guard m.reduce(0, +) * Double(wBottom * aOpts.first!) <= opsBudget * (1 + 1e-12) else {
                throw QuantConfigError(path: "average BitOps", "\(averageBitOps) is below the lowest choices' \(wBottom * aOpts.first!) per MAC: no allocation fits")
            }
        }
        func size() -> Double { zip(n, w).reduce(0) { $0 + $1.0 * Double($1.1) } }
        func ops() -> Double { joint ? m.indices.reduce(0) { $0 + m[$1] * Double(w[$1] * a[$1]) } : 0 }
        func next(_ opts: [Int], _ b: Int, _ step: Int) -> Int? {
            guard let k = opts.firstIndex(of: b), opts.indices.contains(k + step) else { return nil }
            return opts[k + step]
        }
        // A move: (is a weight, layer, new bits, change in size, change in BitOps, change in Omega).
        typealias Move = (weight: Bool, layer: Int, bits: Int, dSize: Double, dOps: Double, dOmega: Double)
        func moves(_ step: Int) -> [Move] {
            var out: [Move] = []
            for i in weights.indices {
                if let b = next(wOpts, w[i], step) {
                    out.append((true, i, b, n[i] * Double(b - w[i]), joint ? m[i] * Double(a[i] * (b - w[i])) : 0,
                                weights[i].omega(b) - weights[i].omega(w[i])))
                }
            }
            if joint {
                for i in activations.indices {
                    if let b = next(aOpts, a[i], step) {
                        out.append((false, i, b, 0, m[i] * Double(w[i] * (b - a[i])), activations[i].omega(b) - activations[i].omega(a[i])))
                    }
                }
            }
            return out
        }
        func apply(_ mv: Move) { if mv.weight { w[mv.layer] = mv.bits } else { a[mv.layer] = mv.bits } }
        let tolerance = 1e-9
        while true {
            let sizeOver = size() > sizeBudget + tolerance, opsOver = ops() > opsBudget * (1 + 1e-12)
            if !sizeOver && !opsOver { break }
            var best: (Move, Double)? = nil   // Omega added per unit of relief
            for mv in moves(-1) {
                let relief = (sizeOver ? -mv.dSize / sizeBudget : 0) + (opsOver ? -mv.dOps / opsBudget : 0)
                guard relief > 0 else { continue }
                let cost = mv.dOmega / relief
                if best == nil || cost < best!.1 { best = (mv, cost) }
            }
            guard let (mv, _) = best else { break }
            apply(mv)
        }
        // Lowering in steps can overshoot: spend what is left where it helps most.
        while true {
            let s = size(), o = ops()
            var best: (Move, Double)? = nil   // Omega removed per share of the budgets spent
            for mv in moves(1) {
                guard s + mv.dSize <= sizeBudget + tolerance, !joint || o + mv.dOps <= opsBudget * (1 + 1e-12) else { continue }
                let spent = mv.dSize / sizeBudget + (joint ? mv.dOps / opsBudget : 0)
                let gain = -mv.dOmega / spent
                if gain > 0, best == nil || gain > best!.1 { best = (mv, gain) }
            }
            guard let (mv, _) = best else { break }
            apply(mv)
        }
        return (w, a)
    }
}
