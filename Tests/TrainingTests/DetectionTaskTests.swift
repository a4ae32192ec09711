import XCTest
import Foundation
import Kernels
import Checkpoint
import Datasets
import Evaluation
import Recipes
@testable import Training

/// A tiny detection recipe on a tiny synthetic benchmark (64-px scenes, shared cache).
func tinyDetectionRecipe(_ extra: String = "", overrides: [String] = []) throws -> Recipe {
    let cache = NSTemporaryDirectory() + "qat-training-tests-cache"
    return try Recipe.parse("""
    name: tiny-detector
    task: detection
    seed: 3
    model: {backbone: mobilenet_v2, width: 0.25}
    data:
      format: synth_coco
      cache: \(cache)
      synth: {images: 24, size: 64, imbalance: 2}
      input_size: 64
    detector:
      fpn: {channels: 8, levels: [3, 4, 5, 6]}
      head: {convs: 1}
      anchors: {sizes: [8, 16, 32, 64]}
      test: {score_threshold: 0.0, max_detections: 20}
    train:
      epochs: 2
      batch: 4
      optimizer: {name: sgd, lr: 0.01, momentum: 0.9}
      schedule: {name: cosine, warmup_steps: 2}
      clip_grad_norm: 10.0
      log_every: 2
    eval: {batch: 4}
    \(extra)
    """, overrides: overrides)
}

final class DetectionTaskTests: XCTestCase {
    /// Runs `r` into `root/b`, stopped after 3 steps and resumed: the final metrics, parameters, buffers
    /// (BN statistics, loss state) and optimizer state equal the uninterrupted run's in `root/a`.
    func assertInterruptedRunResumesBitIdentically(_ r: Recipe, root: String, uninterrupted fa: FinalReport,
                                                   file: StaticString = #filePath, line: UInt = #line) throws {
        let b = try TrainingRun(recipe: r, runDir: root + "/b", resume: false, quiet: true)
        b.stopAfterSteps = 3
        guard case .interrupted = try b.run() else { return XCTFail("expected an interruption", file: file, line: line) }
        let b2 = try TrainingRun(recipe: r, runDir: root + "/b", resume: true, quiet: true)
        guard case .finished(let fb) = try b2.run() else { return XCTFail("the resumed run did not finish", file: file, line: line) }
        XCTAssertEqual(fa.final, fb.final, file: file, line: line)
        let ca = try Checkpoint.load(from: root + "/a/checkpoints/last.h5"), cb = try Checkpoint.load(from: root + "/b/checkpoints/last.h5")
        XCTAssertEqual(ca.params, cb.params, file: file, line: line)
        XCTAssertEqual(ca.buffers, cb.buffers, file: file, line: line)
        XCTAssertEqual(ca.optimizer, cb.optimizer, file: file, line: line)
    }

