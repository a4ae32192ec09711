import XCTest
import Foundation
import Kernels
import Autodiff
import NN
import Checkpoint
import Recipes
@testable import Training

/// The classification task with its loss split into two exact halves (0.5 x + 0.5 x == x in floating
/// point, and so are the gradients), an extra per-class metric, and optionally no classifier weights
/// taken from `init_from` checkpoints: what a task with several loss terms and its own metrics looks
/// like to the run loop.
final class HalvesTask: TrainingTask {
    let base: ClassificationTask
    let skipClassifierOnInit: Bool
    init(_ recipe: Recipe, skipClassifierOnInit: Bool = false) throws {
        base = try ClassificationTask(recipe: recipe)
        self.skipClassifierOnInit = skipClassifierOnInit
    }
    var recipe: Recipe { base.recipe }
    var classes: [String] { base.classes }
    var trainCount: Int { base.trainCount }
    var dataRoot: String { base.dataRoot }
    func makeModel(rng: inout RNG) throws -> Module { try base.makeModel(rng: &rng) }
    func trainOrder(epoch: Int) -> [Int] { base.trainOrder(epoch: epoch) }
    func losses(model: Module, epoch: Int, indices: [Int]) throws -> [String: Tensor] {
        let ce = try base.losses(model: model, epoch: epoch, indices: indices)["classification"]!
        return ["half_a": 0.5 * ce, "half_b": 0.5 * ce]
    }
    func calibrationInputs(batches: Int) throws -> [Tensor] { try base.calibrationInputs(batches: batches) }
    func evaluate(model: Module, split: String) throws -> TaskMetrics {
        var m = try base.evaluate(model: model, split: split)
        m.values["error_rate"] = 1 - m.values["accuracy"]!
        m.perClass["error"] = m.perClass["accuracy"]!.map { $0 < 0 ? -1 : 1 - $0 }
        return m
    }
    func report(_ m: TaskMetrics) -> String { base.report(m) }
    func initPath(forCheckpointPath path: String) -> String? { skipClassifierOnInit && path.hasPrefix("classifier.") ? nil : path }
}

func jsonLines(_ path: String, type: String) throws -> [[String: Any]] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]).flatMap { $0["type"] as? String == type ? $0 : nil }
    }
}

final class TaskMetricsTests: XCTestCase {
    /// The JSON layout is the one classification reports had before tasks (final.json, metrics files).
    func testJSONIsFlatAndRoundTrips() throws {
        let m = TaskMetrics(split: "test", samples: 3, values: ["loss": 0.5, "accuracy": 0.75, "macro_accuracy": 0.625],
                            perClass: ["accuracy": [1, -1, 0.5]], perClassCount: [2, 0, 1])
        let text = String(data: try JSONCoding.encoder(pretty: false).encode(m), encoding: .utf8)!
        XCTAssertEqual(text, #"{"accuracy":0.75,"loss":0.5,"macro_accuracy":0.625,"per_class_accuracy":[1,-1,0.5],"per_class_count":[2,0,1],"samples":3,"split":"test"}"#)
        XCTAssertEqual(try JSONCoding.decoder().decode(TaskMetrics.self, from: Data(text.utf8)), m)
        var diverged = m; diverged.values["loss"] = .nan
        let back = try JSONCoding.decoder().decode(TaskMetrics.self, from: JSONCoding.encoder().encode(diverged))
        XCTAssertTrue(back["loss"]!.isNaN)
        XCTAssertTrue(diverged.record["loss"] is NSNull)
        XCTAssertEqual(m.record["per_class_accuracy"] as? [Double], [1, -1, 0.5])
        XCTAssertNil(m.record["split"])
        XCTAssertEqual(m.names(first: "macro_accuracy"), ["macro_accuracy", "accuracy", "loss"])
        XCTAssertEqual(m.summary(first: "macro_accuracy"), "macro_accuracy 62.50%, accuracy 75.00%, loss 0.5000")
    }

    func testDetectionTaskNamesMissingData() throws {
        let root = tempDir("det")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try Recipe.parse("task: detection\ndata: {format: coco, path: \(root)/nowhere, input_size: 64}\n")
        XCTAssertThrowsError(try makeTask(r)) { XCTAssertTrue("\($0)".contains("\(root)/nowhere/annotations/train.json"), "\($0)") }
        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: root + "/r", resume: false, quiet: true))
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/r"))
    }
}

