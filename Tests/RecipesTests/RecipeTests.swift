import XCTest
@testable import Recipes

final class RecipeTests: XCTestCase {
    var dir: String!

    override func setUp() {
        dir = NSTemporaryDirectory() + "recipes-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) -> String {
        let p = dir + "/" + name
        try? FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func error(_ body: () throws -> Any) -> RecipeError? {
        do { _ = try body(); return nil } catch let e as RecipeError { return e } catch { XCTFail("unexpected \(error)"); return nil }
    }

    func testDefaultsAndNameFromFile() throws {
        let r = try Recipe.load(path: write("tiny.yaml", "seed: 3\n"))
        XCTAssertEqual(r.name, "tiny")
        XCTAssertEqual(r.seed, 3)
        var expected = Recipe(); expected.name = "tiny"; expected.seed = 3
        XCTAssertEqual(r, expected)
    }

    func testBaseInheritanceDeepMergesMapsAndReplacesLists() throws {
        _ = write("base/common.yaml", """
        name: common
        model: {backbone: resnet18, width: 0.25}
        train:
          epochs: 4
          optimizer: {name: adamw, lr: 0.001}
          schedule: {name: step, milestones: [10, 20, 30]}
        quant:
          overrides:
            - {pattern: "features.0.*", skip: true}
            - {pattern: "classifier.*", weight_bits: 8}
        """)
        let child = write("child.yaml", """
        base: base/common.yaml
        name: child
        model: {width: 0.5}
        train:
          optimizer: {lr: 0.01}
          schedule: {milestones: [5]}
        quant:
          overrides: [{pattern: "fc", input_bits: 6}]
        """)
        let r = try Recipe.load(path: child)
        XCTAssertEqual(r.name, "child")
        XCTAssertEqual(r.model.backbone, "resnet18")          // kept from base
        XCTAssertEqual(r.model.width, 0.5)                    // overridden
        XCTAssertEqual(r.train.epochs, 4)
        XCTAssertEqual(r.train.optimizer.name, "adamw")
        XCTAssertEqual(r.train.optimizer.lr, 0.01)
        XCTAssertEqual(r.train.schedule.name, "step")
        XCTAssertEqual(r.train.schedule.milestones, [5])      // lists are replaced, not merged
        XCTAssertEqual(r.quant.overrides, [Recipe.Override(pattern: "fc", inputBits: 6)])
    }

    func testSetOverridesApplyInOrderAfterBase() throws {
        let p = write("r.yaml", "train: {epochs: 4}\nquant: {mode: qat}\n")
        let r = try Recipe.load(path: p, overrides: ["train.epochs=9", "quant.weight.bits=4", "train.schedule.milestones=[1, 2]",
                                                     "name=first", "name=second", "train.clip_grad_norm=2.5", "data.synth.noise_mode=similar"])
        XCTAssertEqual(r.train.epochs, 9)
        XCTAssertEqual(r.quant.mode, "qat")
        XCTAssertEqual(r.quant.weight.bits, 4)
        XCTAssertEqual(r.train.schedule.milestones, [1, 2])
        XCTAssertEqual(r.name, "second")
        XCTAssertEqual(r.train.clipGradNorm, 2.5)
        XCTAssertEqual(r.data.synth.noiseMode, "similar")
    }

    func testResolvedYAMLLoadsBackToTheSameRecipe() throws {
        let p = write("r.yaml", """
        name: "007"
        threads: 2
        quant: {mode: qat, init_from: "runs/x/1/checkpoints/best.h5", overrides: [{pattern: "features.*", weight_bits: 4}], freeze_bn_after: 100}
        train: {ema: 0.999, clip_grad_norm: 5, steps: 50, optimizer: {betas: [0.8, 0.99]}}
        data: {format: hdf5_chips, path: "data/yes"}
        """)
        let r = try Recipe.load(path: p)
        XCTAssertEqual(r.name, "007")
        let back = try Recipe.parse(r.resolvedYAML())
        XCTAssertEqual(back, r)
        XCTAssertEqual(back.resolvedYAML(), r.resolvedYAML())
    }

    func testUnknownKeysNameThePathAndClosestKey() throws {
        let p = write("r.yaml", "train:\n  epochs: 2\n  optimzer: {lr: 0.1}\n")
        let e = error { try Recipe.load(path: p) }
        XCTAssertEqual(e?.key, "train.optimzer")
        XCTAssertEqual(e?.origin?.line, 3)
        XCTAssertTrue(e!.description.contains("did you mean 'train.optimizer'"), e!.description)
        XCTAssertTrue(e!.description.contains(p + ":3:"), e!.description)

        let top = error { try Recipe.load(path: self.write("t.yaml", "modle: {width: 1}\n")) }
        XCTAssertTrue(top!.description.contains("did you mean 'model'"), top!.description)

        let fromSet = error { try Recipe.load(path: p, overrides: ["train.optimizer.lrr=0.1"]) }
        XCTAssertTrue(fromSet!.description.contains("train.optimizer.lrr"), fromSet!.description)
        XCTAssertTrue(fromSet!.description.contains("did you mean 'train.optimizer.lr'"), fromSet!.description)
    }

    func testTypeErrorsNameKeyLineAndColumn() throws {
        let p = write("r.yaml", "seed: 1\ntrain:\n  epochs: ten\n")
        let e = error { try Recipe.load(path: p) }
        XCTAssertEqual(e?.key, "train.epochs")
        XCTAssertEqual(e?.origin?.line, 3); XCTAssertEqual(e?.origin?.column, 11)
        XCTAssertTrue(e!.description.contains("expected an integer, got 'ten'"), e!.description)

        for (text, key, what) in [("quant: {mode: int8}\n", "quant.mode", "is not one of fp32, qat, ptq"),
                                  ("model: {width: [1]}\n", "model.width", "expected a number"),
                                  ("quant: {weight: {bits: 9}}\n", "quant.weight.bits", "must be 2..8"),
                                  ("train: 5\n", "train", "expected a mapping"),
                                  ("train: {optimizer: {nesterov: maybe}}\n", "train.optimizer.nesterov", "expected true or false"),
                                  ("task: detection\ndata: {format: synth_chips}\n", "data.format", "is a classification format but the recipe's task is detection"),
                                  ("data: {format: coco, path: x}\n", "data.format", "task is classification, which takes synth_chips, hdf5_chips"),
                                  ("data: {format: hdf5_chips}\n", "data.path", "needs data.path")] {
            let e = error { try Recipe.load(path: self.write("x.yaml", text)) }
            XCTAssertEqual(e?.key, key, text)
            XCTAssertTrue(e?.description.contains(what) ?? false, "\(text): \(String(describing: e))")
        }
    }

    func testSyntaxErrorsMissingFilesAndCycles() throws {
        let bad = write("bad.yaml", "train:\n  epochs: [1, 2\nseed: 1\n")
        let e = error { try Recipe.load(path: bad) }
        XCTAssertTrue(e!.description.contains("YAML syntax error"), e!.description)
        XCTAssertEqual(e?.origin?.file, bad)
        XCTAssertNotNil(e?.origin?.line)

        let missing = error { try Recipe.load(path: self.dir + "/nope.yaml") }
        XCTAssertTrue(missing!.description.contains("recipe file not found"))

        let child = write("c.yaml", "base: gone.yaml\n")
        let noBase = error { try Recipe.load(path: child) }
        XCTAssertTrue(noBase!.description.contains("gone.yaml") && noBase!.description.contains("named by 'base:'"), noBase!.description)

        _ = write("a.yaml", "base: b.yaml\n"); let b = write("b.yaml", "base: a.yaml\n")
        let cycle = error { try Recipe.load(path: b) }
        XCTAssertTrue(cycle!.description.contains("inheritance cycle"), cycle!.description)

        let dup = error { try Recipe.load(path: self.write("d.yaml", "seed: 1\nseed: 2\n")) }
        XCTAssertTrue(dup!.description.contains("duplicate key 'seed'"), dup!.description)

        let badSet = error { try Recipe.load(path: self.write("ok.yaml", "seed: 1\n"), overrides: ["train.epochs"]) }
        XCTAssertTrue(badSet!.description.contains("expected key.path=value"), badSet!.description)
    }

    func testClosestSuggestion() {
        XCTAssertEqual(closest("optimzer", ["epochs", "optimizer", "schedule"]), "optimizer")
        XCTAssertNil(closest("zzzzzz", ["epochs", "optimizer"]))
    }
}

extension RecipeTests {
    /// quant.calibration_statistics: auto resolves to batch statistics for QAT and running ones for PTQ,
    /// is written to the resolved recipe only when set, and batch statistics for PTQ are refused.
    func testCalibrationStatistics() throws {
        let qat = try Recipe.load(path: write("q.yaml", "quant: {mode: qat}\n"))
        XCTAssertEqual(qat.quant.calibrationStatistics, "auto")
        XCTAssertTrue(qat.quant.calibratesWithBatchStatistics)
        XCTAssertFalse(qat.resolvedYAML().contains("calibration_statistics"))
        let ptq = try Recipe.load(path: write("p.yaml", "quant: {mode: ptq}\n"))
        XCTAssertFalse(ptq.quant.calibratesWithBatchStatistics)
        let running = try Recipe.load(path: write("r.yaml", "quant: {mode: qat, calibration_statistics: running}\n"))
        XCTAssertFalse(running.quant.calibratesWithBatchStatistics)
        XCTAssertTrue(running.resolvedYAML().contains("calibration_statistics: running"))
        XCTAssertEqual(try Recipe.parse(running.resolvedYAML()), running)

        let e = error { try Recipe.load(path: self.write("b.yaml", "quant:\n  mode: ptq\n  calibration_statistics: batch\n")) }
        XCTAssertEqual(e?.key, "quant.calibration_statistics")
        XCTAssertEqual(e?.origin?.line, 3)
        XCTAssertTrue(e!.description.contains("use running or auto"), e!.description)
        let bad = error { try Recipe.load(path: self.write("c.yaml", "quant: {mode: qat, calibration_statistics: train}\n")) }
        XCTAssertEqual(bad?.key, "quant.calibration_statistics")
        XCTAssertTrue(bad!.description.contains("auto, batch, running"), bad!.description)
    }