    func testRunLogsLossTermsEvaluatesCOCOAndResumesBitIdentically() throws {
        let root = tempDir("det")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyDetectionRecipe(overrides: ["train.ema=0.9"])
        let a = try TrainingRun(recipe: r, runDir: root + "/a", resume: false, quiet: true)
        guard case .finished(let fa) = try a.run() else { return XCTFail() }
        let final = try XCTUnwrap(fa.final)
        for name in ["map", "map50", "map75", "agnostic_map50", "ar100"] { XCTAssertNotNil(final.values[name], name) }
        XCTAssertEqual(final.perClass["ap50"]?.count, 12)
        let lines = try String(contentsOfFile: root + "/a/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let train = try XCTUnwrap(lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.first { $0["type"] as? String == "train" })
        XCTAssertNotNil(train["loss_classification"]); XCTAssertNotNil(train["loss_bbox_regression"])

        // Run figures: PR curves per class and drawn predictions, embedded by the notebook export.
        let curves = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/a/curves.json"))) as! [String: Any]
        XCTAssertFalse((curves["series"] as! [[String: Any]]).isEmpty)
        let figures = try FileManager.default.contentsOfDirectory(atPath: root + "/a/figures").filter { $0.hasSuffix(".png") }
        XCTAssertEqual(figures.count, min(4, final.samples))
        let written = try NotebookExport.export(dir: root + "/a", out: root + "/nb.ipynb", html: true)
        let nb = try String(contentsOfFile: written[0], encoding: .utf8)
        XCTAssertTrue((nb.contains("image/png") || nb.contains("image\\/png")) && nb.contains("Precision-recall"), "notebook lacks the run figures")
        XCTAssertTrue(try String(contentsOfFile: written[1], encoding: .utf8).contains("data:image/png;base64,"))

        try assertInterruptedRunResumesBitIdentically(r, root: root, uninterrupted: fa)

        // qat eval: the task's report, and a COCO results file any COCO tool can score.
        let ckpt = root + "/a/checkpoints/best.h5"
        let e = try CheckpointEvaluation.run(checkpoint: ckpt, data: nil, split: "test", overrides: [], fp32: false, filesPrefix: root + "/eval")
        XCTAssertEqual(e.metrics, final)
        XCTAssertTrue(e.report.contains("Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]"), e.report)
        XCTAssertTrue(e.report.contains("class-agnostic AP50"))
        XCTAssertEqual(e.files, [root + "/eval.results.json"])
        let task = try makeTask(r)
        let gt = (task as! DetectionTask).data.groundTruth("test")
        let results = try COCOResults.load(root + "/eval.results.json", groundTruth: gt)
        XCTAssertFalse(results.isEmpty)
        XCTAssertEqual(try COCOEval.evaluate(gt, results).stats[1], final.values["map50"]!, accuracy: 1e-12)

        // qat predict: drawn PNGs (same size as the inputs) and a results file.
        let images = (task as! DetectionTask).data.root + "/images"
        let files = try FileManager.default.contentsOfDirectory(atPath: images).sorted().prefix(2).map { images + "/" + $0 }
        let p = try Prediction.run(checkpoint: ckpt, inputs: files, out: root + "/pred", score: 0.0, log: { _ in })
        XCTAssertEqual(p.images.count, 2)
        for (src, out) in zip(files, p.images) {
            let a = try ImageCodec.decode(file: src), b = try ImageCodec.decode(file: out)
            XCTAssertEqual([a.width, a.height], [b.width, b.height])
            XCTAssertNotEqual(a.pixels, b.pixels)   // boxes were drawn
        }
        XCTAssertGreaterThan(p.detections, 0)
        XCTAssertThrowsError(try Prediction.run(checkpoint: ckpt, inputs: files, out: images, score: 0.3, log: { _ in })) { e in
            XCTAssertTrue("\(e)".contains("overwrite an input image"), "\(e)")
        }
        XCTAssertThrowsError(try Prediction.run(checkpoint: root + "/a/checkpoints", inputs: files, out: root + "/p2", score: 0.3, log: { _ in }))
    }

    /// The thesis' design through the run loop: its loss names are logged, the stateful losses resume
    /// bit-identically, evaluation audits the noisy training labels against the benchmark's true ones,
    /// and eval / predict rebuild it from the checkpoint's recipe.
    func testDecoupledDesignTrainsResumesAndAuditsNoisyLabels() throws {
        let root = tempDir("det-decoupled")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyDetectionRecipe(overrides: [
            "data.synth.label_noise=0.4", "detector.design=decoupled", "detector.assigner.name=atss", "detector.objectness.loss=ghmc",
            "detector.type_loss.name=eqlv2", "detector.support.weight=0.5", "detector.label_noise.method=small_loss",
            "detector.label_noise.warmup_steps=2", "detector.fine_grained.hidden=16"])
        let a = try TrainingRun(recipe: r, runDir: root + "/a", resume: false, quiet: true)
        guard case .finished(let fa) = try a.run() else { return XCTFail() }
        let final = try XCTUnwrap(fa.final)
        for name in ["map50", "agnostic_map50", "noise_flag_precision", "noise_flag_recall", "noise_wrong_labels"] {
            XCTAssertNotNil(final.values[name], name)
        }
        XCTAssertGreaterThan(final.values["noise_wrong_labels"]!, 0)
        let lines = try String(contentsOfFile: root + "/a/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let train = try XCTUnwrap(lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.first { $0["type"] as? String == "train" })
        for k in ["loss_objectness", "loss_bbox_regression", "loss_type", "loss_support"] { XCTAssertNotNil(train[k], k) }

        try assertInterruptedRunResumesBitIdentically(r, root: root, uninterrupted: fa)

        let ckpt = root + "/a/checkpoints/best.h5"
        let e = try CheckpointEvaluation.run(checkpoint: ckpt, data: nil, split: "test", overrides: [], fp32: false, filesPrefix: root + "/eval")
        XCTAssertEqual(e.metrics, final)
        let images = (try makeTask(r) as! DetectionTask).data.root + "/images"
        let files = try FileManager.default.contentsOfDirectory(atPath: images).sorted().prefix(1).map { images + "/" + $0 }
        XCTAssertEqual(try Prediction.run(checkpoint: ckpt, inputs: files, out: root + "/pred", score: 0.0, log: { _ in }).images.count, 1)
    }

    func testQuantizedDetectorTrainsFromFP32AndBadSettingsAreNamed() throws {
        let root = tempDir("detq")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fp = try tinyDetectionRecipe(overrides: ["train.epochs=1"])
        _ = try TrainingRun(recipe: fp, runDir: root + "/fp", resume: false, quiet: true).run()
        let q = try tinyDetectionRecipe("quant: {mode: qat, init_from: \(root)/fp/checkpoints/best.h5}", overrides: ["train.epochs=1"])
        let run = try TrainingRun(recipe: q, runDir: root + "/q", resume: false, quiet: true)
        let h = try XCTUnwrap(run.handle)
        XCTAssertTrue(h.quantizers.map(\.0).contains("fpn.merges.0.addQuantizer"))
        XCTAssertTrue(h.quantizedLayers.contains("classificationHead.predictor"))
        guard case .finished(let f) = try run.run() else { return XCTFail() }
        XCTAssertNotNil(f.final?.values["map50"])
        XCTAssertThrowsError(try TrainingRun(recipe: try tinyDetectionRecipe(overrides: ["data.input_size=80"]), runDir: root + "/bad", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("multiple of 32"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/bad"))
        XCTAssertThrowsError(try TrainingRun(recipe: try tinyDetectionRecipe(overrides: ["detector.test.input_size=80"]), runDir: root + "/bad2", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("detector.test.input_size 80") && "\(e)".contains("multiple of 32"), "\(e)")
        }
    }

    /// Evaluation letterboxes to detector.test.input_size: other detections, still in original image
    /// coordinates (inside the 64-px scenes).
    func testEvaluationUsesTheTestInputSize() throws {
        let task = try XCTUnwrap(try makeTask(try tinyDetectionRecipe(overrides: ["detector.test.input_size=96"])) as? DetectionTask)
        XCTAssertEqual(task.testLoaderConfig(batch: 2).size, 96)
        let plain = try XCTUnwrap(try makeTask(try tinyDetectionRecipe()) as? DetectionTask)
        XCTAssertEqual(plain.testLoaderConfig(batch: 2).size, 64)
        var rng = RNG(seed: 1)
        let model = try DetectionTask.makeDetector(task.recipe, classes: task.classes.count, rng: &rng)
        let big = try task.detect(model: model, split: "val"), small = try plain.detect(model: model, split: "val")
        XCTAssertFalse(big.isEmpty)
        XCTAssertNotEqual(big.map(\.score), small.map(\.score))
        for d in big { XCTAssertLessThanOrEqual(d.box.x + d.box.width, 64.001); XCTAssertLessThanOrEqual(d.box.y + d.box.height, 64.001) }
    }

    /// A classifier checkpoint initialises the detector's backbone (its classifier left out).
    func testInitPathsMapAClassifierOntoTheBackbone() throws {
        let task = try makeTask(try tinyDetectionRecipe())
        XCTAssertEqual(task.initPath(forCheckpointPath: "features.3.conv.0.0.weight"), "backbone.features.3.conv.0.0.weight")
        XCTAssertNil(task.initPath(forCheckpointPath: "classifier.1.weight"))
        XCTAssertEqual(task.initPath(forCheckpointPath: "fpn.p6.weight"), "fpn.p6.weight")
    }
}

final class DetectionDataTests: XCTestCase {
    /// DOTA splits: one category list from train, difficult objects as crowd regions of their own type
    /// in the ground truth (neither found nor missed), patches as COCO images.
    func testDOTASplitsBecomeCOCOGroundTruth() throws {
        let root = tempDir("dota")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for split in ["train", "val", "test"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(split)/images", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: "\(root)/\(split)/labelTxt", withIntermediateDirectories: true)
            try ImageCodec.writePNG(Image(width: 96, height: 64, channels: 3, fill: 90), to: "\(root)/\(split)/images/P1.png")
            try """
            imagesource:test
            gsd:null
            10 10 30 10 30 20 10 20 plane 0
            50 30 70 30 70 50 50 50 ship 1
            """.write(toFile: "\(root)/\(split)/labelTxt/P1.txt", atomically: true, encoding: .utf8)
        }
        var spec = Recipe.DataSpec()
        spec.format = "dota"; spec.path = root; spec.dota.tile = 128; spec.dota.gap = 32
        let d = try DetectionData.open(spec)
        XCTAssertEqual(d.classes, ["plane", "ship"])
        XCTAssertEqual(d.categoryIds, [1, 2])
        let gt = d.groundTruth("test")
        XCTAssertEqual(gt.images.count, d.test.count)
        let plane = try XCTUnwrap(gt.annotations.first { $0.categoryId == 1 })
        XCTAssertEqual(plane.bbox, [10, 10, 20, 10])
        XCTAssertEqual(plane.iscrowd ?? 0, 0)
        let ship = try XCTUnwrap(gt.annotations.first { $0.categoryId == 2 })
        XCTAssertEqual(ship.iscrowd, 1)          // difficult: a crowd region of its own type
        let sample = try d.test.sample(0)
        XCTAssertEqual(sample.boxes.count, 1)
        XCTAssertEqual(sample.ignoreBoxes.count, 1)
        // A missing split is named.
        try FileManager.default.removeItem(atPath: "\(root)/val")
        XCTAssertThrowsError(try DetectionData.open(spec)) { e in XCTAssertTrue("\(e)".contains("val"), "\(e)") }
    }
}
