import XCTest
import Foundation

/// Runs the built `qat` executable the way a user does: (exit code, stdout, stderr).
func runQAT(_ args: [String], env: [String: String] = [:]) throws -> (Int32, String, String) {
    // The test runner lives next to the products (…/debug/QATPackageTests.xctest on Linux).
    let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
    let p = Process()
    p.executableURL = exe.deletingLastPathComponent().appendingPathComponent("qat")
    p.arguments = args
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    p.environment = e
    let out = Pipe(), err = Pipe()
    p.standardOutput = out; p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), r = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: r, as: UTF8.self))
}

final class CLITests: XCTestCase {
    func run(_ args: [String], env: [String: String] = [:]) throws -> (Int32, String, String) { try runQAT(args, env: env) }

    func testHelpListsSubcommandsAndOptions() throws {
        let (code, out, _) = try run(["--help"])
        XCTAssertEqual(code, 0)
        XCTAssertTrue(out.contains("bench"), out)
        let (c2, o2, _) = try run(["bench", "kernels", "--help"])
        XCTAssertEqual(c2, 0)
        for opt in ["--reps", "--threads", "--quick", "--json"] { XCTAssertTrue(o2.contains(opt), "\(opt) missing from:\n\(o2)") }
    }

    func testBenchKernelsJSON() throws {
        let (code, out, err) = try run(["bench", "kernels", "--quick", "--reps", "1", "--json", "--threads", "1"])
        XCTAssertEqual(code, 0, err)
        let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        XCTAssertEqual(obj?["threads"] as? Int, 1)
        XCTAssertEqual((obj?["results"] as? [Any])?.count ?? 0 >= 5, true)
    }

    func testBadFlagsAreRejectedWithAMessage() throws {
        let (code, _, err) = try run(["bench", "kernels", "--reps", "0"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(err.contains("--reps"), err)
        let (c2, _, e2) = try run(["bench", "kernels", "--threads", "two"])
        XCTAssertNotEqual(c2, 0)
        XCTAssertTrue(e2.contains("threads"), e2)
    }

    func testBadThreadEnvironmentIsReportedNotFatal() throws {
        let (code, _, err) = try run(["bench", "kernels", "--quick", "--reps", "1", "--json"], env: ["QAT_NUM_THREADS": "lots"])
        XCTAssertEqual(code, 0)
        XCTAssertTrue(err.contains("QAT_NUM_THREADS"), err)
    }
}

final class ModelCLITests: XCTestCase {
    func testModelSummaryAndTrainStepForEveryBackbone() throws {
        let (code, out, err) = try runQAT(["model", "summary", "mobilenet_v2", "--size", "64"])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("total: 3504872 parameters"), out)
        XCTAssertTrue(out.contains("features.18.0"), out)
        for m in ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18"] {
            let (c, o, e) = try runQAT(["bench", "train-step", "--model", m, "--width", "0.25", "--batch", "2", "--size", "32", "--reps", "1", "--json"])
            XCTAssertEqual(c, 0, "\(m): \(e)")
            let obj = try JSONSerialization.jsonObject(with: Data(o.utf8)) as? [String: Any]
            XCTAssertEqual(obj?["model"] as? String, m)
            XCTAssertGreaterThan(obj?["msPerStep"] as? Double ?? 0, 0)
        }
        // The int8 engine against our FP32 path on a small MobileNetV2 (W8A8, calibrated on random images).
        let (ci, oi, ei) = try runQAT(["bench", "infer", "--engine", "int8", "--width", "0.25", "--batch", "2", "--size", "32", "--reps", "1", "--json"])
        XCTAssertEqual(ci, 0, ei)
        let inf = try JSONSerialization.jsonObject(with: Data(oi.utf8)) as? [String: Any]
        XCTAssertGreaterThan(inf?["int8MsPerBatch"] as? Double ?? 0, 0, oi)
        XCTAssertGreaterThan(inf?["fp32MsPerBatch"] as? Double ?? 0, 0, oi)
        let (bad, _, e2) = try runQAT(["bench", "train-step", "--model", "vgg"])
        XCTAssertNotEqual(bad, 0)
        XCTAssertTrue(e2.contains("mobilenet_v2"), e2)
        // BatchNorm needs two values per channel at stride 32: rejected up front, not a crash.
        let (one, _, e3) = try runQAT(["bench", "train-step", "--batch", "1", "--size", "32"])
        XCTAssertNotEqual(one, 0)
        XCTAssertTrue(e3.contains("--batch"), e3)
    }
}

final class QuantCLITests: XCTestCase {
    func testQuantReportRejectsBadFilesWithTheirName() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qat-cli-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "hello".write(toFile: dir + "/x.h5", atomically: true, encoding: .utf8)
        let (code, _, err) = try runQAT(["quant", "report", dir + "/x.h5"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(err.contains("x.h5") && err.contains("not an HDF5"), err)
        let (c2, _, e2) = try runQAT(["quant", "report", dir + "/missing.h5"])
        XCTAssertNotEqual(c2, 0)
        XCTAssertTrue(e2.contains("does not exist"), e2)
    }

    func testQuantDemoRejectsBadSteps() throws {
        let (code, _, err) = try runQAT(["quant", "demo", "--fp32-steps", "0"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(err.contains("--fp32-steps"), err)
    }
}

final class DataCLITests: XCTestCase {
    func testBenchDataRuns() throws {
        let (code, out, err) = try runQAT(["bench", "data", "--images", "4", "--size", "32"])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("images/s"), out)
    }
}

final class SynthCLITests: XCTestCase {
    func testSynthThenStats() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qat-cli-synth-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (code, out, err) = try runQAT(["data", "synth", "--out", dir, "--images", "6", "--size", "64", "--label-noise", "0.3"])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("6 images"), out)
        let (c2, o2, e2) = try runQAT(["data", "stats", dir])
        XCTAssertEqual(c2, 0, e2)
        XCTAssertTrue(o2.contains("narrowbody-twin") && o2.contains("objects per image"), o2)
        let png = dir + "-show.png"
        defer { try? FileManager.default.removeItem(atPath: png) }
        let (c5, o5, e5) = try runQAT(["data", "show", dir, "--image", "1", "--out", png])
        XCTAssertEqual(c5, 0, e5); XCTAssertTrue(o5.contains("wrote"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: png))
        let (c6, _, e6) = try runQAT(["data", "show", dir, "--image", "999", "--out", png])
        XCTAssertNotEqual(c6, 0); XCTAssertTrue(e6.contains("no image with id 999"), e6)
        let (c3, _, e3) = try runQAT(["data", "synth", "--out", dir, "--images", "2"])
        XCTAssertNotEqual(c3, 0); XCTAssertTrue(e3.contains("not empty"), e3)
        let (c4, _, e4) = try runQAT(["data", "synth", "--out", dir + "-x", "--noise-mode", "random"])
        XCTAssertNotEqual(c4, 0); XCTAssertTrue(e4.contains("--noise-mode"), e4)
    }
}
