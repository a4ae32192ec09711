import XCTest
import Foundation
import Kernels
import Autodiff
import NN
import Optim
@testable import Checkpoint
import Quant

func tempDir() -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("qat-ckpt-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// A small model with every kind of state: conv weights and bias, BatchNorm buffers, dropout RNG.
func smallModel(seed: UInt64) throws -> Sequential {
    var rng = RNG(seed: seed)
    return Sequential(try Conv2d(3, 8, kernel: 3, stride: 2, rng: &rng), BatchNorm2d(8), Activation(.relu6),
                      Dropout(p: 0.2, seed: seed), try Conv2d(8, 4, kernel: 1, rng: &rng))
}

final class CheckpointTests: XCTestCase {
    func testRoundTripKeepsEverything() throws {
        let dir = tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try smallModel(seed: 1)
        let opt = SGD(m.namedParameters(), lr: 0.1, momentum: 0.9)
        var rng = RNG(seed: 5)
        m(Tensor.randn([2, 3, 8, 8], rng: &rng)).square().mean().backward()
        opt.step()
        var c = Checkpoint.capture(model: m, optimizer: opt)
        c.step = 17; c.epoch = 2; c.seed = 99; c.rng = rng; c.recipe = "name: test\nseed: 99\n"; c.metricsJSON = "{\"loss\": 0.5}"
        c.model = "small"
        c.quant["0"] = ["scale": .init(shape: [8], values: (1...8).map { Float($0) * 0.1 })]
        let path = dir + "/last.h5"
        try c.save(to: path)
        let back = try Checkpoint.load(from: path)
        XCTAssertEqual(back, c)
        // For checking the layout with h5py (scripts/reference/read_checkpoint_h5py.py).
        if let keep = ProcessInfo.processInfo.environment["QAT_TEST_ARTIFACTS"] {
            try? FileManager.default.copyItem(atPath: path, toPath: keep + "/roundtrip.h5")
        }
        XCTAssertEqual(back.optimizer["0.weight"]?["momentum_buffer"]?.shape, [8, 3, 3, 3])
        XCTAssertEqual(back.moduleRNG["3"], (m[3] as! Dropout).rng)

        let fresh = try smallModel(seed: 2)
        XCTAssertNotEqual(fresh.parameters()[0].scalars, m.parameters()[0].scalars)
        let report = try back.apply(to: fresh, strict: false, file: path)
        XCTAssertEqual(report.unexpected, ["/quant/0/scale"])
        XCTAssertTrue(report.missing.isEmpty)
        for ((p, a), (_, b)) in zip(m.namedParameters() + m.namedBuffers(), fresh.namedParameters() + fresh.namedBuffers()) {
            XCTAssertEqual(a.scalars, b.scalars, p)
        }
        let freshOpt = SGD(fresh.namedParameters(), lr: 0.1, momentum: 0.9)
        try back.apply(to: freshOpt, file: path)
        XCTAssertEqual(freshOpt.stepCount, 1)
        XCTAssertEqual(freshOpt.state["0.weight"]?["momentum_buffer"]?.scalars, opt.state["0.weight"]?["momentum_buffer"]?.scalars)
        XCTAssertThrowsError(try back.apply(to: Adam(fresh.namedParameters()), file: path)) { XCTAssertTrue("\($0)".contains("SGD")) }
    }

    func testFailedSaveLeavesPreviousCheckpointIntact() throws {
        let dir = tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/last.h5"
        let m = try smallModel(seed: 1)
        try Checkpoint.capture(model: m).save(to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        var c2 = Checkpoint.capture(model: try smallModel(seed: 3))
        c2.step = 5
        XCTAssertThrowsError(try c2.save(to: path, options: SaveOptions(failAfterDatasets: 3))) { XCTAssertTrue("\($0)".contains("injected")) }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["last.h5"], "temporary file left behind")
        XCTAssertNoThrow(try Checkpoint.load(from: path))
        XCTAssertThrowsError(try c2.save(to: dir + "/missing-folder/x.h5")) { XCTAssertTrue("\($0)".contains("does not exist")) }
    }

    func testLoadErrorsNameTheProblem() throws {
        let dir = tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        func kind(_ path: String) -> CheckpointError.Kind? {
            do { _ = try Checkpoint.load(from: path); return nil } catch let e as CheckpointError {
                XCTAssertTrue(e.description.contains(path), e.description); return e.kind
            } catch { XCTFail("\(error)"); return nil }
        }
        XCTAssertEqual(kind(dir + "/nope.h5"), .missingFile)
        try "name: not a checkpoint\n".write(toFile: dir + "/text.h5", atomically: true, encoding: .utf8)
        XCTAssertEqual(kind(dir + "/text.h5"), .notHDF5)
        let good = dir + "/good.h5"
        try Checkpoint.capture(model: try smallModel(seed: 1)).save(to: good)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: dir + "/truncated.h5"))
        XCTAssertEqual(kind(dir + "/truncated.h5"), .corrupt)
        try bytes.prefix(600).write(to: URL(fileURLWithPath: dir + "/stub.h5"))
        XCTAssertEqual(kind(dir + "/stub.h5"), .corrupt)
        // A file from a future format.
        var future = Checkpoint.capture(model: try smallModel(seed: 1))
        future.model = "x"
        try future.saveForTest(to: dir + "/future.h5", formatVersion: 2)
        XCTAssertEqual(kind(dir + "/future.h5"), .formatVersion)
    }

    func testStrictAndNonStrictLoading() throws {
        var rng = RNG(seed: 0)
        let src = try smallModel(seed: 1)
        let c = Checkpoint.capture(model: src)
        // Missing keys: a model with an extra layer.
        let bigger = Sequential(src.layers + [try Conv2d(4, 2, kernel: 1, rng: &rng)])
        XCTAssertThrowsError(try c.apply(to: bigger, file: "a.h5")) { e in
            XCTAssertEqual((e as? CheckpointError)?.kind, .missingKeys)
            XCTAssertTrue("\(e)".contains("/params/5.weight") && "\(e)".contains("a.h5"), "\(e)")
        }
        // Unexpected keys: a model with fewer layers.
        let smaller = Sequential(Array(src.layers.prefix(3)))
        XCTAssertThrowsError(try c.apply(to: smaller)) { e in
            XCTAssertEqual((e as? CheckpointError)?.kind, .unexpectedKeys)
            XCTAssertTrue("\(e)".contains("/params/4.weight"), "\(e)")
        }
        // Shape mismatch: a different width. Strict changes nothing.
        let other = Sequential(try Conv2d(3, 16, kernel: 3, stride: 2, rng: &rng), BatchNorm2d(16), Activation(.relu6),
                               Dropout(p: 0.2), try Conv2d(16, 4, kernel: 1, rng: &rng))
        let before = other.parameters()[0].scalars
        XCTAssertThrowsError(try c.apply(to: other)) { e in
            XCTAssertEqual((e as? CheckpointError)?.kind, .shapeMismatch)
            XCTAssertTrue("\(e)".contains("/params/0.weight: checkpoint [8, 3, 3, 3], model [16, 3, 3, 3]"), "\(e)")
        }
        XCTAssertEqual(other.parameters()[0].scalars, before)
        // Non-strict: loads the matching tensors and lists the rest.
        let r = try c.apply(to: bigger, strict: false)
        XCTAssertEqual(r.missing, ["/params/5.weight", "/params/5.bias"])
        XCTAssertEqual(bigger.parameters()[0].scalars, src.parameters()[0].scalars)
        let r2 = try c.apply(to: other, strict: false)
        XCTAssertEqual(r2.shapeMismatches.count, 7)  // conv 0 (2), BN (4), conv 4 weight
        XCTAssertEqual(r2.loaded, ["/params/4.bias"])
    }
}

