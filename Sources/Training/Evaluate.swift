import Foundation
import UserPaths
import Kernels
import NN
import Checkpoint
import Recipes

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
    }

    /// `data`: a folder replacing the recipe's data (`data.path`; a synthetic recipe switches to its
    /// task's folder format, e.g. hdf5_chips); `fp32`: evaluate the float weights of a quantized
    /// checkpoint (quantizers left out).
    public static func run(checkpoint path: String, data: String?, split: String, overrides: [String], fp32: Bool, filesPrefix: String? = nil) throws -> Result {
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
        let m = try task.evaluate(model: model, split: split)
        let files = try filesPrefix.map { try task.writeEvaluationFiles(split: split, prefix: $0) } ?? []
        return Result(metrics: m, classes: task.classes, recipe: recipe, quantized: quantized, report: task.report(m), files: files)
    }

    public static func table(_ r: Result, checkpoint: String) -> String {
        "qat eval \(checkpoint): \(r.recipe.model.backbone) x\(r.recipe.model.width), \(r.quantized ? r.recipe.quant.mode + " (quantized)" : "float weights"), split \(r.metrics.split), \(r.metrics.samples) samples\n" + r.report
    }
}