final class TaskRunTests: XCTestCase {
    /// The loop sums the loss terms and logs each; a loss split into halves trains bit for bit like the
    /// whole; metrics are looked up by name, and final.json, metrics.jsonl and the notebook carry every
    /// metric the task reports.
    func testLossTermsAreSummedLoggedAndExported() throws {
        let root = tempDir("terms")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe(overrides: ["train.epochs=1", "eval.metric=macro_accuracy"])
        let plain = try TrainingRun(recipe: r, runDir: root + "/plain", resume: false, quiet: true)
        guard case .finished(let fp) = try plain.run() else { return XCTFail() }
        let halves = try TrainingRun(recipe: r, runDir: root + "/halves", resume: false, quiet: true, task: try HalvesTask(r))
        guard case .finished(let fh) = try halves.run() else { return XCTFail() }

        XCTAssertEqual(fh.best, fp.best)
        XCTAssertEqual(fh.metric, "macro_accuracy")
        XCTAssertEqual(fh.best, try jsonLines(root + "/halves/metrics.jsonl", type: "eval").last?["macro_accuracy"] as? Double)
        for k in ["loss", "accuracy", "macro_accuracy"] { XCTAssertEqual(fh.final?[k], fp.final?[k], k) }
        XCTAssertEqual(fh.final?.perClass["accuracy"], fp.final?.perClass["accuracy"])
        XCTAssertEqual(fh.final?["error_rate"], 1 - fp.final!["accuracy"]!)
        let ca = try Checkpoint.load(from: root + "/plain/checkpoints/last.h5"), cb = try Checkpoint.load(from: root + "/halves/checkpoints/last.h5")
        XCTAssertEqual(ca.params, cb.params)

        let tp = try jsonLines(root + "/plain/metrics.jsonl", type: "train"), th = try jsonLines(root + "/halves/metrics.jsonl", type: "train")
        XCTAssertFalse(tp.isEmpty)
        XCTAssertEqual(tp.count, th.count)
        for (a, b) in zip(tp, th) {
            let loss = a["loss"] as! Double
            XCTAssertEqual(a["loss_classification"] as? Double, loss)
            XCTAssertEqual(b["loss"] as? Double, loss)
            // (metrics.jsonl's text keeps about 16 digits, so the halves read back within an ulp or two)
            XCTAssertEqual(b["loss_half_a"] as? Double ?? .nan, loss / 2, accuracy: 1e-14 * loss)
            XCTAssertEqual(b["loss_half_b"] as? Double ?? .nan, loss / 2, accuracy: 1e-14 * loss)
            XCTAssertNil(b["loss_classification"])
        }
        let evals = try jsonLines(root + "/halves/metrics.jsonl", type: "eval")
        XCTAssertNotNil(evals.last?["error_rate"] as? Double)
        XCTAssertNotNil(evals.last?["per_class_error"] as? [Double])
        XCTAssertNil(evals.last?["per_class_count"])
        let final = try jsonLines(root + "/halves/metrics.jsonl", type: "final").last!
        for k in ["accuracy", "macro_accuracy", "per_class_accuracy", "error_rate", "per_class_error", "split"] { XCTAssertNotNil(final[k], k) }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/halves/final.json"))) as! [String: Any]
        let finalMetrics = json["final"] as! [String: Any]
        for k in ["accuracy", "macro_accuracy", "per_class_accuracy", "per_class_count", "error_rate", "per_class_error", "loss"] { XCTAssertNotNil(finalMetrics[k], k) }
        XCTAssertTrue(try String(contentsOfFile: root + "/halves/train.log", encoding: .utf8).contains("(half_a "))

        // The notebook plots both loss terms, every metric and each per-class metric.
        _ = try NotebookExport.export(dir: root + "/halves", out: root + "/nb/halves.ipynb", html: true)
        let html = try String(contentsOfFile: root + "/nb/halves.html", encoding: .utf8)
        for s in ["loss_half_a", "loss_half_b", "error_rate", "macro_accuracy", "Per-class accuracy", "Per-class error"] { XCTAssertTrue(html.contains(s), s) }
        let nb = try String(contentsOfFile: root + "/nb/halves.ipynb", encoding: .utf8)
        XCTAssertTrue(nb.contains("train_columns") && nb.contains("loss_half_a"))
    }

