import Foundation
import Kernels
import Autodiff
import NN
import Quant
import Recipes

/// The task interface: what a recipe's `task` builds and how a batch becomes a loss and metrics.
/// Classification now; detection will implement the same protocol (model from the recipe, loss of a
/// batch, evaluation over a split) and reuse the run, checkpoint, sweep and export machinery.
public protocol TrainingTask {
    var classes: [String] { get }
    func makeModel(rng: inout RNG) throws -> Module
}

/// Builds models for classification recipes.
public struct ClassificationTask: TrainingTask {
    public let recipe: Recipe
    public let classes: [String]
    public init(recipe: Recipe, classes: [String]) { self.recipe = recipe; self.classes = classes }

    public func makeModel(rng: inout RNG) throws -> Module {
        let m = try Backbones.make(recipe.model.backbone, width: recipe.model.width, numClasses: classes.count, rng: &rng)
        for (_, mod) in m.namedModules() { if let d = mod as? Dropout { d.p = Float(recipe.model.dropout) } }
        return m
    }
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
    p.quantizeResidualAdds = q.residualAdds
    p.foldBN = q.foldBN && q.mode == "qat"
    p.freezeBNAfter = q.freezeBNAfter
    p.seed = r.seed
    p.overrides = q.overrides.map { QuantPlan.Override($0.pattern, skip: $0.skip, weightBits: $0.weightBits, inputBits: $0.inputBits) }
    return p
}

/// Classification metrics over a split.
public struct EvalMetrics: Codable, Sendable, Equatable {
    public var split: String
    public var samples: Int
    public var loss: Double
    public var accuracy: Double
    public var macroAccuracy: Double
    /// Per class: accuracy (nil-free: classes without samples get -1) and sample count.
    public var perClassAccuracy: [Double]
    public var perClassCount: [Int]

    public func value(_ metric: String) -> Double { metric == "macro_accuracy" ? macroAccuracy : accuracy }

    enum CodingKeys: String, CodingKey {
        case split, samples, loss, accuracy
        case macroAccuracy = "macro_accuracy", perClassAccuracy = "per_class_accuracy", perClassCount = "per_class_count"
    }
}

/// JSON for reports: sorted keys, and NaN/infinity (a diverged run's loss) written as strings instead
/// of failing.
public enum JSONCoding {
    public static func encoder(pretty: Bool = true) -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }
    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }
}
