import XCTest
import Foundation

/// Exit status 64 with a usage line is for bad flags only; errors in data, checkpoints and paths exit 1
/// with one "error:" line naming the file and the cause.
final class ExitCodeTests: XCTestCase {
    var dir = ""
    override func setUp() {
        dir = NSTemporaryDirectory() + "qat-exit-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func assertUserError(_ args: [String], _ expected: String, line: UInt = #line) throws {
        let (code, _, err) = try runQAT(args)
        XCTAssertEqual(code, 1, err, line: line)
        XCTAssertTrue(err.contains(expected), "\(args): \(err)", line: line)
        XCTAssertFalse(err.contains("Usage:"), err, line: line)
        XCTAssertFalse(err.contains("NSCocoaErrorDomain"), err, line: line)
    }

    func assertUsageError(_ args: [String], _ expected: String, line: UInt = #line) throws {
        let (code, _, err) = try runQAT(args)
        XCTAssertEqual(code, 64, err, line: line)
        XCTAssertTrue(err.contains(expected), "\(args): \(err)", line: line)
        XCTAssertTrue(err.contains("Usage:"), err, line: line)
    }

    func testDataAndReportErrorsExitOneWithoutUsage() throws {
        try FileManager.default.createDirectory(atPath: dir + "/coco/annotations", withIntermediateDirectories: true)
        try "{\"images\": [,]}".write(toFile: dir + "/coco/annotations/train.json", atomically: true, encoding: .utf8)
        try assertUserError(["data", "stats", dir + "/coco"], "train.json: malformed JSON at line 1")
        try assertUserError(["data", "show", dir + "/coco", "--image", "1", "--out", dir + "/x.png"], "train.json")
        try assertUserError(["quant", "report", dir], "is a directory")
        try assertUserError(["detect", "score", dir + "/none.json", dir + "/r.json"], "none.json")
        try assertUserError(["data", "synth", "--out", dir + "/coco", "--images", "2"], "not empty")
    }

    func testSizeFlagsPastTheirCapsAreUsageErrors() throws {
        try assertUsageError(["data", "synth", "--out", dir + "/s", "--size", "100000"], "--size: must be 64...2048")
        try assertUsageError(["data", "synth", "--out", dir + "/s", "--images", "1000000000"], "--images: must be 1...100000")
        try assertUsageError(["data", "synth", "--out", dir + "/s", "--images", "100000", "--chips"], "4 GiB")
        try assertUsageError(["data", "synth", "--out", dir + "/s", "--chips", "--chip-size", "4096"], "--chip-size: must be 8...256")
        try assertUsageError(["data", "synth", "--out", dir + "/s", "--threads", "100000"], "--threads must be 1...1024")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/s"), "nothing is created before the flags check out")
        try assertUsageError(["bench", "train-step", "--batch", "100000"], "--batch must be 1...4096")
        try assertUsageError(["bench", "train-step", "--size", "100000"], "--size must be 32...2048")
        try assertUsageError(["bench", "train-step", "--batch", "64", "--size", "2048"], "above the cap of 67108864")
        try assertUsageError(["bench", "data", "--images", "1000000000"], "--images must be 1...10000")
        try assertUsageError(["model", "summary", "mobilenet_v2", "--classes", "1000000000"], "--classes must be 0...100000")
        try assertUsageError(["model", "summary", "mobilenet_v2", "--size", "100000"], "--size must be 32...2048")
        try assertUsageError(["quant", "demo", "--fp32-steps", "9223372036854775807"], "--fp32-steps must be 1...1000000")
        try assertUsageError(["bench", "kernels", "--reps", "0"], "--reps must be 1...100000")
        try assertUsageError(["bench", "infer", "--engine", "int4"], "--engine must be fp32 or int8")
        try assertUsageError(["bench", "infer", "--onnx-out", dir + "/m.onnx"], "add --engine int8")
        try assertUsageError(["bench", "infer", "--engine", "int8", "--quant", "w9a8"], "--quant w9a8 is not wNaM")
        try assertUsageError(["bench", "infer", "--model", "vgg"], "--model vgg is not one of")
        try assertUsageError(["eval", dir + "/none.h5", "--compare"], "add --engine int8")
        try assertUsageError(["eval", dir + "/none.h5", "--engine", "int4"], "--engine takes int8")
        try assertUsageError(["predict", dir + "/none.h5", dir, "--out", dir + "/p", "--engine", "fp16"], "--engine takes int8")
    }

    func testPathsThatCannotBeReadOrWrittenNameTheCause() throws {
        try Data().write(to: URL(fileURLWithPath: dir + "/afile"))
        try assertUserError(["data", "synth", "--out", dir + "/afile/sub", "--images", "2"], "\(dir)/afile is a file, not a folder")
        try assertUserError(["data", "sheet", "--out", dir + "/afile/sheet.png"], "\(dir)/afile is a file, not a folder")
        try assertUserError(["train", dir], "is a directory; give the recipe file inside it")
        try FileManager.default.createSymbolicLink(atPath: dir + "/l1.yaml", withDestinationPath: dir + "/l2.yaml")
        try FileManager.default.createSymbolicLink(atPath: dir + "/l2.yaml", withDestinationPath: dir + "/l1.yaml")
        try assertUserError(["train", dir + "/l1.yaml"], "symlink loop")
        try assertUserError(["sweep", dir + "/l1.yaml"], "symlink loop")
        try "".write(toFile: dir + "/empty.yaml", atomically: true, encoding: .utf8)
        try assertUserError(["train", dir + "/empty.yaml"], "is empty (no keys)")
        try "name: x\n".write(toFile: dir + "/x.yaml", atomically: true, encoding: .utf8)
        try assertUserError(["train", dir + "/x.yaml", "--set", "train.epochs="], "'train.epochs': has no value")
        try assertUserError(["train", dir + "/x.yaml", "--set", "data.input_size=100000"], "100000 is above the cap of 2048")
    }

    func testHugeThreadEnvironmentIsReportedNotFatal() throws {
        let (code, _, err) = try runQAT(["bench", "kernels", "--quick", "--reps", "1", "--json"], env: ["QAT_NUM_THREADS": "99999999999"])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(err.contains("QAT_NUM_THREADS=99999999999 is not an integer in 1...1024"), err)
    }
}