extension Checkpoint {
    /// Writes a file claiming another format version, to test the version check.
    func saveForTest(to path: String, formatVersion v: Int64) throws {
        try save(to: path)
        qat_rewrite_version(path, v)
    }
}

import CHDF5
func qat_rewrite_version(_ path: String, _ v: Int64) {
    let f = H5Fopen(path, qat_H5F_ACC_RDWR(), qat_H5P_DEFAULT())
    let a = H5Aopen(f, "format_version", qat_H5P_DEFAULT())
    var x = v
    H5Awrite(a, qat_H5T_NATIVE_INT64(), &x)
    H5Aclose(a); H5Fclose(f)
}

final class QuantCheckpointTests: XCTestCase {
    func testQuantizerStateRoundTripsUnderQuant() throws {
        let dir = tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try smallModel(seed: 1)
        try quantize(m, plan: QuantPlan.bits(weight: 4, activation: 8))
        var rng = RNG(seed: 2)
        m(Tensor.randn([2, 3, 8, 8], rng: &rng)).square().mean().backward()
        let c = Checkpoint.capture(model: m)
        XCTAssertNotNil(c.quant["0.weightQuantizer"]?["scale"])
        XCTAssertEqual(c.quant["0.weightQuantizer"]?["scale"]?.shape, [8])
        XCTAssertEqual(c.quantAttributes["0.weightQuantizer"]?["bits"], "4")
        XCTAssertNil(c.params["0.weightQuantizer.scale"], "quantizer state must not be duplicated under /params")
        try c.save(to: dir + "/q.h5")
        // The report: one row per quantizer; weight rows get a clipped share, activation rows do not.
        let report = QuantReport(c)
        XCTAssertEqual(report.rows.count, c.quant.count)
        let w = report.rows.first { $0.path == "0.weightQuantizer" }!
        XCTAssertEqual(w.bits, "4")
        XCTAssertNotNil(w.clipped)
        XCTAssertEqual(w.clipped!, 0, accuracy: 1e-9, "min-max initialised weights are not clipped")
        let inRow = report.rows.first { $0.path == "0.inputQuantizer" }!
        XCTAssertEqual(inRow.clipped, 0, "min-max initialised from the same batch: nothing clipped")
        XCTAssertTrue(inRow.clippedFromCalibration)
        XCTAssertTrue(report.format().contains("0.weightQuantizer"))
        let back = try Checkpoint.load(from: dir + "/q.h5")
        XCTAssertEqual(back, c)
        let fresh = try smallModel(seed: 5)
        try quantize(fresh, plan: QuantPlan.bits(weight: 4, activation: 8))
        try back.apply(to: fresh)
        XCTAssertEqual(Checkpoint.capture(model: fresh), c)
    }

