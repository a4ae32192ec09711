import Foundation
import UserPaths
import Kernels
import Autodiff
import NN
import Quant
import Checkpoint
import Recipes

/// Builds the task's model, quantized as the recipe's `quant` section says (`quantized` false: float).
/// `ptqStructure` repeats the structural part of PTQ's BN folding (conv biases appear) so a PTQ
/// checkpoint loads.
func buildModel(_ task: TrainingTask, quantized: Bool, ptqStructure: Bool) throws -> (Module, QATHandle?) {
    try buildModel(task.recipe, quantized: quantized, ptqStructure: ptqStructure, make: task.makeModel)
}

/// The same for a model made without a task (`qat predict` needs no dataset).
func buildModel(_ r: Recipe, quantized: Bool, ptqStructure: Bool, make: (inout RNG) throws -> Module) throws -> (Module, QATHandle?) {
    var rng = RNG(seed: r.seed)
    let model = try make(&rng)
    if ptqStructure && r.quant.mode == "ptq" && (r.quant.foldBN || r.quant.equalize) { model.eval(); PTQ.foldBatchNorms(model); model.train() }
    guard quantized else { return (model, nil) }
    do { return (model, try quantize(model, plan: try quantPlan(r))) }
    catch { throw TrainingError("quant: \(error)") }
}

/// Loads a checkpoint's weights for evaluation: strictly (quantizers included), then the EMA weights
/// when the recipe kept an EMA (what the run evaluated).
func loadForEvaluation(_ c: Checkpoint, into model: Module, recipe: Recipe, path: String) throws {
    do { try c.apply(to: model, strict: true, file: path) }
    catch { throw TrainingError("\(error) (is \(path) a checkpoint of this recipe's model? --set model.* must match the run)") }
    if recipe.train.ema != nil { EMAEntries.load(c, into: model.namedParameters() + model.namedBuffers()) }
}

/// Loads only the float weights of a checkpoint (its quantizer entries left out), non-strictly but
/// requiring every float tensor of the model, then the EMA weights when the recipe kept an EMA: the
/// float model a quantized or FP32 run evaluated (`qat eval --quant fp32`, sensitivity, mixed precision).
func loadFloatWeights(_ checkpoint: Checkpoint, into model: Module, recipe: Recipe, path: String) throws {
    var c = checkpoint
    c.quant = [:]; c.quantAttributes = [:]
    let report: LoadReport
    do { report = try c.apply(to: model, strict: false, file: path) } catch { throw TrainingError("\(error)") }
    let missing = report.missing.filter { !$0.hasPrefix("/quant/") }
    if !missing.isEmpty || !report.shapeMismatches.isEmpty {
        throw TrainingError("\(path): float weights do not match the model (\((missing + report.shapeMismatches).prefix(3).joined(separator: "; ")))")
    }
    if recipe.train.ema != nil { EMAEntries.load(checkpoint, into: model.namedParameters() + model.namedBuffers()) }
}

/// A checkpoint written by `qat train` (it stores the recipe that rebuilds its model), for `use`
/// ("be evaluated", "be analysed", "teach"): a missing file, a broken link or a checkpoint without a
/// recipe is an error naming the path.
func loadTrainedCheckpoint(_ path: String, use: String) throws -> Checkpoint {
    guard FileManager.default.fileExists(atPath: path) else {
        throw TrainingError("checkpoint \(path)" + (PathProblem.brokenLink(path).map { ": " + $0 } ?? " does not exist"))
    }
    let c = try TrainingRun.loadCheckpoint(path)
    guard !c.recipe.isEmpty else {
        throw TrainingError("\(path) holds no recipe (written by an older version or another tool); only checkpoints from `qat train` can \(use)")
    }
    return c
}

/// The float model of a checkpoint written by `qat train`, for tools that analyse it (sensitivity,
/// mixed precision): its stored recipe with `overrides`, the recipe's task, and the model with the
/// checkpoint's float weights (`loadFloatWeights`), in eval mode.
func floatModel(checkpoint path: String, overrides: [String]) throws -> (recipe: Recipe, task: TrainingTask, model: Module) {
    let c = try loadTrainedCheckpoint(path, use: "be analysed")
    let recipe: Recipe
    do { recipe = try Recipe.parse(c.recipe, file: "\(path) (stored recipe)", overrides: overrides) } catch { throw TrainingError("\(error)") }
    if let t = recipe.threads { Parallel.setThreads(t) }
    let task = try makeTask(recipe)
    let (model, _) = try buildModel(task, quantized: false, ptqStructure: false)
    try loadFloatWeights(c, into: model, recipe: recipe, path: path)
    model.eval()
    return (recipe, task, model)
}

/// The quantization plan a recipe's `quant` section describes.
public func quantPlan(_ r: Recipe) throws -> QuantPlan {
    let q = r.quant
    func range(_ s: String) -> RangeMethod {
        switch s {
        case "moving_minmax": return .movingAverageMinMax(momentum: 0.01)
        case "percentile": return .percentile(99.99)
        case "mse": return .mse
        case "lsq": return .lsq
        case "lsq_plus": return .lsqPlus
        default: return .minMax
        }
    }
    let dropout: QuantDropout? = {
        guard q.dropout.schedule == "linear" || q.dropout.p > 0 else { return nil }
        let g = QuantDropout.Granularity(rawValue: q.dropout.granularity) ?? .element
        if q.dropout.schedule == "linear" {
            return QuantDropout(.linear(start: Float(q.dropout.start), end: Float(q.dropout.end), steps: q.dropout.steps), granularity: g)
        }
        return QuantDropout(.constant(Float(q.dropout.p)), granularity: g)
    }()
    func spec(_ s: Recipe.QuantizerSpec, isWeight: Bool) -> QuantizerSpec {
        // PTQ never trains the ranges: observed while calibrating, then fixed.
        let mode: FakeQuantize.Mode = q.mode == "ptq" ? .fixed : (s.learnable ? .learnable(learnZeroPoint: q.learnZeroPoint) : .observed)
        let applies = q.dropout.apply == "both" || (q.dropout.apply == "weights") == isWeight
        return QuantizerSpec(bits: s.bits, symmetric: s.symmetric, perChannel: s.perChannel, mode: mode, rangeMethod: range(s.range),
                             gradFactor: FakeQuantize.GradFactor(rawValue: q.gradFactor) ?? .lsqPyTorch,
                             ste: STE(rawValue: q.ste) ?? .clipped, dropout: q.mode == "qat" && applies ? dropout : nil)
    }
    var p = QuantPlan(weight: spec(q.weight, isWeight: true), activation: spec(q.activation, isWeight: false))
    p.quantizeWeights = q.weight.enabled
    p.quantizeInputs = q.activation.enabled
    p.quantizeResidualAdds = q.residualAdds && q.activation.enabled
    p.foldBN = q.foldBN && q.mode == "qat"
    p.freezeBNAfter = q.freezeBNAfter
    p.seed = r.seed
    p.overrides = q.overrides.map { QuantPlan.Override($0.pattern, skip: $0.skip, weightBits: $0.weightBits, inputBits: $0.inputBits) }
    return p
}
