import Foundation
import Kernels
import Autodiff
import NN
import Recipes

/// What a recipe's `task` supplies to the task-neutral machinery: the run loop, `qat eval`, sweeps and
/// notebook export know a task only through this protocol (torchvision's detection `engine.py`:
/// `train_one_epoch` knows only a loss dictionary and its sum). `makeTask` is the one place that maps a
/// recipe's task to its type.
///
/// A task owns its data (opened from `recipe.data` when it is made) and its evaluation. The run loop
/// owns the model's training state: optimizer, schedule, EMA, quantization, checkpoints, metrics files.
public protocol TrainingTask: AnyObject {
    var recipe: Recipe { get }
    /// Class names in label order (stored in checkpoints and final.json).
    var classes: [String] { get }
    /// Samples in the train split; an epoch is `trainCount / train.batch` full batches.
    var trainCount: Int { get }
    /// Where the data lives (for messages).
    var dataRoot: String { get }

    /// A fresh float model for the recipe (quantization is applied by the caller).
    func makeModel(rng: inout RNG) throws -> Module
    /// The seeded order of the train split in `epoch` (a function of seed and epoch only, so a resumed
    /// run continues the same order).
    func trainOrder(epoch: Int) -> [Int]
    /// The loss terms of one training batch (train-split indices `indices`, augmented for `epoch`) by
    /// name, e.g. ["classification": ..., "bbox_regression": ...]. The loop sums them in name order,
    /// backpropagates the sum and logs each as `loss_<name>`.
    func losses(model: Module, epoch: Int, indices: [Int]) throws -> [String: Tensor]
    /// Up to `batches` inputs `x` (train split, no augmentation) for quantizer calibration and PTQ bias
    /// correction, which run `model(x)`.
    func calibrationInputs(batches: Int) throws -> [Tensor]
    /// Up to `batches` batches of a split's inputs, unaugmented, in split order (`eval.batch` each):
    /// reference inputs for checking an exported model. Default: not available for the task.
    func inputs(split: String, batches: Int) throws -> [Tensor]
    /// Metrics of `model` over a whole split ("train", "val", "test"), in eval mode (the task switches
    /// the model and restores its mode); `values` must hold the recipe's `eval.metric`.
    func evaluate(model: Module, split: String) throws -> TaskMetrics
    /// The table `qat eval` prints for metrics this task computed.
    func report(_ m: TaskMetrics) -> String
    /// The model path that a float tensor stored under `path` in an `init_from` checkpoint initialises
    /// (nil: not used). Default: the same path. A detector maps a classifier's backbone paths onto its
    /// own backbone here.
    func initPath(forCheckpointPath path: String) -> String?
    /// Files the task writes next to an evaluation of `split` (paths starting with `prefix`), e.g. a
    /// detector's COCO results; returns their paths. Default: none.
    func writeEvaluationFiles(split: String, prefix: String) throws -> [String]
    /// Figures of the finished run for its notebook, written into the run directory after the final
    /// evaluation of `split` (the model holds the evaluated weights): `figures/*.png` (embedded as
    /// images) and `curves.json` (named x/y series: {"title", "xlabel", "ylabel", "series": [{"name",
    /// "x", "y"}]}, plotted). Default: none.
    func writeRunFigures(model: Module, split: String, dir: String) throws
}

extension TrainingTask {
    public func inputs(split: String, batches: Int) throws -> [Tensor] {
        throw TrainingError("reference inputs of the \(recipe.task) task are not available")
    }
    public func initPath(forCheckpointPath path: String) -> String? { path }
    public func writeEvaluationFiles(split: String, prefix: String) throws -> [String] { [] }
    public func writeRunFigures(model: Module, split: String, dir: String) throws {}
}

/// The training task of a recipe: the one place that knows which type implements which `task`.
public func makeTask(_ recipe: Recipe, log: @escaping (String) -> Void = { _ in }) throws -> TrainingTask {
    switch recipe.task {
    case "detection": return try DetectionTask(recipe: recipe, log: log)
    default: return try ClassificationTask(recipe: recipe, log: log)
    }
}

