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

    /// A producer cell's best.h5 exists while it trains (here: a stale, unreadable one without final.json):
    /// the cell that starts from it waits for the producer to finish instead of starting from that file.
    /// A producer that the same process runs later is an ordering error, reported at once.
    func testACellStartsOnlyFromAFinishedCell() throws {
        let root = tempDir("sweepfinal")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: fin
        base: base.yaml
        out: \(root)/out
        variants:
          - {name: fp32}
          - {name: qat, set: {quant.mode: qat, quant.init_from: "{out}/fp32/seed0/checkpoints/best.h5"}}
        """)
        var s = try Sweep.load(path)
        s.waitInterval = 0.05
        let sweep = s
        try FileManager.default.createDirectory(atPath: root + "/out/fp32/seed0/checkpoints", withIntermediateDirectories: true)
        try Data("not yet a checkpoint".utf8).write(to: URL(fileURLWithPath: root + "/out/fp32/seed0/checkpoints/best.h5"))
        let log = NSLock()
        nonisolated(unsafe) var lines: [String] = []
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var r2: (ran: Int, skipped: Int, interrupted: Bool, failed: [String])? = nil
        Thread.detachNewThread {
            r2 = try? sweep.run(shard: (2, 2)) { l in log.lock(); lines.append(l); log.unlock() }
            done.signal()
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && !{ log.lock(); defer { log.unlock() }; return lines.contains { $0.hasPrefix("wait qat/seed0: needs fp32/seed0") } }() {
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/out/qat/seed0/recipe.resolved.yaml"), "started from an unfinished cell")
        let r1 = try sweep.run(shard: (1, 2)) { _ in }
        XCTAssertEqual(r1.ran, 1); XCTAssertEqual(r1.failed, [])
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(r2?.failed, []); XCTAssertEqual(r2?.ran, 1)

        // The same dependency listed the other way round, in one process: an error naming both cells.
        let root2 = tempDir("sweeporder")
        defer { try? FileManager.default.removeItem(atPath: root2) }
        let bad = try Sweep.load(try writeSweep(root2, """
        name: order
        base: base.yaml
        out: \(root2)/out
        variants:
          - {name: qat, set: {quant.mode: qat, quant.init_from: "{out}/fp32/seed0/checkpoints/best.h5"}}
          - {name: fp32}
        """))
        var out: [String] = []
        let r = try bad.run(shard: nil) { out.append($0) }
        XCTAssertEqual(r.failed, ["qat/seed0"])
        XCTAssertTrue(out.contains { $0.contains("FAILED qat/seed0: needs fp32/seed0") && $0.contains("runs after it") }, "\(out)")
    }

    /// Shard 2 waits for a cell of shard 1, whose process is killed with SIGKILL (so it writes no
    /// failure record): while shard 1's lock is held, shard 2 waits; once the kernel drops it, shard 2
    /// reports that shard 1 is not running and moves on. A shard that never started is waited for.
    func testAShardWaitingForAKilledShardReportsItAndMovesOn() throws {
        let root = tempDir("sweepkilled")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try writeSweep(root, """
        name: killed
        base: base.yaml
        out: \(root)/out
        variants:
          - {name: producer, set: {train.steps: 1}}
          - {name: dependent, set: {train.steps: 1, quant.mode: qat, quant.init_from: "{out}/producer/seed0/checkpoints/best.h5"}}
        """)
        var s = try Sweep.load(path)
        s.waitInterval = 0.05; s.orphanGrace = 0.3
        let sweep = s
        try FileManager.default.createDirectory(atPath: root + "/out", withIntermediateDirectories: true)
        // "Shard 1": a real process holding shard 1's lock (flock(1) takes the same kind of lock), in a
        // process group of its own so that SIGKILL reaches it and its command together; no Foundation
        // Process (it waits for every descendant's copy of its pipe to close).
        var pid: pid_t = 0
        var attr = posix_spawnattr_t(); posix_spawnattr_init(&attr); defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP)); posix_spawnattr_setpgroup(&attr, 0)
        var io = posix_spawn_file_actions_t(); posix_spawn_file_actions_init(&io); defer { posix_spawn_file_actions_destroy(&io) }
        for fd in Int32(0)...2 { posix_spawn_file_actions_addopen(&io, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        let words: [String] = ["flock", "-x", Sweep.shardLockFile(root + "/out", 1, 2), "sleep", "120"]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        XCTAssertEqual(posix_spawn(&pid, "/usr/bin/flock", &io, &attr, argv, environ), 0)
        var killed = false
        func killShard1() { if !killed { kill(-pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, 0); killed = true } }
        defer { killShard1() }
        let deadline = Date().addingTimeInterval(20)
        while FileLock.isLocked(Sweep.shardLockFile(root + "/out", 1, 2)) != true && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertEqual(FileLock.isLocked(Sweep.shardLockFile(root + "/out", 1, 2)), true)

        let log = NSLock()
        nonisolated(unsafe) var lines: [String] = []
        nonisolated(unsafe) var r2: (ran: Int, skipped: Int, interrupted: Bool, failed: [String])? = nil
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            r2 = try? sweep.run(shard: (2, 2)) { l in log.lock(); lines.append(l); log.unlock() }
            done.signal()
        }
        // Shard 1 is alive: shard 2 keeps waiting well past the grace period.
        XCTAssertEqual(done.wait(timeout: .now() + 1.5), .timedOut, "shard 2 gave up on a shard that is running")
        killShard1()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "shard 2 waits forever for a killed shard")
        XCTAssertEqual(r2?.failed, ["dependent/seed0"]); XCTAssertEqual(r2?.ran, 0)
        log.lock()
        XCTAssertTrue(lines.contains { $0.contains("FAILED dependent/seed0: needs producer/seed0") && $0.contains("shard 1/2 is not running") && $0.contains("rerun that shard") }, "\(lines)")
        log.unlock()
        XCTAssertTrue(Sweep.failure(root + "/out/dependent/seed0")?.contains("shard 1/2 is not running") ?? false)

        // A shard that never started (no lock file): shard 2 waits until shard 1 runs, then runs its cell.
        try FileManager.default.removeItem(atPath: Sweep.shardLockFile(root + "/out", 1, 2))
        let done2 = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var r2b: (ran: Int, skipped: Int, interrupted: Bool, failed: [String])? = nil
        Thread.detachNewThread { r2b = try? sweep.run(shard: (2, 2)) { _ in }; done2.signal() }
        XCTAssertEqual(done2.wait(timeout: .now() + 1.0), .timedOut, "shard 2 gave up on a shard that has not started")
        let r1 = try sweep.run(shard: (1, 2)) { _ in }
        XCTAssertEqual(r1.ran, 1)
        XCTAssertEqual(done2.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(r2b?.ran, 1); XCTAssertEqual(r2b?.failed, [])
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
