import XCTest
import Foundation
import Files
@testable import Training

final class SweepReliabilityTests: XCTestCase {
    /// Shard 2 waits for a cell of shard 1 that fails: it reads the failure record (failed.json),
    /// reports it, records its own cell as failed and ends, instead of waiting forever; so does a rerun
    /// of shard 2 alone. Rerunning shard 1 retries its failed cell (the record is replaced).
    func testAShardWaitingForAFailedCellReportsItAndMovesOn() throws {
        let root = tempDir("sweepdep")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: dep
        base: base.yaml
        out: \(root)/out
        variants:
          - {name: bad, set: {quant.mode: qat, quant.init_from: "\(root)/missing.h5"}}
          - {name: dependent, set: {quant.mode: qat, quant.init_from: "{out}/bad/seed0/checkpoints/best.h5"}}
          - {name: good, set: {train.steps: 1}}
        """)
        var s = try Sweep.load(path)
        s.waitInterval = 0.05
        let sweep = s
        XCTAssertEqual(sweep.cells(shard: (2, 2)).map(\.label), ["dependent/seed0"])
        func runShard2(_ lines: @escaping @Sendable (String) -> Void) -> (ran: Int, skipped: Int, interrupted: Bool, failed: [String])? {
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var result: (ran: Int, skipped: Int, interrupted: Bool, failed: [String])? = nil
            Thread.detachNewThread { result = try? sweep.run(shard: (2, 2), log: lines); done.signal() }
            guard done.wait(timeout: .now() + 120) == .success else { XCTFail("shard 2 still waits after 120 s"); return nil }
            return result
        }
        let log = NSLock()
        nonisolated(unsafe) var shard2Lines: [String] = []
        let record: @Sendable (String) -> Void = { l in log.lock(); shard2Lines.append(l); log.unlock() }
        // Shard 2 starts first and waits; shard 1 runs meanwhile.
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var r2: (ran: Int, skipped: Int, interrupted: Bool, failed: [String])? = nil
        Thread.detachNewThread { r2 = try? sweep.run(shard: (2, 2), log: record); done.signal() }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && !{ log.lock(); defer { log.unlock() }; return shard2Lines.contains { $0.hasPrefix("wait dependent/seed0: needs bad/seed0") } }() {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let r1 = try sweep.run(shard: (1, 2)) { _ in }
        XCTAssertEqual(r1.failed, ["bad/seed0"]); XCTAssertEqual(r1.ran, 1)
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success, "shard 2 waits forever for a failed cell")
        XCTAssertEqual(r2?.failed, ["dependent/seed0"]); XCTAssertEqual(r2?.ran, 0)
        log.lock()
        XCTAssertTrue(shard2Lines.contains { $0.hasPrefix("wait dependent/seed0: needs bad/seed0") }, "\(shard2Lines)")
        XCTAssertTrue(shard2Lines.contains { $0.contains("FAILED dependent/seed0: needs bad/seed0") && $0.contains("which failed: ") && $0.contains("missing.h5") }, "\(shard2Lines)")
        log.unlock()
        XCTAssertTrue(Sweep.failure(root + "/out/bad/seed0")?.contains("missing.h5") ?? false)
        XCTAssertTrue(Sweep.failure(root + "/out/dependent/seed0")?.contains("needs bad/seed0") ?? false)
        XCTAssertNil(Sweep.failure(root + "/out/good/seed0"))

        // Shard 2 alone, with nobody running shard 1: it reports the recorded failure at once.
        let again = runShard2 { _ in }
        XCTAssertEqual(again?.failed, ["dependent/seed0"])
        // Shard 1 again: retries the failed cell (its record is rewritten by the new attempt).
        let before = try FileManager.default.attributesOfItem(atPath: root + "/out/bad/seed0/failed.json")[.modificationDate] as? Date
        Thread.sleep(forTimeInterval: 0.01)
        let r1b = try sweep.run(shard: (1, 2)) { _ in }
        XCTAssertEqual(r1b.failed, ["bad/seed0"]); XCTAssertEqual(r1b.skipped, 1)
        let after = try FileManager.default.attributesOfItem(atPath: root + "/out/bad/seed0/failed.json")[.modificationDate] as? Date
        XCTAssertNotEqual(before, after)
    }

    /// A cell another process owns (its lock is held) is skipped with the owner's pid, not run twice.
    func testACellInUseIsSkipped() throws {
        let root = tempDir("sweepbusy")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: busy
        base: base.yaml
        out: \(root)/out
        seeds: [0, 1]
        set: {train.steps: 1}
        """)
        let s = try Sweep.load(path)
        try FileManager.default.createDirectory(atPath: root + "/out/busy/seed0", withIntermediateDirectories: true)
        let held = try FileLock.acquire(FileLock.file(ofDirectory: root + "/out/busy/seed0"), guarding: "test")
        var lines: [String] = []
        let r = try s.run(shard: nil) { lines.append($0) }
        XCTAssertEqual(r.ran, 1); XCTAssertEqual(r.skipped, 1); XCTAssertEqual(r.failed, [])
        XCTAssertTrue(lines.contains { $0.hasPrefix("skip busy/seed0: sweep cell \(root)/out/busy/seed0 is in use by process \(getpid())") }, "\(lines)")
        XCTAssertFalse(Sweep.isDone(root + "/out/busy/seed0"))
        held.release()
        XCTAssertEqual(try s.run(shard: nil) { _ in }.ran, 1)
    }

    /// Two evolve searches on one sweep folder: the second is refused while the first holds it.
    func testEvolveOwnsItsSweepFolder() throws {
        let root = tempDir("evolvelock")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: evo
        base: base.yaml
        out: \(root)/out
        evolve: {generations: 1, params: {train.optimizer.lr: [0.001, 0.1]}}
        """)
        let s = try Sweep.load(path)
        try FileManager.default.createDirectory(atPath: root + "/out", withIntermediateDirectories: true)
        let held = try FileLock.acquire(FileLock.file(ofDirectory: root + "/out"), guarding: "test")
        XCTAssertThrowsError(try s.run(shard: nil) { _ in }) { e in
            XCTAssertTrue("\(e)".contains("sweep folder \(root)/out (an evolve search) is in use by process \(getpid())"), "\(e)")
        }
        held.release()
        XCTAssertEqual(try s.run(shard: nil) { _ in }.ran, 1)
    }
}
