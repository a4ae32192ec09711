import Foundation
import UserPaths
import Kernels
import NN
import Checkpoint
import Recipes
import Int8Engine

/// `qat eval CHECKPOINT`: the task of the recipe stored in the checkpoint builds the model, which loads
/// the checkpoint, and evaluates a split.
public enum CheckpointEvaluation {
    public struct Result {
        public var metrics: TaskMetrics
        public var classes: [String]
        public var recipe: Recipe
        public var quantized: Bool
        /// The task's table of the metrics.
        public var report: String
        /// Files the task wrote beside the checkpoint (a detector's COCO results).
        public var files: [String]
        /// `--engine int8`: the kernel path, and (with `compare`) the code agreement with the fake-quant model.
        public var engine: String? = nil
        public var comparison: Int8Comparison? = nil
    }

    /// Which forward evaluates: the model itself (fake-quant or float), or the int8 engine compiled from
    /// it (`compare`: also run the fake-quant model and count equal activation codes).
    public enum Engine: Equatable, Sendable {
        case model
        case int8(compare: Bool)
    }

    /// `data`: a folder replacing the recipe's data (`data.path`; a synthetic recipe switches to its
    /// task's folder format, e.g. hdf5_chips); `fp32`: evaluate the float weights of a quantized
    /// checkpoint (quantizers left out).
    public static func run(checkpoint path: String, data: String?, split: String, overrides: [String], fp32: Bool, filesPrefix: String? = nil,
                           engine: Engine = .model) throws -> Result {
        let c = try loadTrainedCheckpoint(path, use: "be evaluated")
        var sets = overrides
        if let data {
            let stored: Recipe
            do { stored = try Recipe.parse(c.recipe, file: "\(path) (stored recipe)") } catch { throw TrainingError("\(error)") }
            if Recipe.DataSpec.pathNeeds[stored.data.format] == nil { sets.append("data.format=\(Recipe.options(task: stored.task).folderFormat)") }
            sets.append("data.path=\(data)")
        }
        let recipe: Recipe
        do { recipe = try Recipe.parse(c.recipe, file: "\(path) (stored recipe)", overrides: sets) }
        catch { throw TrainingError("\(error)") }
        if let t = recipe.threads { Parallel.setThreads(t) }
        let task = try makeTask(recipe)
        let quantized = TrainingRun.isQuantized(c) && !fp32
        let (model, _) = try buildModel(task, quantized: quantized, ptqStructure: TrainingRun.isQuantized(c))
        if fp32 { try loadFloatWeights(c, into: model, recipe: recipe, path: path) }
        else { try loadForEvaluation(c, into: model, recipe: recipe, path: path) }
        var evaluated: Module = model
        var int8: (any Int8EngineModule)? = nil
        if case .int8(let compare) = engine {
            guard quantized else {
                throw TrainingError("\(path): --engine int8 runs quantized checkpoints (QAT or PTQ); this one \(fp32 ? "is evaluated with --quant fp32" : "has float weights only")")
            }
            model.eval()
            do { int8 = try Int8Engine.module(for: model, compare: compare) } catch { throw TrainingError("\(path): \(error)") }
            evaluated = int8!
        }
        let m = try task.evaluate(model: evaluated, split: split)
        let files = try filesPrefix.map { try task.writeEvaluationFiles(split: split, prefix: $0) } ?? []
        var r = Result(metrics: m, classes: task.classes, recipe: recipe, quantized: quantized, report: task.report(m), files: files)
        if let int8 {
            r.engine = Int8Engine.kernelPath
            if case .int8(true) = engine {
                let c = int8.comparison
                r.comparison = c
                r.metrics.values["int8_codes_equal_layerwise"] = c.layerwise.fraction
                r.metrics.values["int8_max_code_difference_layerwise"] = Double(c.layerwise.maxDifference)
                r.metrics.values["int8_codes_equal_end_to_end"] = c.endToEnd.fraction
                r.metrics.values["int8_max_code_difference_end_to_end"] = Double(c.endToEnd.maxDifference)
                r.metrics.values["int8_codes_equal_two_rounding"] = c.twoRounding.fraction
                if c.samples > 0 { r.metrics.values["int8_same_prediction"] = c.predictionAgreement }
            }
        }
        return r
    }

    public static func table(_ r: Result, checkpoint: String) -> String {
        var s = "qat eval \(checkpoint): \(r.recipe.model.backbone) x\(r.recipe.model.width), \(r.quantized ? r.recipe.quant.mode + " (quantized)" : "float weights"), split \(r.metrics.split), \(r.metrics.samples) samples"
        if let e = r.engine { s += ", int8 engine (\(e) kernels)" }
        s += "\n" + r.report
        if let c = r.comparison {
            func line(_ name: String, _ a: Int8Agreement) -> String {
                let diffs = a.perDifference.keys.sorted().prefix(6).map { "\($0): \(a.perDifference[$0]!)" }.joined(separator: ", ")
                return String(format: "  %@ %.4f%% of %d codes equal, max difference %d", name as NSString, 100 * a.fraction, a.elements, a.maxDifference)
                    + (diffs.isEmpty ? "" : " (elements by difference \(diffs)\(a.perDifference.count > 6 ? ", ..." : ""))") + "\n"
            }
            s += "int8 engine against the fake-quant model:\n"
            s += line("layerwise (each op fed the fake-quant model's input codes):", c.layerwise)
            s += line("end to end (the engine's own codes):", c.endToEnd)
            s += line("yardstick, end to end, the engine against itself with the fake-quant op's two-rounding requantization:", c.twoRounding)
            if c.samples > 0 { s += String(format: "  same top-1 prediction: %.2f%% of %d samples\n", 100 * c.predictionAgreement, c.samples) }
            s += String(format: "  largest output difference: %.4g\n", c.maxOutputDifference)
            if c.endToEnd.equal < c.endToEnd.elements {
                s += "  end-to-end share equal by quantizer, in execution order:\n"
                for p in c.endToEnd.order {
                    let e = c.endToEnd.perPath[p]!, l = c.layerwise.perPath[p] ?? (0, 0)
                    s += String(format: "    %-44@ end to end %.4f%%, layerwise %.4f%%\n", p as NSString,
                                100 * Double(e.equal) / Double(max(1, e.elements)), 100 * Double(l.equal) / Double(max(1, l.elements)))
                }
            }
        }
        return s
    }
}
