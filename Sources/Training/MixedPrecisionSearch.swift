import Foundation
import Kernels
import Autodiff
import NN
import Quant
import Checkpoint
import Recipes
import Files

/// `qat quant mixed-precision CKPT --average-bits B [--activation-choices C --average-bitops O]`: per-layer
/// weight bits from Hessian traces (`MixedPrecision`), and input bits from Fisher traces, written as a recipe fragment of
/// per-path `quant.overrides` that a recipe takes through `base:` (or pastes). The traces are of the
/// training loss on the first `batches` training batches (unaugmented order of epoch 0, model in eval
/// mode: BN running statistics, no dropout); the inputs' traces and quantization errors come from an
/// `ActivationProbe` in each layer's input-quantizer slot, their ranges from the recipe's
/// `quant.activation.range` over the same batches.
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
        /// With input bits searched: the choices, the BitOps budget (per MAC), each layer's input row and
        /// MACs per image, the chosen input bits and the achieved BitOps per MAC.
        public var activationChoices: [Int]?
        public var averageBitOps: Double?
        public var activations: [MixedPrecision.Layer]?
        public var macs: [Int]?
        public var activationBits: [Int]?
        public var achievedBitOps: Double?
    }

    public static func run(checkpoint path: String, averageBits: Double, choices: [Int], samples: Int, batches: Int,
                           activationChoices: [Int] = [], averageBitOps: Double? = nil,
                           overrides: [String] = [], log: (String) -> Void = { _ in }) throws -> Report {
        let searchInputs = !activationChoices.isEmpty
        guard searchInputs == (averageBitOps != nil) else {
            throw TrainingError("--activation-choices and --average-bitops go together: input bits are searched under a BitOps budget")
        }
        let (recipe, task, model) = try floatModel(checkpoint: path, overrides: overrides + ["quant.mode=fp32"])
        let layers = model.namedModules().compactMap { p, m -> (String, Tensor, QuantizableLayer)? in
            guard let q = m as? QuantizableLayer else { return nil }
            if let conv = m as? Conv2d { return (p, conv.weight, q) }
            if let lin = m as? Linear { return (p, lin.weight, q) }
            return nil
        }
        guard !layers.isEmpty else { throw TrainingError("\(path): the model has no conv or linear layer to quantize") }
        let order = task.trainOrder(epoch: 0)
        let b = recipe.train.batch
        let groups = (0..<max(1, batches)).map { k in Array(order[min(k * b, order.count)..<min((k + 1) * b, order.count)]) }.filter { !$0.isEmpty }
        let aOptions = Array(Set(activationChoices)).sorted()
        var macs: [Int] = []
        var probes: [ActivationProbe] = []
        if searchInputs {
            let summary = ModelSummary(model, inputShape: [1, 3, recipe.data.inputSize, recipe.data.inputSize])
            let byPath = Dictionary(summary.rows.map { ($0.path, $0.macs) }, uniquingKeysWith: +)
            macs = layers.map { byPath[$0.0] ?? 0 }
            let method = try quantPlan(recipe).activation.rangeMethod
            probes = try layers.map { l in
                let probe = try ActivationProbe(bits: aOptions, rangeMethod: method, path: l.0 + ".inputQuantizer")
                l.2.inputQuantizer = probe
                return probe
            }
            // The inputs' ranges (calibrate), then their errors and probe tensors (measure), batch by batch.
            for phase in [ActivationProbe.Phase.calibrate, .measure] {
                for (k, g) in groups.enumerated() {
                    for p in probes { p.phase = phase; p.batch = k }
                    _ = try noGrad { try task.losses(model: model, epoch: 0, indices: g) }
                }
            }
            for p in probes { p.phase = .probe }
        }
        defer { for l in layers { l.2.inputQuantizer = nil } }
        var failure: Error? = nil
        /// The summed gradients of the batches' mean losses (each batch with its probe tensors).
        func backward() {
            for (_, p) in model.namedParameters() { p.grad = nil }
            for p in probes { for d in p.deltas.values { d.grad = nil } }
            do {
                for (k, g) in groups.enumerated() {
                    for p in probes { p.batch = k }
                    Loss.total(try task.losses(model: model, epoch: 0, indices: g)).backward()
                }
            } catch { failure = error }
        }
        // Inputs: the Fisher trace (FIT, Zandonati et al. 2022) in place of the Hessian's. Per sample the loss
        // depends on its own input only (eval mode), so the gradient of a batch's mean loss holds each
        // sample's gradient / B, and Tr F = sum_i ||d l_i / d x_i||^2 / B = B ||d L / d x||^2. With ReLU
        // networks (linear by pieces) and softmax cross-entropy the Hessian with respect to an activation
        // is the Gauss-Newton matrix, the Fisher's expectation over labels drawn from the model; this uses
        // the empirical Fisher (the true labels), as FIT does. Hutchinson's finite differences over
        // activations cross ReLU kinks and give noise-dominated (often negative) estimates instead.
        var inputTraces: [Double] = []
        if searchInputs {
            backward()
            if let failure { throw TrainingError("\(failure)") }
            inputTraces = probes.map { p in
                groups.indices.reduce(0.0) { sum, k in
                    guard let d = p.deltas[k], let g = d.grad else { return sum }
                    return sum + Double(groups[k].count) * Double(noGrad { (g * g).sum() }.item)
                }
            }
        }
        func gradient() -> [Tensor] {
            backward()
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
        let inputRows = zip(zip(layers, probes), inputTraces).map { lp, t in
            MixedPrecision.Layer(path: lp.0.0 + ".input", weights: lp.1.elements, trace: t,
                                 errors: Dictionary(uniqueKeysWithValues: zip(lp.1.bits, lp.1.errors).map { ("\($0)", $1) }))
        }
        let bits: [Int], inputBits: [Int]
        do {
            (bits, inputBits) = try MixedPrecision.allocate(weights: rows, weightChoices: options, averageBits: averageBits,
                                                           activations: inputRows, activationChoices: aOptions, macs: macs,
                                                           averageBitOps: averageBitOps ?? .infinity)
        } catch { throw TrainingError((searchInputs ? "--average-bits / --average-bitops: " : "--average-bits: ") + "\(error)") }
        let total = rows.reduce(0) { $0 + $1.weights }
        let achieved = Double(zip(rows, bits).reduce(0) { $0 + $1.0.weights * $1.1 }) / Double(total)
        log(String(format: "%d layers, %d weights; Hutchinson traces from %d samples on %d batches; average weight bits %.3f", rows.count, total, samples, groups.count, achieved))
        var report = Report(checkpoint: path, averageBits: averageBits, choices: options, samples: samples, batches: groups.count, layers: rows, bits: bits, achievedBits: achieved)
        if searchInputs {
            let ops = macs.indices.reduce(0.0) { $0 + Double(macs[$1] * bits[$1] * inputBits[$1]) }
            report.activationChoices = aOptions; report.averageBitOps = averageBitOps; report.activations = inputRows
            report.macs = macs; report.activationBits = inputBits; report.achievedBitOps = ops / Double(max(macs.reduce(0, +), 1))
            log(String(format: "input bits searched too: BitOps per MAC %.3f (budget %.3f)", report.achievedBitOps!, averageBitOps!))
        }
        return report
    }

    public static func table(_ r: Report) -> String {
        var s = String(format: "qat quant mixed-precision %@: average weight bits %.3f (budget %.3f), choices %@\n", r.checkpoint, r.achievedBits, r.averageBits,
                       r.choices.map(String.init).joined(separator: ","))
        let w = max(5, r.layers.map(\.path.count).max() ?? 5)
        if let ops = r.achievedBitOps, let budget = r.averageBitOps, let ac = r.activationChoices {
            s += String(format: "input bits searched too: BitOps per MAC %.3f (budget %.3f), choices %@\n", ops, budget, ac.map(String.init).joined(separator: ","))
        }
        s += "layer".padding(toLength: w, withPad: " ", startingAt: 0) + "   weights     trace/n  bits"
        s += r.activations == nil ? "\n" : "        MACs  input trace/n  input bits\n"
        for (k, (l, b)) in zip(r.layers, r.bits).enumerated() {
            s += l.path.padding(toLength: w, withPad: " ", startingAt: 0) + String(format: "  %8d  %10.3g  %4d", l.weights, l.trace / Double(max(l.weights, 1)), b)
            if let a = r.activations?[k], let ab = r.activationBits?[k], let m = r.macs?[k] {
                s += String(format: "  %10d  %13.3g  %10d", m, a.trace / Double(max(a.weights, 1)), ab)
            }
            s += "\n"
        }
        return s
    }

    /// The recipe fragment: one `quant.overrides` entry per layer with its weight bits (and input bits).
    public static func planYAML(_ r: Report) -> String {
        var s = header + " \(r.checkpoint) --average-bits \(r.averageBits)"
        if let ops = r.averageBitOps, let ac = r.activationChoices {
            s += " --activation-choices \(ac.map(String.init).joined(separator: ",")) --average-bitops \(ops)"
        }
        s += "`\n"
        s += String(format: "# (Hessian traces, %d Hutchinson samples on %d batches; achieved %.3f average weight bits", r.samples, r.batches, r.achievedBits)
        s += r.achievedBitOps.map { String(format: ", %.3f BitOps per MAC).\n", $0) } ?? ").\n"
        s += "# Use it as a recipe's base (base: THIS_FILE) or paste the overrides into its quant section.\nquant:\n  overrides:\n"
        for (k, (l, b)) in zip(r.layers, r.bits).enumerated() {
            s += "    - {pattern: \"\(l.path)\", weight_bits: \(b)" + (r.activationBits.map { ", input_bits: \($0[k])" } ?? "") + "}\n"
        }
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
