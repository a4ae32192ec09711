import XCTest
import Foundation

/// qat train / eval / sweep / export notebook through the executable.
final class TrainCLITests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = NSTemporaryDirectory() + "qat-cli-train-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func recipe(steps: Int) throws -> String {
        let p = dir + "/tiny.yaml"
        try """
        name: tiny
        model: {backbone: mobilenet_v2, width: 0.25}
        data:
          cache: \(NSTemporaryDirectory())qat-training-tests-cache
          synth: {images: 40, size: 96, chip_size: 16, imbalance: 2}
          input_size: 16
        train: {steps: \(steps), batch: 8, log_every: 1}
        eval: {batch: 32}
        """.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func testRecipeAndRunDirectoryErrors() throws {
        let (c1, _, e1) = try runQAT(["train", dir + "/missing.yaml"])
        XCTAssertEqual(c1, 1); XCTAssertTrue(e1.contains("missing.yaml: recipe file not found"), e1)
        let r = try recipe(steps: 2)
        let (c2, _, e2) = try runQAT(["train", r, "--set", "train.optimizer.lrr=1"])
        XCTAssertEqual(c2, 1); XCTAssertTrue(e2.contains("did you mean 'train.optimizer.lr'"), e2)
        let (c3, _, e3) = try runQAT(["train", r, "--set", "quant.mode=int8"])
        XCTAssertEqual(c3, 1); XCTAssertTrue(e3.contains("quant.mode") && e3.contains("fp32, qat, ptq"), e3)
    }

    func testExistingRunDirectoryIsNeverOverwritten() throws {
        let r = try recipe(steps: 2)
        try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
        try "precious".write(toFile: dir + "/run/keep.txt", atomically: true, encoding: .utf8)
        let (c, _, e) = try runQAT(["train", r, "--run-dir", dir + "/run"])
        XCTAssertEqual(c, 1); XCTAssertTrue(e.contains("already exists; pass --resume"), e)
        XCTAssertEqual(try String(contentsOfFile: dir + "/run/keep.txt", encoding: .utf8), "precious")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/run"), ["keep.txt"])
    }

    /// SIGINT saves last.h5 and prints how to resume; --resume finishes the run; eval and export work on it.
    func testInterruptResumeEvalAndExport() throws {
        let r = try recipe(steps: 40)
        let run = dir + "/run"
        let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        let p = Process()
        p.executableURL = exe.deletingLastPathComponent().appendingPathComponent("qat")
        p.arguments = ["train", r, "--run-dir", run]
        let out = Pipe(); p.standardOutput = out; p.standardError = Pipe()
        try p.run()
        // Wait for the first logged step, then interrupt.
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if let t = try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8), t.contains("\"train\"") { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        p.interrupt()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, text)
        XCTAssertTrue(text.contains("Resume with:") && text.contains("--resume"), text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/checkpoints/last.h5"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/final.json"))

        let (c2, o2, e2) = try runQAT(["train", r, "--run-dir", run, "--resume"])
        XCTAssertEqual(c2, 0, e2)
        XCTAssertTrue(o2.contains("resumed"), o2)
        // stdout is a pipe, not a terminal: plain periodic progress lines instead of an in-place line.
        XCTAssertTrue(o2.contains("step 40/40 loss") && !o2.contains("\r"), o2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/final.json"))

        // Resuming the finished run runs nothing and appends no second final record.
        let finishedMetrics = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        let (c8, o8, e8) = try runQAT(["train", r, "--run-dir", run, "--resume"])
        XCTAssertEqual(c8, 0, e8)
        XCTAssertTrue(o8.contains("is already finished (final.json)") && o8.contains("nothing was run or written"), o8)
        XCTAssertEqual(try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8), finishedMetrics)
        XCTAssertEqual(finishedMetrics.components(separatedBy: "\"type\":\"final\"").count, 2)

        let (c3, o3, e3) = try runQAT(["eval", run + "/checkpoints/best.h5", "--split", "val"])
        XCTAssertEqual(c3, 0, e3)
        XCTAssertTrue(o3.contains("macro accuracy") && o3.contains("narrowbody-twin"), o3)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/checkpoints/best.val.metrics.json"))
        let (c4, _, e4) = try runQAT(["eval", run + "/checkpoints/best.h5", "--set", "model.backbone=resnet18"])
        XCTAssertEqual(c4, 1); XCTAssertTrue(e4.contains("error:"), e4)

        // Outputs never replace a checkpoint, recipe or metrics file (refused before any work).
        let best = try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoints/best.h5"))
        let (c6, _, e6) = try runQAT(["eval", run + "/checkpoints/best.h5", "--out", run + "/checkpoints/best.h5"])
        XCTAssertEqual(c6, 1); XCTAssertTrue(e6.contains("\(run)/checkpoints/best.h5: is a checkpoint") && e6.contains("nothing was written"), e6)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoints/best.h5")), best)
        let metrics = try Data(contentsOf: URL(fileURLWithPath: run + "/metrics.jsonl"))
        for target in ["metrics.jsonl", "recipe.resolved.yaml", "final.json", "checkpoints/last.h5"] {
            let (c7, _, e7) = try runQAT(["export", "notebook", run, "--out", run + "/" + target])
            XCTAssertEqual(c7, 1); XCTAssertTrue(e7.contains("\(run)/\(target): is a") && e7.contains("an output never replaces"), e7)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/metrics.jsonl")), metrics)

        let (c5, o5, e5) = try runQAT(["export", "notebook", run, "--out", dir + "/nb/run.ipynb", "--html"])
        XCTAssertEqual(c5, 0, e5)
        XCTAssertTrue(o5.contains("run.ipynb") && o5.contains("run.html"), o5)
        let nb = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/nb/run.ipynb"))) as? [String: Any]
        XCTAssertEqual(nb?["nbformat"] as? Int, 4)

        // `qat export CKPT --format ...` (the default `model` subcommand): every format, and its errors.
        for (format, file, says) in [("safetensors", "w.safetensors", "PyTorch names"), ("weights", "w.h5", "optimizer state"),
                                     ("onnx", "m.onnx", "opset 17")] {
            let (c, o, e) = try runQAT(["export", run + "/checkpoints/best.h5", "--format", format, "--out", dir + "/" + file])
            XCTAssertEqual(c, 0, e); XCTAssertTrue(o.contains(says), o)
        }
        let (c9, o9, e9) = try runQAT(["export", run + "/checkpoints/best.h5", "--format", "onnx", "--out", dir + "/r.onnx",
                                       "--reference", dir + "/ref", "--images", "3"])
        XCTAssertEqual(c9, 0, e9); XCTAssertTrue(o9.contains("reference: 3 test images"), o9)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/ref/input.f32")).count % (3 * 4), 0)
        let (c10, _, e10) = try runQAT(["export", run + "/checkpoints/best.h5", "--format", "onnx-qdq", "--out", dir + "/q.onnx"])
        XCTAssertEqual(c10, 1); XCTAssertTrue(e10.contains("FP32 checkpoint") && e10.contains("--format onnx"), e10)
        let (c11, _, e11) = try runQAT(["export", run + "/checkpoints/best.h5", "--format", "onnx", "--out", run + "/checkpoints/last.h5"])
        XCTAssertEqual(c11, 1); XCTAssertTrue(e11.contains("NAME.onnx"), e11)
        let (c12, _, e12) = try runQAT(["export", run + "/checkpoints/best.h5", "--format", "weights", "--out", run + "/checkpoints/last.h5"])
        XCTAssertEqual(c12, 1); XCTAssertTrue(e12.contains("is a checkpoint"), e12)
        let (c13, _, e13) = try runQAT(["export", run + "/checkpoints/best.h5", "--format", "tflite", "--out", dir + "/x"])
        XCTAssertNotEqual(c13, 0); XCTAssertTrue(e13.contains("safetensors") && e13.contains("onnx-qdq"), e13)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoints/best.h5")), best)
    }

    func testModelSummaryOfARecipe() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let (c, o, e) = try runQAT(["model", "summary", root.appendingPathComponent("recipes/chips/fp32.yaml").path, "--set", "model.width=0.25"])
        XCTAssertEqual(c, 0, e)
        XCTAssertTrue(o.contains("mobilenet_v2 x0.25, 12 classes, input 32 px") && o.contains("classifier.1"), o)
        let (c2, _, e2) = try runQAT(["model", "summary", dir + "/none.yaml"])
        XCTAssertEqual(c2, 1); XCTAssertTrue(e2.contains("recipe file not found"), e2)
    }
}