/// Metrics of a model over one split, by name, as every task reports them. JSON (final.json,
/// `qat eval`'s metrics file, metrics.jsonl) flattens it: `split`, `samples`, each value under its name,
/// each per-class array as `per_class_<name>`, and `per_class_count`.
public struct TaskMetrics: Codable, Sendable, Equatable {
    public var split: String
    public var samples: Int
    /// Metrics by name, higher is better except names starting with "loss" (classification: loss,
    /// accuracy, macro_accuracy; detection: map, map50, ...). `eval.metric` is looked up here.
    public var values: [String: Double]
    /// Per-class metrics by name (e.g. "accuracy", "ap50"), one value per class in class order, -1 where a
    /// class has nothing to measure it on.
    public var perClass: [String: [Double]]
    /// Per class: samples (classification) or ground-truth objects (detection) in the split.
    public var perClassCount: [Int]

    public init(split: String, samples: Int, values: [String: Double], perClass: [String: [Double]] = [:], perClassCount: [Int] = []) {
        precondition(values["split"] == nil && values["samples"] == nil && perClass["count"] == nil && !values.keys.contains { $0.hasPrefix("per_class_") },
                     "reserved metric name (split, samples, per_class_*, per-class count)")
        self.split = split; self.samples = samples; self.values = values; self.perClass = perClass; self.perClassCount = perClassCount
    }

    public subscript(_ name: String) -> Double? { values[name] }

    /// The value of `metric`, or an error naming the split and what it does report.
    public func required(_ metric: String) throws -> Double {
        guard let v = values[metric] else {
            throw TrainingError("the evaluation of \(split) has no metric \(metric) (it reports \(names().joined(separator: ", ")))")
        }
        return v
    }

    /// Names of the values: `first` (the recipe's metric) first, then the others by name, losses last.
    public func names(first: String? = nil) -> [String] {
        values.keys.sorted { a, b in
            func rank(_ s: String) -> Int { s == first ? 0 : s.hasPrefix("loss") ? 2 : 1 }
            return rank(a) != rank(b) ? rank(a) < rank(b) : a < b
        }
    }

    /// One line of values: fractions as percentages, losses as plain numbers.
    public func summary(first: String? = nil) -> String {
        names(first: first).map { TaskMetrics.format($0, values[$0]!) }.joined(separator: ", ")
    }

    static func format(_ name: String, _ v: Double) -> String {
        name.hasPrefix("loss") ? String(format: "%@ %.4f", name, v) : String(format: "%@ %.2f%%", name, 100 * v)
    }

    /// The flattened record: values by name and per-class arrays as `per_class_<name>` (no split,
    /// samples or counts), for metrics.jsonl.
    public var record: [String: Any] {
        var o: [String: Any] = [:]
        for (k, v) in values { o[k] = v.isFinite ? v : NSNull() }
        for (k, v) in perClass { o["per_class_" + k] = v }
        return o
    }

    struct Key: CodingKey {
        var stringValue: String
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(split, forKey: Key("split"))
        try c.encode(samples, forKey: Key("samples"))
        for (k, v) in values { try c.encode(v, forKey: Key(k)) }
        for (k, v) in perClass { try c.encode(v, forKey: Key("per_class_" + k)) }
        try c.encode(perClassCount, forKey: Key("per_class_count"))
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        split = try c.decode(String.self, forKey: Key("split"))
        samples = try c.decode(Int.self, forKey: Key("samples"))
        perClassCount = try c.decodeIfPresent([Int].self, forKey: Key("per_class_count")) ?? []
        values = [:]; perClass = [:]
        for k in c.allKeys where !["split", "samples", "per_class_count"].contains(k.stringValue) {
            if k.stringValue.hasPrefix("per_class_") { perClass[String(k.stringValue.dropFirst(10))] = try c.decode([Double].self, forKey: k) }
            else { values[k.stringValue] = try c.decode(Double.self, forKey: k) }
        }
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
