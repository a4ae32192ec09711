import XCTest
import Foundation
import Files

/// Starts the built `qat` with its output in files (a process that runs long never blocks on a full pipe).
func startQAT(_ args: [String], out: String) throws -> Process {
    let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
    let p = Process()
    p.executableURL = exe.deletingLastPathComponent().appendingPathComponent("qat")
    p.arguments = args
    FileManager.default.createFile(atPath: out, contents: nil)
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    p.standardOutput = h; p.standardError = h
    try p.run()
    return p
}

/// Runs `qat` and gives up (killing it) after `timeout` seconds: (exit code or nil on timeout, output).
func runQAT(_ args: [String], timeout: Double) throws -> (Int32?, String) {
    let out = NSTemporaryDirectory() + "qat-cli-out-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: out) }
    let p = try startQAT(args, out: out)
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
    let timedOut = p.isRunning
    if timedOut { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    return (timedOut ? nil : p.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
}

/// Waits until `body` is true (polling), at most `seconds`.
func waitFor(_ seconds: Double, _ body: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline { if body() { return true }; Thread.sleep(forTimeInterval: 0.02) }
    return body()
}

final class ReliabilityCLITests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = NSTemporaryDirectory() + "qat-cli-rel-\(UUID().uuidString)"
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

    /// Two `qat train` into one run directory: the second exits 1 naming the directory and the first
    /// one's pid, and changes nothing; when the first is killed with SIGKILL, the kernel drops its lock.
    func testTwoTrainingsIntoOneDirectory() throws {
        let r = try recipe(steps: 100_000)
        let run = dir + "/run"
        let first = try startQAT(["train", r, "--run-dir", run], out: dir + "/first.log")
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL); first.waitUntilExit() } }
        XCTAssertTrue(waitFor(120) { (try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8))?.contains("\"train\"") ?? false })
        for extra in [[], ["--resume"]] {
            let (code, out) = try runQAT(["train", r, "--run-dir", run] + extra, timeout: 120)
            XCTAssertEqual(code, 1, out)
            XCTAssertTrue(out.contains("error: run directory \(run) is in use by process \(first.processIdentifier)"), out)
        }
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        XCTAssertNoThrow(try FileLock.acquire(run + "/.lock", guarding: "test"))
    }

    /// A killed `qat data synth` leaves its output only as a temporary folder beside --out; the rerun
    /// is not blocked by it, removes it and writes --out.
    func testAKilledSynthDoesNotBlockTheRerun() throws {
        let out = dir + "/aircraft"
        let p = try startQAT(["data", "synth", "--out", out, "--images", "400", "--size", "128", "--threads", "1"], out: dir + "/synth.log")
        var partial: String? = nil
        XCTAssertTrue(waitFor(60) {
            partial = contents(dir).first { $0.hasPrefix(".aircraft.partial-") }
            return partial.map { contents(dir + "/" + $0 + "/images").count >= 2 } ?? false
        }, "no temporary folder with images appeared")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a half data set at --out")
        XCTAssertNotNil(partial)
        let (code, o) = try runQAT(["data", "synth", "--out", out, "--images", "6", "--size", "64"], timeout: 120)
        XCTAssertEqual(code, 0, o)
        XCTAssertEqual(contents(dir).filter { $0.hasPrefix(".aircraft") }, [], "the killed run's temporary folder is still there")
        XCTAssertEqual(contents(out + "/images").count, 6)
        XCTAssertEqual(contents(out + "/annotations"), ["train.json", "val.json", "test.json"])
    }

    /// A sweep shard whose cell needs a cell that failed in another shard exits 1 naming both, at once.
    func testAShardNeedingAFailedCellExitsNonZero() throws {
        _ = try recipe(steps: 1)
        try """
        name: dep
        base: tiny.yaml
        out: \(dir!)/out
        variants:
          - {name: bad, set: {quant.mode: qat, quant.init_from: "\(dir!)/missing.h5"}}
          - {name: dependent, set: {quant.mode: qat, quant.init_from: "{out}/bad/seed0/checkpoints/best.h5"}}
        """.write(toFile: dir + "/sweep.yaml", atomically: true, encoding: .utf8)
        let (c1, o1) = try runQAT(["sweep", dir + "/sweep.yaml", "--shard", "1/2"], timeout: 120)
        XCTAssertEqual(c1, 1, o1)
        XCTAssertTrue(o1.contains("FAILED bad/seed0") && o1.contains("missing.h5"), o1)
        let (c2, o2) = try runQAT(["sweep", dir + "/sweep.yaml", "--shard", "2/2"], timeout: 120)
        XCTAssertEqual(c2, 1, "shard 2 waited for a cell that had failed (killed after 120 s): \(o2)")
        XCTAssertTrue(o2.contains("FAILED dependent/seed0: needs bad/seed0") && o2.contains("error: 1 cell(s) failed: dependent/seed0"), o2)
    }

    /// A crafted `hdf5_chips` file on which libhdf5 1.10.8 crashes (SIGSEGV, found by scripts/fuzz.sh):
    /// read directly it kills the reading process; `qat train` on it exits 1 with a message naming the
    /// file and the crash, and creates no run directory (the child process that reads it first died).
    func testAFileThatCrashesLibHDF5IsRefusedWithoutCrashing() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/libhdf5-segv-chips.h5").path
        let data = dir + "/chips"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        for split in ["train", "val", "test"] { try FileManager.default.copyItem(atPath: fixture, toPath: "\(data)/\(split).h5") }
        // The fixture really crashes libhdf5 (else this test proves nothing).
        let (direct, _) = try runQAT(["_read-hdf5", "hdf5_chips", data + "/train.h5", "\(1 << 32)"], timeout: 60)
        XCTAssertNotNil(direct)
        XCTAssertFalse(direct == 0 || direct == 1, "libhdf5 no longer crashes on the fixture (status \(direct ?? -1)): replace it with one that does")
        let (code, out) = try runQAT(["train", try recipe(steps: 1), "--set", "data.format=hdf5_chips", "--set", "data.path=" + data,
                                      "--run-dir", dir + "/run"], timeout: 120)
        XCTAssertEqual(code, 1, out)
        XCTAssertTrue(out.contains(data + "/train.h5: libhdf5 crashed reading it (SIGSEGV") && out.contains("nothing was loaded"), out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run"))
    }
}

func contents(_ dir: String) -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []) }
