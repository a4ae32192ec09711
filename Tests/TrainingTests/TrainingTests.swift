import XCTest
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Kernels
import Checkpoint
import Recipes
@testable import Training

/// A tiny recipe on a tiny synthetic benchmark (generated once per machine into a shared cache).
func tinyRecipe(_ extra: String = "", file: String = "(test)", overrides: [String] = []) throws -> Recipe {
    let cache = NSTemporaryDirectory() + "qat-training-tests-cache"
    return try Recipe.parse("""
    name: tiny
    seed: 1
    model: {backbone: mobilenet_v2, width: 0.25, dropout: 0.1}
    data:
      cache: \(cache)
      synth: {images: 40, size: 96, chip_size: 16, imbalance: 2}
      input_size: 16
    train:
      epochs: 2
      batch: 8
      optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
      schedule: {name: cosine, warmup_steps: 2}
      log_every: 2
    eval: {batch: 32}
    \(extra)
    """, file: file, overrides: overrides)
}

func tempDir(_ tag: String) -> String {
    let d = NSTemporaryDirectory() + "qat-\(tag)-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

final class TrainingRunTests: XCTestCase {
    func testRunDirectoryLayoutMetricsAndFinalReport() throws {
        let root = tempDir("layout")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe()
        let run = try TrainingRun(recipe: r, runDir: nil, resume: false, runsRoot: root, quiet: true)
        XCTAssertEqual(run.dir, root + "/tiny/1")
        guard case .finished(let f) = try run.run() else { return XCTFail("not finished") }
        for file in ["recipe.resolved.yaml", "metrics.jsonl", "train.log", "checkpoints/last.h5", "checkpoints/best.h5", "final.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run.dir + "/" + file), file)
        }
        XCTAssertEqual(try Recipe.parse(String(contentsOfFile: run.dir + "/recipe.resolved.yaml", encoding: .utf8)), r)
        let lines = try String(contentsOfFile: run.dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let types = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["type"] as? String }
        XCTAssertEqual(types.filter { $0 == "eval" }.count, 2)
        XCTAssertEqual(types.last, "final")
        XCTAssertTrue(types.contains("train"))
        XCTAssertEqual(f.steps, run.totalSteps)
        XCTAssertEqual(f.final?.split, "test")
        XCTAssertEqual(f.classes.count, 12)
        let decoded = try JSONCoding.decoder().decode(FinalReport.self, from: Data(contentsOf: URL(fileURLWithPath: run.dir + "/final.json")))
        XCTAssertEqual(decoded, f)
        // A second run of the same recipe gets the next number; an existing directory needs --resume.
        let second = try TrainingRun(recipe: r, runDir: nil, resume: false, runsRoot: root, quiet: true)
        XCTAssertEqual(second.dir, root + "/tiny/2")
        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: run.dir, resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("already exists; pass --resume"), "\(e)")
        }
        var changed = r; changed.train.epochs = 3
        XCTAssertThrowsError(try TrainingRun(recipe: changed, runDir: run.dir, resume: true, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("recipe differs"), "\(e)")
        }
        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: root + "/empty", resume: true, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("nothing to resume"), "\(e)")
        }
        // The failed attempts created nothing.
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/empty"))
    }

    /// Interrupt after 3 steps, resume in a new TrainingRun: the same bits as an uninterrupted run, for a
    /// QAT recipe with activation quantization dropout (its RNG), classifier dropout and an EMA.
    func testResumeIsBitIdentical() throws {
        let root = tempDir("resume")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe("""
        quant: {mode: qat, weight: {bits: 4}, activation: {bits: 4}, dropout: {p: 0.5, apply: activations}}
        """, overrides: ["train.ema=0.9"])
        let a = try TrainingRun(recipe: r, runDir: root + "/a", resume: false, quiet: true)
        guard case .finished(let fa) = try a.run() else { return XCTFail() }
        let b = try TrainingRun(recipe: r, runDir: root + "/b", resume: false, quiet: true)
        b.stopAfterSteps = 3
        guard case .interrupted(let step, _) = try b.run() else { return XCTFail("expected an interruption") }
        XCTAssertEqual(step, 3)
        let b2 = try TrainingRun(recipe: r, runDir: root + "/b", resume: true, quiet: true)
        guard case .finished(let fb) = try b2.run() else { return XCTFail() }
        XCTAssertEqual(fa.final, fb.final)
        XCTAssertEqual(fa.best, fb.best)
        let ca = try Checkpoint.load(from: root + "/a/checkpoints/last.h5"), cb = try Checkpoint.load(from: root + "/b/checkpoints/last.h5")
        XCTAssertFalse(ca.quant.isEmpty)
        XCTAssertEqual(ca.params, cb.params)
        XCTAssertEqual(ca.buffers, cb.buffers)
        XCTAssertEqual(ca.quant, cb.quant)
        XCTAssertEqual(ca.optimizer, cb.optimizer)
        XCTAssertEqual(ca.moduleRNG, cb.moduleRNG)
        // metrics.jsonl of the resumed run holds each step once.
        let steps = try String(contentsOfFile: root + "/b/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]).flatMap { $0["type"] as? String == "train" ? $0["step"] as? Int : nil }
        }
        XCTAssertEqual(steps, Array(Set(steps)).sorted())
    }

    func testQATFromFP32CheckpointPTQAndEvaluation() throws {
        let root = tempDir("qat")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // lr 0.01: at the tiny recipe's 0.05 the 16-px model diverges (loss 2.5 -> 11 over 34 steps, 1x1
        // maps at stride 32), and QAT with folded BN from that checkpoint overflows its gradients.
        let fp = try tinyRecipe(overrides: ["train.optimizer.lr=0.01"])
        let run = try TrainingRun(recipe: fp, runDir: root + "/fp32", resume: false, quiet: true)
        guard case .finished = try run.run() else { return XCTFail() }
        let best = root + "/fp32/checkpoints/best.h5"

        // Clipped: from this barely trained model, ranges calibrated on the activations QAT trains with keep the
        // network alive (with the running statistics' narrow ranges it sat at loss ln 12, every gradient near
        // zero), and a folded BN's weight-scale gradients then overflow within the epoch unless clipped.
        let qat = try tinyRecipe(overrides: ["train.optimizer.lr=0.01", "quant.mode=qat", "quant.init_from=\(best)", "train.epochs=1", "quant.fold_bn=true",
                                             "train.clip_grad_norm=5"])
        let q = try TrainingRun(recipe: qat, runDir: root + "/qat", resume: false, quiet: true)
        guard case .finished(let fq) = try q.run() else { return XCTFail() }
        // qat eval rebuilds the quantized model from the stored recipe and reproduces the run's final numbers.
        let e = try CheckpointEvaluation.run(checkpoint: root + "/qat/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false)
        XCTAssertTrue(e.quantized)
        XCTAssertEqual(e.metrics, fq.final)
        let ef = try CheckpointEvaluation.run(checkpoint: root + "/qat/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: true)
        XCTAssertFalse(ef.quantized)
        XCTAssertEqual(ef.metrics.samples, e.metrics.samples)
        XCTAssertTrue(CheckpointEvaluation.table(e, checkpoint: "x").contains("macro accuracy"))
        // The int8 engine on the QAT checkpoint (BN folded in QAT): codes against the fake-quant model.
        let e8 = try CheckpointEvaluation.run(checkpoint: root + "/qat/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false,
                                              engine: .int8(compare: true))
        let c8 = try XCTUnwrap(e8.comparison)
        XCTAssertGreaterThanOrEqual(c8.layerwise.fraction, 0.999, "\(c8.layerwise.perDifference)")
        XCTAssertLessThanOrEqual(c8.layerwise.maxDifference, 1)
        XCTAssertEqual(e8.metrics.samples, e.metrics.samples)
        XCTAssertNotNil(e8.metrics.values["int8_codes_equal_layerwise"])
        XCTAssertTrue(CheckpointEvaluation.table(e8, checkpoint: "x").contains("layerwise"))
        XCTAssertThrowsError(try CheckpointEvaluation.run(checkpoint: best, data: nil, split: "test", overrides: [], fp32: false,
                                                          engine: .int8(compare: false))) { err in
            XCTAssertTrue("\(err)".contains("has float weights only"), "\(err)")
        }

        // BatchNorm re-estimation after QAT: best.h5 gets the re-estimated statistics (its weights are
        // the last step's, as without it), the re-estimated val metric is recorded and becomes `best`, and
        // qat eval of best.h5 reproduces the final numbers.
        let bnr = try tinyRecipe(overrides: ["train.optimizer.lr=0.01", "quant.mode=qat", "quant.init_from=\(best)", "train.epochs=1",
                                             "quant.bn_reestimation_batches=3"])
        XCTAssertTrue(bnr.resolvedYAML().contains("bn_reestimation_batches: 3"))
        XCTAssertFalse(qat.resolvedYAML().contains("bn_reestimation"))
        guard case .finished(let fb) = try TrainingRun(recipe: bnr, runDir: root + "/bnr", resume: false, quiet: true).run() else { return XCTFail() }
        XCTAssertTrue(try String(contentsOfFile: root + "/bnr/train.log", encoding: .utf8).contains("bn re-estimation: "))
        let cb = try Checkpoint.load(from: root + "/bnr/checkpoints/best.h5"), cl = try Checkpoint.load(from: root + "/bnr/checkpoints/last.h5")
        XCTAssertEqual(TrainingRun.state(cb)["bn_reestimated"] as? Bool, true)
        XCTAssertNil(TrainingRun.state(cl)["bn_reestimated"])
        XCTAssertEqual(cb.params, cl.params)
        let means = cb.buffers.keys.filter { $0.hasSuffix("runningMean") }
        XCTAssertFalse(means.isEmpty)
        XCTAssertTrue(means.contains { cb.buffers[$0] != cl.buffers[$0] }, "no running statistics changed")
        let records = try String(contentsOfFile: root + "/bnr/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let reest = try XCTUnwrap(records.first { $0["bn_reestimated"] as? Bool == true })
        XCTAssertEqual(reest["accuracy"] as? Double, fb.best)
        let eb = try CheckpointEvaluation.run(checkpoint: root + "/bnr/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false)
        XCTAssertEqual(eb.metrics, fb.final)
        XCTAssertThrowsError(try tinyRecipe(overrides: ["quant.bn_reestimation_batches=3"])) { e in
            XCTAssertTrue("\(e)".contains("quant.bn_reestimation_batches") && "\(e)".contains("qat or ptq"), "\(e)")
        }
        XCTAssertThrowsError(try tinyRecipe(overrides: ["quant.mode=qat", "quant.bn_reestimation_batches=0"])) { e in
            XCTAssertTrue("\(e)".contains("quant.bn_reestimation_batches"), "\(e)")
        }

        let ptq = try tinyRecipe(overrides: ["quant.mode=ptq", "quant.init_from=\(best)", "train.epochs=0", "quant.weight.bits=4",
                                             "quant.activation.bits=4", "quant.equalize=true", "quant.bias_correction=true"])
        let p = try TrainingRun(recipe: ptq, runDir: root + "/ptq", resume: false, quiet: true)
        guard case .finished(let fp4) = try p.run() else { return XCTFail() }
        XCTAssertEqual(fp4.steps, 0)
        let ep = try CheckpointEvaluation.run(checkpoint: root + "/ptq/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false)
        XCTAssertEqual(ep.metrics, fp4.final)
        // PTQ with AdaRound: the learned rounding is in the saved weights, so qat eval reproduces the run.
        let ada = try tinyRecipe(overrides: ["quant.mode=ptq", "quant.init_from=\(best)", "train.epochs=0", "quant.weight.bits=4",
                                             "quant.activation.bits=8", "quant.adaround.enabled=true", "quant.adaround.iterations=20", "quant.adaround.batches=2"])
        XCTAssertTrue(ada.resolvedYAML().contains("adaround:"))
        XCTAssertFalse(ptq.resolvedYAML().contains("adaround"))
        guard case .finished(let fa) = try TrainingRun(recipe: ada, runDir: root + "/ada", resume: false, quiet: true).run() else { return XCTFail() }
        XCTAssertTrue(try String(contentsOfFile: root + "/ada/train.log", encoding: .utf8).contains("adaround: "))
        let ea = try CheckpointEvaluation.run(checkpoint: root + "/ada/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false)
        XCTAssertEqual(ea.metrics, fa.final)
        XCTAssertThrowsError(try tinyRecipe(overrides: ["quant.mode=qat", "quant.adaround.enabled=true"])) { e in
            XCTAssertTrue("\(e)".contains("quant.adaround.enabled") && "\(e)".contains("ptq"), "\(e)")
        }

        // Weights only / activations only (quant.{weight,activation}.enabled: false): only those quantizers
        // exist, the checkpoint reproduces the run, and disabling both is an error naming the key.
        for (tag, off, kept) in [("wonly", "activation", "weightQuantizer"), ("aonly", "weight", "inputQuantizer")] {
            let r = try tinyRecipe(overrides: ["train.optimizer.lr=0.01", "quant.mode=qat", "quant.init_from=\(best)", "train.epochs=1",
                                               "quant.weight.bits=4", "quant.activation.bits=4", "quant.\(off).enabled=false"])
            XCTAssertTrue(r.resolvedYAML().contains("enabled: false"))
            guard case .finished(let f) = try TrainingRun(recipe: r, runDir: root + "/" + tag, resume: false, quiet: true).run() else { return XCTFail() }
            let c = try Checkpoint.load(from: root + "/\(tag)/checkpoints/best.h5")
            XCTAssertFalse(c.quant.isEmpty)
            XCTAssertTrue(c.quant.keys.allSatisfy { $0.contains(kept) || (off == "weight" && $0.contains("addQuantizer")) }, "\(c.quant.keys.sorted().prefix(4))")
            let e = try CheckpointEvaluation.run(checkpoint: root + "/\(tag)/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false)
            XCTAssertEqual(e.metrics, f.final)
        }
        XCTAssertFalse(qat.resolvedYAML().contains("enabled"))
        XCTAssertThrowsError(try tinyRecipe(overrides: ["quant.mode=qat", "quant.weight.enabled=false", "quant.activation.enabled=false"])) { e in
            XCTAssertTrue("\(e)".contains("quant.weight.enabled") && "\(e)".contains("nothing would be quantized"), "\(e)")
        }

        // Distillation from the FP32 checkpoint: the loss has both terms, and qat eval reproduces the run.
        let kd = try tinyRecipe(overrides: ["train.optimizer.lr=0.01", "quant.mode=qat", "quant.init_from=\(best)", "train.epochs=1",
                                            "train.distill.teacher=\(best)", "train.distill.weight=0.7", "train.distill.temperature=2"])
        XCTAssertTrue(kd.resolvedYAML().contains("distill:"))
        XCTAssertFalse(qat.resolvedYAML().contains("distill"))
        guard case .finished(let fk) = try TrainingRun(recipe: kd, runDir: root + "/kd", resume: false, quiet: true).run() else { return XCTFail() }
        XCTAssertTrue(try String(contentsOfFile: root + "/kd/metrics.jsonl", encoding: .utf8).contains("loss_distillation"))
        let ek = try CheckpointEvaluation.run(checkpoint: root + "/kd/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false)
        XCTAssertEqual(ek.metrics, fk.final)
        let noTeacher = try tinyRecipe(overrides: ["train.distill.teacher=\(root)/missing.h5"])
        XCTAssertThrowsError(try TrainingRun(recipe: noTeacher, runDir: root + "/kd-missing", resume: false, quiet: true).run()) { e in
            XCTAssertTrue("\(e)".contains("train.distill.teacher") && "\(e)".contains("does not exist"), "\(e)")
        }
        XCTAssertThrowsError(try tinyRecipe(overrides: ["train.distill.weight=0.5"])) { e in
            XCTAssertTrue("\(e)".contains("train.distill.teacher"), "\(e)")
        }
        // Errors: a checkpoint of another model, a missing checkpoint, init_from of another model.
        XCTAssertThrowsError(try CheckpointEvaluation.run(checkpoint: best, data: nil, split: "test", overrides: ["model.width=1.0"], fp32: false)) { e in
            XCTAssertTrue("\(e)".contains("shape mismatch"), "\(e)")
        }
        XCTAssertThrowsError(try CheckpointEvaluation.run(checkpoint: root + "/none.h5", data: nil, split: "test", overrides: [], fp32: false))
        let wrong = try tinyRecipe(overrides: ["quant.mode=qat", "quant.init_from=\(best)", "model.backbone=mobilenet_v1"])
        XCTAssertThrowsError(try TrainingRun(recipe: wrong, runDir: root + "/wrong", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("not a checkpoint of this model"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/wrong"))
    }

    func testNonFiniteLossesStopTheRunWithAClearMessage() throws {
        let root = tempDir("nan")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe(overrides: ["train.optimizer.lr=1e30", "train.max_nonfinite=2", "train.schedule.warmup_steps=0"])
        let run = try TrainingRun(recipe: r, runDir: root + "/r", resume: false, quiet: true)
        XCTAssertThrowsError(try run.run()) { e in
            XCTAssertTrue("\(e)".contains("non-finite steps in a row"), "\(e)")
            XCTAssertTrue("\(e)".contains("no checkpoint was written"), "\(e)")
        }
        let lines = try String(contentsOfFile: root + "/r/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(lines.contains("\"nonfinite\""))
    }

    func testBadDataPathIsReported() throws {
        let r = try tinyRecipe(overrides: ["data.format=hdf5_chips", "data.path=/nonexistent/chips"])
        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: tempDir("bad") + "/r", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/chips/train.h5 does not exist"), "\(e)")
        }
    }
}

/// base.yaml (a tiny recipe) and sweep.yaml with `body` in `root`; returns the sweep's path.
func writeSweep(_ root: String, _ body: String) throws -> String {
    let cache = NSTemporaryDirectory() + "qat-training-tests-cache"
    try """
    name: tiny
    model: {backbone: mobilenet_v2, width: 0.25}
    data: {cache: \(cache), synth: {images: 40, size: 96, chip_size: 16, imbalance: 2}, input_size: 16}
    train: {steps: 2, batch: 8, log_every: 1}
    eval: {batch: 32, final_split: val}
    """.write(toFile: root + "/base.yaml", atomically: true, encoding: .utf8)
    try body.write(toFile: root + "/sweep.yaml", atomically: true, encoding: .utf8)
    return root + "/sweep.yaml"
}

final class SweepTests: XCTestCase {

    /// A variant's own grid replaces the sweep's: a baseline at one point only, or none with {}.
    func testVariantGridReplacesTheSweepGrid() throws {
        let root = tempDir("sweep-vgrid")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: vgrid
        base: base.yaml
        out: \(root)/out
        seeds: [0]
        grid: {train.optimizer.lr: [0.01, 0.05]}
        variants:
          - {name: all}
          - {name: one, grid: {train.optimizer.lr: [0.2]}}
          - {name: none, grid: {}}
        """)
        let s = try Sweep.load(path)
        XCTAssertEqual(s.cells().map(\.label), ["all-lr=0.01/seed0", "all-lr=0.05/seed0", "one-lr=0.2/seed0", "none/seed0"])
        XCTAssertEqual(try s.recipe(for: s.cells()[2]).train.optimizer.lr, 0.2)
        let bad = try writeSweep(root, """
        base: base.yaml
        variants:
          - {name: x, grid: {train.optimizer.lr: []}}
        """)
        XCTAssertThrowsError(try Sweep.load(bad)) { XCTAssertTrue("\($0)".contains("variants[0].grid.train.optimizer.lr"), "\($0)") }
    }

    func testGridVariantsSeedsShardsSkipAndCollect() throws {
        let root = tempDir("sweep")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: grid
        base: base.yaml
        out: \(root)/out
        seeds: [0, 1]
        grid: {train.optimizer.lr: [0.01, 0.05]}
        variants:
          - {name: fp32, set: {quant.mode: fp32}}
          - {name: ptq4, set: {quant.mode: ptq, quant.weight.bits: 4, quant.init_from: "{out}/fp32{grid}/seed{seed}/checkpoints/best.h5", train.steps: 0}}
        """)
        let s = try Sweep.load(path)
        let cells = s.cells()
        XCTAssertEqual(cells.count, 8)
        XCTAssertEqual(cells.map(\.label).prefix(5), ["fp32-lr=0.01/seed0", "fp32-lr=0.01/seed1", "fp32-lr=0.05/seed0", "fp32-lr=0.05/seed1", "ptq4-lr=0.01/seed0"])
        XCTAssertEqual(try s.recipe(for: cells[4]).quant.initFrom, "\(root)/out/fp32-lr=0.01/seed0/checkpoints/best.h5")
        XCTAssertEqual(try s.recipe(for: cells[7]).train.optimizer.lr, 0.05)
        XCTAssertEqual(try s.recipe(for: cells[7]).seed, 1)
        // Shards: every N-th cell, together exactly all cells.
        XCTAssertEqual(s.cells(shard: (2, 3)).map(\.index), [1, 4, 7])
        let union = (1...3).flatMap { s.cells(shard: ($0, 3)).map(\.index) }.sorted()
        XCTAssertEqual(union, Array(0..<8))
        XCTAssertThrowsError(try Sweep.parseShard("0/3")); XCTAssertThrowsError(try Sweep.parseShard("4/3")); XCTAssertThrowsError(try Sweep.parseShard("1-3"))
        XCTAssertTrue(try Sweep.parseShard("3/3") == (3, 3))

        // Two shards at once (as two machines would): shard 2's PTQ cells wait for shard 1's FP32 cells.
        var s2v = s; s2v.waitInterval = 0.05
        let s2 = s2v
        let queue = DispatchQueue(label: "shard2")
        let group = DispatchGroup()
        nonisolated(unsafe) var r2: (ran: Int, skipped: Int, interrupted: Bool, failed: [String])? = nil
        queue.async(group: group) { r2 = try? s2.run(shard: (2, 2)) { _ in } }
        let r1 = try s2.run(shard: (1, 2)) { _ in }
        group.wait()
        XCTAssertEqual(r1.ran, 4); XCTAssertEqual(r2?.ran, 4)
        // Shard 2 holds fp32 cells 1, 3 and PTQ cells 5, 7; cell 5 needs cell 0 of shard 1. Had it not
        // waited, its init_from would have been missing and the shard would have failed (r2 nil).
        let again = try s.run(shard: nil) { _ in }
        XCTAssertEqual(again.ran, 0); XCTAssertEqual(again.skipped, 8)
        let (rows, missing) = try s.collect()
        XCTAssertTrue(missing.isEmpty, "\(missing)")
        XCTAssertEqual(rows.count, 4)
        XCTAssertEqual(rows.map(\.seeds), [2, 2, 2, 2])
        XCTAssertEqual(rows.first { $0.variant == "ptq4" }?.weightBits, 4)
        XCTAssertEqual(rows.first { $0.variant == "fp32" }?.weightBits, 32)
        for f in ["summary.csv", "summary.md", "summary.json"] { XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/out/" + f)) }
        let csv = try String(contentsOfFile: root + "/out/summary.csv", encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 5)
        // Every metric the cells report, summarised by name (final_split val here), the task's first.
        XCTAssertTrue(csv.hasPrefix("variant,grid,mode,weight_bits,activation_bits,seeds,val_accuracy_mean,val_accuracy_std,val_macro_accuracy_mean,val_macro_accuracy_std,val_loss_mean,val_loss_std,val_best_mean,seconds_mean\n"), csv)
        XCTAssertEqual(Set(rows[0].metrics.keys), ["accuracy", "macro_accuracy", "loss"])
        XCTAssertEqual(rows[0].metric, "accuracy")
        XCTAssertEqual(rows[0].mean, rows[0].metrics["accuracy"]?.mean)
        XCTAssertEqual(rows[0].perClass["accuracy"]?.count, 12)
        let finals = try rows[0].dirs.map { try JSONCoding.decoder().decode(FinalReport.self, from: Data(contentsOf: URL(fileURLWithPath: $0 + "/final.json"))).final! }
        XCTAssertEqual(rows[0].metrics["macro_accuracy"]?.mean ?? 0, (finals[0]["macro_accuracy"]! + finals[1]["macro_accuracy"]!) / 2, accuracy: 1e-12)
        XCTAssertTrue(try String(contentsOfFile: root + "/out/summary.md", encoding: .utf8).contains("| accuracy (%) | macro accuracy (%) | loss | best val (%) |"))

        // Export the sweep and one run as notebooks.
        let written = try NotebookExport.export(dir: root + "/out", out: root + "/nb/sweep.ipynb", html: true)
        XCTAssertEqual(written.count, 2)
        try checkNotebook(root + "/nb/sweep.ipynb", plots: 3)
        XCTAssertTrue(try String(contentsOfFile: root + "/nb/sweep.html", encoding: .utf8).contains("<svg"))
        // Summary and plots first; the sweep file and resolved recipes last, folded.
        func cellSources(_ path: String) throws -> [(String, [String: Any])] {
            let nb = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
            return (nb["cells"] as! [[String: Any]]).map { c -> (String, [String: Any]) in
                (((c["source"] as? [String]) ?? []).joined(), (c["metadata"] as? [String: Any]) ?? [:])
            }
        }
        let sweepCells = try cellSources(root + "/nb/sweep.ipynb")
        let summaryAt = try XCTUnwrap(sweepCells.firstIndex { $0.0.contains("| accuracy (%) |") })
        let lastPlot = try XCTUnwrap(sweepCells.lastIndex { $0.0.contains("plt.") })
        let recipes = sweepCells.indices.filter { sweepCells[$0].0.hasPrefix("## Resolved recipe of") || sweepCells[$0].0.hasPrefix("## Sweep file") }
        XCTAssertEqual(recipes.count, 3)   // the sweep file and one recipe per variant (fp32, ptq4)
        XCTAssertLessThan(summaryAt, lastPlot)
        XCTAssertTrue(recipes.allSatisfy { $0 > lastPlot }, "recipes before plots: \(recipes) vs \(lastPlot)")
        XCTAssertTrue(recipes.allSatisfy { (sweepCells[$0].1["jupyter"] as? [String: Any])?["source_hidden"] as? Bool == true })
        let page = try String(contentsOfFile: root + "/nb/sweep.html", encoding: .utf8)
        let lastSVG = try XCTUnwrap(page.range(of: "</svg>", options: .backwards)).upperBound
        let firstDetails = try XCTUnwrap(page.range(of: "<details><summary>Sweep file</summary>")).lowerBound
        XCTAssertLessThan(lastSVG, firstDetails)
        XCTAssertLessThan(try XCTUnwrap(page.range(of: "<table>")).lowerBound, try XCTUnwrap(page.range(of: "<svg")).lowerBound)
        _ = try NotebookExport.export(dir: cells[0].dir, out: root + "/nb/run.ipynb", html: false)
        try checkNotebook(root + "/nb/run.ipynb", plots: 3)
        let runCells = try cellSources(root + "/nb/run.ipynb")
        XCTAssertTrue(runCells.last?.0.hasPrefix("## Recipe (resolved)") == true)
        XCTAssertThrowsError(try NotebookExport.export(dir: root, out: root + "/x.ipynb", html: false)) { e in
            XCTAssertTrue("\(e)".contains("neither a run directory"), "\(e)")
        }
    }

    /// nbformat 4 structure: top-level keys, cells with ids and list-of-lines sources, code cells with
    /// outputs, SVG display data that parses as XML.
    func checkNotebook(_ path: String, plots: Int) throws {
        let nb = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        XCTAssertEqual(nb["nbformat"] as? Int, 4)
        XCTAssertEqual(nb["nbformat_minor"] as? Int, 5)
        XCTAssertNotNil((nb["metadata"] as? [String: Any])?["kernelspec"])
        let cells = nb["cells"] as! [[String: Any]]
        let ids = cells.compactMap { $0["id"] as? String }
        XCTAssertEqual(ids.count, cells.count); XCTAssertEqual(Set(ids).count, ids.count)
        var svgs = 0
        for c in cells {
            XCTAssertNotNil(c["metadata"] as? [String: Any])
            XCTAssertNotNil(c["source"] as? [String])
            switch c["cell_type"] as? String {
            case "markdown": XCTAssertNil(c["outputs"])
            case "code":
                XCTAssertTrue(c["execution_count"] is NSNull)
                for o in c["outputs"] as! [[String: Any]] {
                    XCTAssertEqual(o["output_type"] as? String, "display_data")
                    let svg = ((o["data"] as! [String: Any])["image/svg+xml"] as! [String]).joined()
                    XCTAssertTrue(svg.hasPrefix("<svg"))
                    XCTAssertNoThrow(try XMLDocument(xmlString: svg))
                    svgs += 1
                }
            default: XCTFail("cell type \(String(describing: c["cell_type"]))")
            }
        }
        XCTAssertGreaterThanOrEqual(svgs, plots)
    }

    func testEvolveAppendsGenerationsWithinBounds() throws {
        let root = tempDir("evolve")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: evo
        base: base.yaml
        out: \(root)/out
        evolve:
          generations: 3
          parents: 2
          params: {train.optimizer.lr: [0.001, 0.1], train.optimizer.momentum: [0.5, 0.95]}
        """)
        let s = try Sweep.load(path)
        _ = try s.run(shard: nil) { _ in }
        let rows = s.readEvolveCSV()
        XCTAssertEqual(rows.map(\.generation), [0, 1, 2])
        XCTAssertEqual(rows[0].values, [0.05, 0.9])   // the base recipe's values
        for row in rows {
            XCTAssertTrue((0.001...0.1).contains(row.values[0]) && (0.5...0.95).contains(row.values[1]), "\(row.values)")
        }
        XCTAssertNotEqual(rows[1].values, rows[0].values)
        // Same seed, same generation: the same mutation.
        XCTAssertEqual(try s.evolveValues(generation: 1, rows: [rows[0]]), rows[1].values)
        let again = try s.run(shard: nil) { _ in }
        XCTAssertEqual(again.ran, 0)
    }

    func testSweepFileErrors() throws {
        let root = tempDir("sweeperr")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let p1 = try writeSweep(root, "name: x\n")
        XCTAssertThrowsError(try Sweep.load(p1)) { XCTAssertTrue("\($0)".contains("needs base"), "\($0)") }
        let p2 = try writeSweep(root, "base: base.yaml\nvariants: [{name: a, set: {train.epocs: 2}}]\n")
        XCTAssertThrowsError(try Sweep.load(p2)) { XCTAssertTrue("\($0)".contains("did you mean 'train.epochs'"), "\($0)") }
        let p3 = try writeSweep(root, "base: base.yaml\ngrid: {train.epochs: 3}\n")
        XCTAssertThrowsError(try Sweep.load(p3)) { XCTAssertTrue("\($0)".contains("grid.train.epochs"), "\($0)") }
        let p4 = try writeSweep(root, "base: base.yaml\nevolve: {metric: map50, params: {train.optimizer.lr: [0.01, 0.1]}}\n")
        XCTAssertThrowsError(try Sweep.load(p4)) { XCTAssertTrue("\($0)".contains("'map50' is not one of accuracy, macro_accuracy"), "\($0)") }
    }
}

final class SweepFailureTests: XCTestCase {
    /// A failing cell is reported and the sweep goes on with the others.
    func testAFailedCellDoesNotStopTheSweep() throws {
        let root = tempDir("sweepfail")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: f
        base: base.yaml
        out: \(root)/out
        variants:
          - {name: bad, set: {quant.mode: qat, quant.init_from: "\(root)/missing.h5"}}
          - {name: good, set: {train.steps: 1}}
        """)
        let r = try Sweep.load(path).run(shard: nil) { _ in }
        XCTAssertEqual(r.failed, ["bad/seed0"])
        XCTAssertEqual(r.ran, 1)
        XCTAssertTrue(Sweep.isDone(root + "/out/good/seed0"))
    }
}
