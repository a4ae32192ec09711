import Foundation
import Kernels
import Autodiff
import NN
import Quant
import Checkpoint
import Recipes
import Files

/// `qat quant mixed-precision CKPT --average-bits B`: per-layer weight bits from Hessian traces
/// (`MixedPrecision`), written as a recipe fragment of per-path `quant.overrides` that a recipe takes
/// through `base:` (or pastes). The traces are of the training loss on the first `batches` training
/// batches (unaugmented order of epoch 0, model in eval mode: BN running statistics, no dropout).
public enum MixedPrecisionSearch {
    public struct Report: Codable, Sendable {
        public var checkpoint: String
        public var averageBits: Double
        public var choices: [Int]
        public var samples: Int
        public var batches: Int
        public var layers: [MixedPrecision.Layer]
        /// Chosen weight bits, by layer (same order).
        public var bits: [Int]
        /// Achieved average weight bits (weights-weighted).
        public var achievedBits: Double
    }

    public static func run(checkpoint path: String, averageBits: Double, choices: [Int], samples: Int, batches: Int,
                           overrides: [String] = [], log: (String) -> Void = { _ in }) throws -> Report {
        let (recipe, task, model) = try floatModel(checkpoint: path, overrides: overrides + ["quant.mode=fp32"])
        let layers = model.namedModules().compactMap { p, m -> (String, Tensor)? in
            guard m is QuantizableLayer else { return nil }
            if let conv = m as? Conv2d { return (p, conv.weight) }
            if let lin = m as? Linear { return (p, lin.weight) }
            return nil
        }
        guard !layers.isEmpty else { throw TrainingError("\(path): the model has no conv or linear layer to quantize") }
        let order = task.trainOrder(epoch: 0)
        let b = recipe.train.batch
        let groups = (0..<max(1, batches)).map { k in Array(order[min(k * b, order.count)..<min((k + 1) * b, order.count)]) }.filter { !$0.isEmpty }
        var failure: Error? = nil
        func gradient() -> [Tensor] {
            for (_, p) in model.namedParameters() { p.grad = nil }
            do {
                for g in groups { Loss.total(try task.losses(model: model, epoch: 0, indices: g)).backward() }
            } catch { failure = error }
            return layers.map { $0.1.grad ?? Tensor.zeros($0.1.shape) }
        }
        let traces = MixedPrecision.hutchinsonTraces(params: layers.map(\.1), samples: samples, seed: recipe.seed, gradient: gradient)
        for (_, p) in model.namedParameters() { p.grad = nil }
        if let failure { throw TrainingError("\(failure)") }
        let options = Array(Set(choices)).sorted()
        let rows = zip(layers, traces).map { l, t in
            MixedPrecision.Layer(path: l.0, weights: l.1.count, trace: t,
                                 errors: Dictionary(uniqueKeysWithValues: options.map { ("\($0)", MixedPrecision.quantizationError(l.1, bits: $0)) }))
        }
        let bits: [Int]
        do { bits = try MixedPrecision.allocate(rows, choices: options, averageBits: averageBits) } catch { throw TrainingError("--average-bits: \(error)") }
        let total = rows.reduce(0) { $0 + $1.weights }
        let achieved = Double(zip(rows, bits).reduce(0) { $0 + $1.0.weights * $1.1 }) / Double(total)
        log(String(format: "%d layers, %d weights; Hutchinson traces from %d samples on %d batches; average weight bits %.3f", rows.count, total, samples, groups.count, achieved))
        return Report(checkpoint: path, averageBits: averageBits, choices: options, samples: samples, batches: groups.count, layers: rows, bits: bits, achievedBits: achieved)
    }

    public static func table(_ r: Report) -> String {
        var s = String(format: "qat quant mixed-precision %@: average weight bits %.3f (budget %.3f), choices %@\n", r.checkpoint, r.achievedBits, r.averageBits,
                       r.choices.map(String.init).joined(separator: ","))
        let w = max(5, r.layers.map(\.path.count).max() ?? 5)
        s += "layer".padding(toLength: w, withPad: " ", startingAt: 0) + "   weights     trace/n  bits\n"
        for (l, b) in zip(r.layers, r.bits) {
            s += l.path.padding(toLength: w, withPad: " ", startingAt: 0) + String(format: "  %8d  %10.3g  %4d\n", l.weights, l.trace / Double(max(l.weights, 1)), b)
        }
        return s
    }

    /// The recipe fragment: one `quant.overrides` entry per layer with its weight bits.
    public static func planYAML(_ r: Report) -> String {
        var s = header + " \(r.checkpoint) --average-bits \(r.averageBits)`\n"
        s += String(format: "# (Hessian traces, %d Hutchinson samples on %d batches; achieved %.3f average weight bits).\n", r.samples, r.batches, r.achievedBits)
        s += "# Use it as a recipe's base (base: THIS_FILE) or paste the overrides into its quant section.\nquant:\n  overrides:\n"
        for (l, b) in zip(r.layers, r.bits) { s += "    - {pattern: \"\(l.path)\", weight_bits: \(b)}\n" }
        return s
    }

    static let header = "# Mixed-precision weight bits from `qat quant mixed-precision"

    /// Checks both outputs before anything is computed: the plan may replace only an earlier plan (a
    /// file starting with this tool's header), never another recipe; the JSON never a protected file.
    public static func checkOutputs(plan: String, json: String?) throws {
        do {
            if let json { try ProtectedFiles.check(output: json) }
            let earlierPlan = (try? String(contentsOfFile: plan, encoding: .utf8))?.hasPrefix(header) ?? false
            if !earlierPlan { try ProtectedFiles.check(output: plan) }
        } catch { throw TrainingError("--out: \(error)") }
    }

    public static func write(_ r: Report, plan: String, json: String?) throws {
        try checkOutputs(plan: plan, json: json)
        do {
            if let json { try AtomicFile.write(try JSONCoding.encoder().encode(r), to: json) }
            try AtomicFile.write(planYAML(r), to: plan, replacing: .anything)
        } catch { throw TrainingError("--out: \(error)") }
    }
}
