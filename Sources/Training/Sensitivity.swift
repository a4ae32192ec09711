import Foundation
import Kernels
import NN
import Quant
import Checkpoint
import Recipes
import Files

/// `qat quant sensitivity CKPT`: what quantizing each layer costs. The checkpoint's float weights are
/// quantized post-training as its recipe's `quant` section says (mode ptq, at the bits asked; BN folded
/// when `quant.fold_bn`), every quantizer calibrated once on `quant.calibration_batches` training batches
/// with all of them on (standard PTQ ranges). Then, for each layer (a conv or linear layer: its weight
/// and input quantizers; a residual add: its output quantizer), the split is evaluated twice:
/// - alone: only this layer quantized, the rest float; `drop` = FP32 metric - this;
/// - all but: every layer quantized except this one; `gain` = this - all-quantized metric.
/// `weightsOnly` / `activationsOnly` restrict both to weight or to activation quantizers (the others
/// stay off), to separate the two. The JSON form feeds a mixed-precision plan.
public enum QuantSensitivity {
    public struct Row: Codable, Sendable, Equatable {
        public var layer: String
        /// The quantizers of this layer that took part (e.g. ["weightQuantizer", "inputQuantizer"]).
        public var quantizers: [String]
        public var alone: Double
        public var drop: Double
        public var allBut: Double
        public var gain: Double
    }

    public struct Report: Codable, Sendable {
        public var checkpoint: String
        public var split: String
        public var metric: String
        public var weightBits: Int
        public var activationBits: Int
        /// "both", "weights" or "activations".
        public var quantized: String
        public var calibrationBatches: Int
        public var fp32: Double
        public var all: Double
        /// Most sensitive first (largest drop).
        public var rows: [Row]
    }

    /// The layer a quantizer path belongs to and the quantizer's own name (`a.b.weightQuantizer` ->
    /// (`a.b`, `weightQuantizer`)).
    static func layer(of path: String) -> (String, String) {
        guard let dot = path.lastIndex(of: ".") else { return ("", path) }
        return (String(path[..<dot]), String(path[path.index(after: dot)...]))
    }

    public static func run(checkpoint path: String, split: String, weightBits: Int, activationBits: Int,
                           weightsOnly: Bool = false, activationsOnly: Bool = false, overrides: [String] = [],
                           log: (String) -> Void = { _ in }) throws -> Report {
        precondition(!(weightsOnly && activationsOnly), "weightsOnly and activationsOnly exclude each other")
        let sets = overrides + ["quant.mode=ptq", "quant.weight.bits=\(weightBits)", "quant.activation.bits=\(activationBits)"]
        let (recipe, task, model) = try floatModel(checkpoint: path, overrides: sets)
        let metric = recipe.eval.metric
        func evaluate() throws -> Double {
            let m = try task.evaluate(model: model, split: split)
            return try m.required(metric)
        }
        let fp32 = try evaluate()
        log(String(format: "fp32 %@ on %@: %.2f%%", metric, split, 100 * fp32))
        if recipe.quant.foldBN { PTQ.foldBatchNorms(model) }
        let handle: QATHandle
        do { handle = try quantize(model, plan: try quantPlan(recipe)) } catch { throw TrainingError("quant: \(error)") }
        let batches = try task.calibrationInputs(batches: recipe.quant.calibrationBatches)
        handle.calibrate(model, batches: batches) { model($0) }
        model.eval()
        // The quantizers that take part, by layer in model order.
        func takesPart(_ name: String) -> Bool {
            name == "weightQuantizer" ? !activationsOnly : !weightsOnly
        }
        var layers: [(String, [(String, FakeQuantize)])] = []
        for (p, q) in handle.quantizers {
            let (l, name) = layer(of: p)
            guard takesPart(name) else { continue }
            if let i = layers.firstIndex(where: { $0.0 == l }) { layers[i].1.append((name, q)) } else { layers.append((l, [(name, q)])) }
        }
        func enable(_ on: (String) -> Bool) {
            for (p, q) in handle.quantizers {
                let (l, name) = layer(of: p)
                q.enabled = takesPart(name) && on(l)
            }
        }
        enable { _ in true }
        let all = try evaluate()
        log(String(format: "all %d layers quantized (W%dA%d, %@): %.2f%%", layers.count, weightBits, activationBits,
                   weightsOnly ? "weights only" : activationsOnly ? "activations only" : "weights and activations", 100 * all))
        var rows: [Row] = []
        for (i, (l, qs)) in layers.enumerated() {
            enable { $0 == l }
            let alone = try evaluate()
            enable { $0 != l }
            let allBut = try evaluate()
            rows.append(Row(layer: l, quantizers: qs.map(\.0), alone: alone, drop: fp32 - alone, allBut: allBut, gain: allBut - all))
            log(String(format: "[%d/%d] %@: alone %.2f%% (drop %.2f), all but %.2f%% (gain %.2f)", i + 1, layers.count, l,
                       100 * alone, 100 * (fp32 - alone), 100 * allBut, 100 * (allBut - all)))
        }
        enable { _ in true }
        rows.sort { $0.drop != $1.drop ? $0.drop > $1.drop : $0.layer < $1.layer }
        return Report(checkpoint: path, split: split, metric: metric, weightBits: weightBits, activationBits: activationBits,
                      quantized: weightsOnly ? "weights" : activationsOnly ? "activations" : "both",
                      calibrationBatches: batches.count, fp32: fp32, all: all, rows: rows)
    }

    /// The report as a table, most sensitive layer first.
    public static func table(_ r: Report) -> String {
        var s = String(format: "qat quant sensitivity %@: W%dA%d PTQ (%@ quantized), %@ on %@; FP32 %.2f%%, all layers quantized %.2f%%\n",
                       r.checkpoint, r.weightBits, r.activationBits, r.quantized, r.metric, r.split, 100 * r.fp32, 100 * r.all)
        let w = max(5, r.rows.map(\.layer.count).max() ?? 5)
        s += "layer".padding(toLength: w, withPad: " ", startingAt: 0) + "   alone (%)  drop  all-but (%)  gain  quantizers\n"
        for row in r.rows {
            s += row.layer.padding(toLength: w, withPad: " ", startingAt: 0)
            s += String(format: "  %9.2f  %5.2f  %11.2f  %5.2f  ", 100 * row.alone, 100 * row.drop, 100 * row.allBut, 100 * row.gain)
            s += row.quantizers.joined(separator: ", ") + "\n"
        }
        return s
    }

    /// Writes the report as JSON (never over a checkpoint, recipe or metrics file).
    public static func write(_ r: Report, to out: String) throws {
        do {
            try ProtectedFiles.check(output: out)
            try AtomicFile.write(try JSONCoding.encoder().encode(r), to: out)
        } catch { throw TrainingError("--out: \(error)") }
    }
}
