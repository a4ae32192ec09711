import Foundation
import Kernels
import NN
import Checkpoint
import Recipes

/// `qat eval CHECKPOINT`: rebuilds the model from the recipe stored in the checkpoint, loads it and
/// evaluates a split.
public enum CheckpointEvaluation {
    public struct Result {
        public var metrics: EvalMetrics
        public var classes: [String]
        public var recipe: Recipe
        public var quantized: Bool
    }

    /// `data`: a folder with {train,val,test}.h5 replacing the recipe's data; `fp32`: evaluate the
    /// float weights of a quantized checkpoint (quantizers left out).
    public static func run(checkpoint path: String, data: String?, split: String, overrides: [String], fp32: Bool) throws -> Result {
        guard FileManager.default.fileExists(atPath: path) else { throw TrainingError("checkpoint \(path) does not exist") }
        let c = try TrainingRun.loadCheckpoint(path)
        guard !c.recipe.isEmpty else {
            throw TrainingError("\(path) holds no recipe (written by an older version or another tool); only checkpoints from `qat train` can be evaluated")
        }
        var sets = overrides
        if let data { sets += ["data.format=hdf5_chips", "data.path=\(data)"] }
        let recipe: Recipe
        do { recipe = try Recipe.parse(c.recipe, file: "\(path) (stored recipe)", overrides: sets) }
        catch { throw TrainingError("\(error)") }
        if let t = recipe.threads { Parallel.setThreads(t) }
        let d = try ClassificationData.open(recipe.data)
        let quantized = TrainingRun.isQuantized(c) && !fp32
        let (model, _) = try buildModel(recipe, classes: d.classes, quantized: quantized, ptqStructure: TrainingRun.isQuantized(c))
        var ck = c
        if fp32 { ck.quant = [:]; ck.quantAttributes = [:] }
        if !fp32 {
            do { try ck.apply(to: model, strict: true, file: path) }
            catch { throw TrainingError("\(error) (is \(path) a checkpoint of this recipe's model? --set model.* must match the run)") }
        } else {
            let report: LoadReport
            do { report = try ck.apply(to: model, strict: false, file: path) } catch { throw TrainingError("\(error)") }
            let missing = report.missing.filter { !$0.hasPrefix("/quant/") }
            if !missing.isEmpty || !report.shapeMismatches.isEmpty {
                throw TrainingError("\(path): float weights do not match the model (\((missing + report.shapeMismatches).prefix(3).joined(separator: "; ")))")
            }
        }
        // The EMA weights are what the run evaluated.
        if recipe.train.ema != nil { EMAEntries.load(c, into: model.namedParameters() + model.namedBuffers()) }
        let m = try Evaluator.evaluate(model, source: d.split(split), split: split, recipe: recipe, classes: d.classes.count)
        return Result(metrics: m, classes: d.classes, recipe: recipe, quantized: quantized)
    }

    public static func table(_ r: Result, checkpoint: String) -> String {
        var s = "qat eval \(checkpoint): \(r.recipe.model.backbone) x\(r.recipe.model.width), \(r.quantized ? r.recipe.quant.mode + " (quantized)" : "float weights"), split \(r.metrics.split), \(r.metrics.samples) samples\n"
        s += String(format: "accuracy        %6.2f%%\nmacro accuracy  %6.2f%%\nloss            %8.4f\n", 100 * r.metrics.accuracy, 100 * r.metrics.macroAccuracy, r.metrics.loss)
        s += "class                          samples  accuracy\n"
        for (i, name) in r.classes.enumerated() {
            let acc = r.metrics.perClassAccuracy[i]
            s += name.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: " %7d  %@\n", r.metrics.perClassCount[i], acc < 0 ? "     -" : String(format: "%6.2f%%", 100 * acc))
        }
        return s
    }
}