    func testFP32CheckpointLoadsIntoQuantizedModelNonStrict() throws {
        let fp = Checkpoint.capture(model: try smallModel(seed: 1))
        let q = try smallModel(seed: 3)
        let h = try quantize(q, plan: QuantPlan())
        XCTAssertThrowsError(try fp.apply(to: q)) { XCTAssertEqual(($0 as? CheckpointError)?.kind, .missingKeys) }
        let r = try fp.apply(to: q, strict: false)
        XCTAssertTrue(r.unexpected.isEmpty && r.shapeMismatches.isEmpty)
        XCTAssertTrue(r.missing.allSatisfy { $0.hasPrefix("/quant/") }, "\(r.missing)")
        XCTAssertEqual(q.parameters()[0].scalars, try smallModel(seed: 1).parameters()[0].scalars)
        XCTAssertFalse(h.quantizers[0].1.isInitialized, "quantizers initialise from calibration, not the checkpoint")
    }

    func testNonPositiveScaleInCheckpointIsRejected() throws {
        let m = try smallModel(seed: 1)
        try quantize(m, plan: QuantPlan())
        var c = Checkpoint.capture(model: m)
        c.quant["0.inputQuantizer"]?["scale"] = .init(shape: [1], values: [-0.5])
        XCTAssertThrowsError(try c.apply(to: m, file: "bad.h5")) { e in
            XCTAssertTrue("\(e)".contains("/quant/0.inputQuantizer/scale") && "\(e)".contains("-0.5") && "\(e)".contains("bad.h5"), "\(e)")
        }
    }
}