    /// model.init_from loads what matches (here everything but the classifier, which the task leaves
    /// out) and says so; a checkpoint of another model or a missing file stop the run before it starts.
    func testModelInitFromLoadsMatchingWeightsNonStrictly() throws {
        let root = tempDir("initfrom")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let a = try tinyRecipe(overrides: ["train.steps=2"])
        let runA = try TrainingRun(recipe: a, runDir: root + "/a", resume: false, quiet: true)
        guard case .finished = try runA.run() else { return XCTFail() }
        let ckpt = try Checkpoint.load(from: root + "/a/checkpoints/best.h5")

        let b = try tinyRecipe(overrides: ["train.steps=2", "seed=5", "model.init_from=\(root)/a/checkpoints/best.h5"])
        var rng = RNG(seed: 5)
        let fresh = try HalvesTask(b).makeModel(rng: &rng)
        let runB = try TrainingRun(recipe: b, runDir: root + "/b", resume: false, quiet: true, task: try HalvesTask(b, skipClassifierOnInit: true))
        let params = Dictionary(uniqueKeysWithValues: runB.model.namedParameters().map { ($0.0, $0.1.scalars) })
        let freshParams = Dictionary(uniqueKeysWithValues: fresh.namedParameters().map { ($0.0, $0.1.scalars) })
        XCTAssertFalse(params.isEmpty)
        for (p, v) in params {
            if p.hasPrefix("classifier.") { XCTAssertEqual(v, freshParams[p], p) } else { XCTAssertEqual(v, ckpt.params[p]?.values, p) }
        }
        let log = try String(contentsOfFile: root + "/b/train.log", encoding: .utf8)
        XCTAssertTrue(log.contains("model.init_from: initialised") && log.contains("keep their initialisation (e.g. /params/classifier."), log)
        XCTAssertTrue(try String(contentsOfFile: root + "/b/recipe.resolved.yaml", encoding: .utf8).contains("init_from: \(root)/a/checkpoints/best.h5"))

        // The plain classification task takes every tensor (same model).
        let runC = try TrainingRun(recipe: b, runDir: root + "/c", resume: false, quiet: true)
        for (p, t) in runC.model.namedParameters() { XCTAssertEqual(t.scalars, ckpt.params[p]?.values, p) }

        let other = try tinyRecipe(overrides: ["model.backbone=resnet18", "model.init_from=\(root)/a/checkpoints/best.h5"])
        XCTAssertThrowsError(try TrainingRun(recipe: other, runDir: root + "/d", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("model.init_from: no tensor of") && "\(e)".contains("same backbone"), "\(e)")
        }
        let missing = try tinyRecipe(overrides: ["model.init_from=\(root)/none.h5"])
        XCTAssertThrowsError(try TrainingRun(recipe: missing, runDir: root + "/e", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("model.init_from: \(root)/none.h5 does not exist"), "\(e)")
        }
        try FileManager.default.createSymbolicLink(atPath: root + "/loop.h5", withDestinationPath: root + "/loop.h5")
        let loop = try tinyRecipe(overrides: ["model.init_from=\(root)/loop.h5"])
        XCTAssertThrowsError(try TrainingRun(recipe: loop, runDir: root + "/f", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("model.init_from: \(root)/loop.h5: symlink loop"), "\(e)")
        }
        XCTAssertThrowsError(try CheckpointEvaluation.run(checkpoint: root + "/loop.h5", data: nil, split: "test", overrides: [], fp32: false)) { e in
            XCTAssertTrue("\(e)".contains("checkpoint \(root)/loop.h5: symlink loop"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/d"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/e"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/f"))
    }

    /// `qat export --format safetensors` writes PyTorch names; `model.init_from: X.safetensors` loads
    /// such a file (a torchvision state dict) back into the same weights; `--format weights` drops the
    /// optimizer state and keeps what `qat eval` needs; neither replaces a checkpoint.
    func testWeightsExportAndSafetensorsInitFrom() throws {
        let root = tempDir("weights")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let a = try tinyRecipe(overrides: ["train.steps=2"])
        guard case .finished = try TrainingRun(recipe: a, runDir: root + "/a", resume: false, quiet: true).run() else { return XCTFail() }
        let best = root + "/a/checkpoints/best.h5"
        let ckpt = try Checkpoint.load(from: best)
        XCTAssertTrue(try WeightsExport.export(checkpoint: best, format: .safetensors, out: root + "/w.safetensors").contains("PyTorch names"))
        let s = try SafeTensors.read(from: root + "/w.safetensors")
        XCTAssertEqual(s.tensors.count, ckpt.params.count + ckpt.buffers.count)
        XCTAssertTrue(s.tensors.keys.contains { $0.hasSuffix(".running_var") })
        XCTAssertFalse(s.tensors.keys.contains { $0.hasSuffix(".runningVar") })

        let b = try tinyRecipe(overrides: ["train.steps=2", "seed=5", "model.init_from=\(root)/w.safetensors"])
        let runB = try TrainingRun(recipe: b, runDir: root + "/b", resume: false, quiet: true)
        for (p, t) in runB.model.namedParameters() { XCTAssertEqual(t.scalars, ckpt.params[p]?.values, p) }
        for (p, t) in runB.model.namedBuffers() where ckpt.buffers[p] != nil { XCTAssertEqual(t.scalars, ckpt.buffers[p]?.values, p) }

        XCTAssertTrue(try WeightsExport.export(checkpoint: best, format: .weights, out: root + "/w.h5").contains("optimizer state"))
        let w = try Checkpoint.load(from: root + "/w.h5")
        XCTAssertTrue(w.optimizer.isEmpty)
        XCTAssertFalse(ckpt.optimizer.isEmpty)
        XCTAssertEqual(w.params, ckpt.params); XCTAssertEqual(w.recipe, ckpt.recipe)
        XCTAssertNoThrow(try CheckpointEvaluation.run(checkpoint: root + "/w.h5", data: nil, split: "test", overrides: [], fp32: false))

        // Never over a checkpoint (nor the input itself), never a wrongly named file.
        let before = try Data(contentsOf: URL(fileURLWithPath: root + "/w.h5"))
        XCTAssertThrowsError(try WeightsExport.export(checkpoint: best, format: .weights, out: root + "/w.h5")) { XCTAssertTrue("\($0)".contains("is a checkpoint"), "\($0)") }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: root + "/w.h5")), before)
        XCTAssertThrowsError(try WeightsExport.export(checkpoint: best, format: .weights, out: best)) { XCTAssertTrue("\($0)".contains("being exported"), "\($0)") }
        XCTAssertThrowsError(try WeightsExport.export(checkpoint: best, format: .safetensors, out: root + "/w.bin")) { XCTAssertTrue("\($0)".contains("NAME.safetensors"), "\($0)") }
        // A damaged safetensors file as init_from: the recipe key and the file are named.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: root + "/bad.safetensors"))
        let bad = try tinyRecipe(overrides: ["model.init_from=\(root)/bad.safetensors"])
        XCTAssertThrowsError(try TrainingRun(recipe: bad, runDir: root + "/c", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("model.init_from") && "\(e)".contains("bad.safetensors") && "\(e)".contains("8-byte header"), "\(e)")
        }
    }
}
