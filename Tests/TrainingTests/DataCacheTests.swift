import XCTest
import Foundation
import Files
import Recipes
@testable import Training

final class DataCacheTests: XCTestCase {
    /// One process generates a cache entry while holding its lock; another that needs it waits (naming
    /// the holder) and then uses it; temporary folders of dead generators are removed at the next start.
    func testACacheEntryIsGeneratedOnceUnderItsLockAndStaleFoldersGo() throws {
        let cache = tempDir("cache")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        var spec = Recipe.DataSpec()
        spec.cache = cache
        spec.synth.images = 20; spec.synth.size = 64; spec.synth.imbalance = 2; spec.synth.chipSize = 8
        let key = "aircraft-n20-s64-seed0-imb2-noise0-symmetric-chip8"
        let dead = try deadPID()
        let stale = ".\(key).partial-\(Temporaries.host)-\(dead)-1", live = ".\(key).partial-\(Temporaries.host)-\(getppid())-2"
        let legacy = "\(key).partial-\(UUID().uuidString)"   // what builds before StagedFolder left
        for d in [stale, live, legacy] { try FileManager.default.createDirectory(atPath: cache + "/" + d + "/images", withIntermediateDirectories: true) }

        // Another owner holds the entry: folder() waits and says for whom.
        let held = try FileLock.acquire(cache + "/.\(key).lock", guarding: "test")
        let lock = NSLock()
        nonisolated(unsafe) var lines: [String] = []
        nonisolated(unsafe) var result: String? = nil
        let done = DispatchSemaphore(value: 0)
        let s = spec
        Thread.detachNewThread {
            result = try? SyntheticBenchmark.folder(s) { l in lock.lock(); lines.append(l); lock.unlock() }
            done.signal()
        }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && !{ lock.lock(); defer { lock.unlock() }; return !lines.isEmpty }() { Thread.sleep(forTimeInterval: 0.01) }
        lock.lock()
        XCTAssertEqual(lines.first, "data: waiting for process \(getpid()), which is generating \(cache)/\(key)")
        lock.unlock()
        XCTAssertEqual(contents(cache), [live, legacy, ".\(key).lock"], "the dead generator's folder is gone, the live one's stays; nothing is generated while another process holds the entry")
        held.release()
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(result, cache + "/" + key)
        lock.lock()
        XCTAssertEqual(lines.filter { $0.hasPrefix("data: generating") }.count, 1, "\(lines)")
        lock.unlock()
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache + "/\(key)/chips/test.h5"))
        XCTAssertEqual(contents(cache), [key, live, ".\(key).lock"])
        // The next caller finds it complete and generates nothing.
        var again: [String] = []
        XCTAssertEqual(try SyntheticBenchmark.folder(spec) { again.append($0) }, cache + "/" + key)
        XCTAssertEqual(again, [])
    }
}
