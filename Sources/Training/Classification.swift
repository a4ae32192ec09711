import Foundation
import Kernels
import Autodiff
import NN
import Prune
import Datasets
import Recipes
import Checkpoint

/// Classification of aircraft chips: a backbone with a linear head, cross-entropy, accuracy and
/// macro (class-balanced) accuracy.
public final class ClassificationTask: TrainingTask {
    public let recipe: Recipe
    public let data: ClassificationData
    let trainLoader: Loader
    /// `train.distill`'s teacher, loaded on the first training batch.
    private var teacher: Module?

    /// Opens (for synth_chips first generates) the recipe's data.
    public init(recipe: Recipe, log: (String) -> Void = { _ in }) throws {
        self.recipe = recipe
        data = try ClassificationData.open(recipe.data, log: log)
        trainLoader = try Loader(data.train, config: loaderConfig(recipe, batch: recipe.train.batch, train: true))
    }

    public var classes: [String] { data.classes }
    public var trainCount: Int { data.train.count }
    public var dataRoot: String { data.root }

    public func makeModel(rng: inout RNG) throws -> Module {
        let m = try ClassificationTask.classifier(recipe, classes: classes.count, rng: &rng)
        for (_, mod) in m.namedModules() { if let d = mod as? Dropout { d.p = Float(recipe.model.dropout) } }
        return m
    }

    /// The recipe's backbone with a linear classifier, its pruned groups (`model.channels`) shrunk.
    public static func classifier(_ r: Recipe, classes: Int, rng: inout RNG) throws -> Module {
        let m = try Backbones.make(r.model.backbone, width: r.model.width, numClasses: classes, smallInput: r.model.smallInput, rng: &rng)
        if !r.model.channels.isEmpty {
            do { try Pruner.resize(m, channels: r.model.channels.map { ($0.group, $0.keep) }) } catch { throw TrainingError("\(error)") }
        }
        return m
    }

    public func trainOrder(epoch: Int) -> [Int] { trainLoader.order(epoch: epoch) }

    public func losses(model: Module, epoch: Int, indices: [Int]) throws -> [String: Tensor] {
        let batch = try trainLoader.makeBatch(epoch: epoch, indices: indices)
        let x = Tensor(shape: batch.shape, storage: batch.images)
        let y = batch.labels.map { $0.first ?? 0 }
        let logits = model(x)
        let ce = Loss.crossEntropy(logits, targets: y)
        guard let teacher = try distillationTeacher() else { return ["classification": ce] }
        let d = recipe.train.distill, w = Float(d.weight)
        let t = noGrad { teacher(x) }
        return ["classification": ce * (1 - w), "distillation": Loss.distillation(student: logits, teacher: t, temperature: Float(d.temperature)) * w]
    }

    /// The float teacher of `train.distill` (loaded once, eval mode), or nil without one.
    func distillationTeacher() throws -> Module? {
        guard let path = recipe.train.distill.teacher else { return nil }
        if let t = teacher { return t }
        let t = try loadTeacher(path)
        teacher = t
        return t
    }

    private func loadTeacher(_ path: String) throws -> Module {
        let key = "train.distill.teacher"
        let c: Checkpoint
        do { c = try loadTrainedCheckpoint(path, use: "teach") } catch { throw TrainingError("\(key): \(error)") }
        let tr: Recipe
        do { tr = try Recipe.parse(c.recipe, file: "\(path) (stored recipe)") } catch { throw TrainingError("\(key): \(error)") }
        guard tr.task == "classification" else { throw TrainingError("\(key): \(path) is a \(tr.task) checkpoint; a classifier must teach a classifier") }
        var rng = RNG(seed: 0)
        let m = try ClassificationTask.classifier(tr, classes: classes.count, rng: &rng)
        // A teacher of another class count fails here on the classifier's shape.
        do { try loadFloatWeights(c, into: m, recipe: tr, path: path) } catch { throw TrainingError("\(key): \(error)") }
        m.eval()
        return m
    }

    public func calibrationInputs(batches: Int) throws -> [Tensor] { try unaugmentedBatches(data.train, recipe: recipe, batches: batches) }

    public func inputs(split: String, batches: Int) throws -> [Tensor] {
        try orderedBatches(data.split(split), config: loaderConfig(recipe, batch: recipe.eval.batch, train: false), batches: batches)
    }

    /// Loss (mean cross-entropy), accuracy, macro accuracy (mean over classes present in the split) and
    /// per-class accuracy, in a fixed order without augmentation.
    public func evaluate(model: Module, split: String) throws -> TaskMetrics {
        let source = data.split(split), k = classes.count, size = recipe.eval.batch
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        let loader = try Loader(source, config: loaderConfig(recipe, batch: size, train: false))
        var correct = [Int](repeating: 0, count: k), count = [Int](repeating: 0, count: k)
        var lossSum = 0.0
        try noGrad {
            var b = 0
            while b * size < source.count {
                let batch = try loader.makeBatch(epoch: 0, indices: Array((b * size)..<min((b + 1) * size, source.count)))
                let logits = model(Tensor(shape: batch.shape, storage: batch.images))
                let y = batch.labels.map { $0.first ?? 0 }
                lossSum += Double(Loss.crossEntropy(logits, targets: y, reduction: .sum).item)
                let p = logits.pointer, n = logits.shape[1]
                for i in 0..<y.count {
                    var arg = 0
                    for j in 1..<n where p[i * n + j] > p[i * n + arg] { arg = j }
                    if y[i] < k { count[y[i]] += 1; if arg == y[i] { correct[y[i]] += 1 } }
                }
                b += 1
            }
        }
        let total = count.reduce(0, +)
        let per = (0..<k).map { count[$0] > 0 ? Double(correct[$0]) / Double(count[$0]) : -1 }
        let present = per.filter { $0 >= 0 }
        return TaskMetrics(split: split, samples: total,
                           values: ["loss": lossSum / Double(max(total, 1)), "accuracy": Double(correct.reduce(0, +)) / Double(max(total, 1)),
                                    "macro_accuracy": present.isEmpty ? 0 : present.reduce(0, +) / Double(present.count)],
                           perClass: ["accuracy": per], perClassCount: count)
    }

    public func report(_ m: TaskMetrics) -> String {
        var s = String(format: "accuracy        %6.2f%%\nmacro accuracy  %6.2f%%\nloss            %8.4f\n",
                       100 * (m["accuracy"] ?? .nan), 100 * (m["macro_accuracy"] ?? .nan), m["loss"] ?? .nan)
        s += "class                          samples  accuracy\n"
        let per = m.perClass["accuracy"] ?? []
        for (i, name) in classes.enumerated() where i < per.count && i < m.perClassCount.count {
            s += name.padding(toLength: 30, withPad: " ", startingAt: 0)
                + String(format: " %7d  %@\n", m.perClassCount[i], per[i] < 0 ? "     -" : String(format: "%6.2f%%", 100 * per[i]))
        }
        return s
    }
}