    /// `quant.adaround.held_out_batches`: written only when set, and the learning plus held-out batches
    /// must fit in `quant.calibration_batches` (an error naming the key otherwise).
    func testAdaRoundHeldOutBatches() throws {
        let plain = try Recipe.load(path: write("a.yaml", "quant: {mode: ptq, adaround: {enabled: true}}\n"))
        XCTAssertEqual(plain.quant.adaround.heldOutBatches, 0)
        XCTAssertFalse(plain.resolvedYAML().contains("held_out_batches"))
        let held = try Recipe.load(path: write("h.yaml", "quant: {mode: ptq, calibration_batches: 16, adaround: {enabled: true, batches: 12, held_out_batches: 4}}\n"))
        XCTAssertEqual(held.quant.adaround.heldOutBatches, 4)
        XCTAssertTrue(held.resolvedYAML().contains("held_out_batches: 4"))
        XCTAssertEqual(try Recipe.parse(held.resolvedYAML()), held)
        let e = error { try Recipe.load(path: self.write("x.yaml", "quant: {mode: ptq, adaround: {enabled: true, held_out_batches: 8}}\n")) }
        XCTAssertEqual(e?.key, "quant.adaround.held_out_batches")
        XCTAssertTrue(e!.description.contains("calibration_batches must be at least 12"), e!.description)
    }
}
