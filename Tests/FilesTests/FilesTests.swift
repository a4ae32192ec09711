import XCTest
import Foundation
@testable import Files

func tempDir(_ tag: String) -> String {
    let d = NSTemporaryDirectory() + "qat-files-\(tag)-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// The pid of a process that has exited (and been reaped): a writer that died.
func deadPID() throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", "exit 0"]
    try p.run()
    p.waitUntilExit()
    return p.processIdentifier
}

final class FileLockTests: XCTestCase {
    /// flock locks belong to an open file description: a second acquisition is refused even in the
    /// same process, with the resource and the holder's pid in the message; after release it succeeds.
    func testASecondOwnerIsRefusedWithTheHoldersPID() throws {
        let dir = tempDir("lock")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = FileLock.file(ofDirectory: dir)
        let first = try FileLock.acquire(file, guarding: "run directory \(dir)")
        XCTAssertTrue(first.createdFile)
        XCTAssertEqual(FileLock.holder(file), FileLock.Holder(pid: getpid(), host: Temporaries.host))
        XCTAssertThrowsError(try FileLock.acquire(file, guarding: "run directory \(dir)")) { e in
            XCTAssertEqual((e as? FileError)?.kind, .busy)
            XCTAssertTrue("\(e)".contains("run directory \(dir) is in use by process \(getpid())"), "\(e)")
        }
        first.release()
        XCTAssertFalse(first.isHeld)
        let second = try FileLock.acquire(file, guarding: "run directory \(dir)")
        XCTAssertFalse(second.createdFile)
        XCTAssertTrue(second.isHeld)
    }

    /// Dropping the last reference releases the lock (as the kernel does when a process dies).
    func testDeinitReleases() throws {
        let dir = tempDir("lockdeinit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = FileLock.file(ofDirectory: dir)
        do { _ = try FileLock.acquire(file, guarding: "x") }
        XCTAssertNoThrow(try FileLock.acquire(file, guarding: "x"))
    }

    /// A waiting acquisition is told who holds the lock, and gets it once that owner releases it.
    func testWaitingAcquisitionNamesTheHolderAndGetsTheLock() throws {
        let dir = tempDir("lockwait")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/.entry.lock"
        let first = try FileLock.acquire(file, guarding: "data cache entry e")
        let told = NSLock()
        nonisolated(unsafe) var holder: FileLock.Holder?? = nil
        nonisolated(unsafe) var second: FileLock? = nil
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            second = try? FileLock.acquire(file, guarding: "data cache entry e", interval: 0.01,
                                           waiting: { h in told.lock(); holder = .some(h); told.unlock() }, cancelled: { false })
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.2)
        told.lock(); XCTAssertEqual(holder??.pid, getpid()); told.unlock()
        XCTAssertNil(second)
        first.release()
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
        XCTAssertEqual(second?.isHeld, true)
        // Cancelled while waiting: nil, no lock.
        let third = try FileLock.acquire(file, guarding: "e", interval: 0.01, waiting: { _ in }, cancelled: { true })
        XCTAssertNil(third)
    }

    /// An owner that removes its lock file while holding it (an abandoned directory) does not leave a
    /// process that opened the old file believing it owns the path.
    func testARemovedLockFileIsNotTrusted() throws {
        let dir = tempDir("lockremoved")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = FileLock.file(ofDirectory: dir)
        let first = try FileLock.acquire(file, guarding: "d")
        first.releaseRemovingFile()
        XCTAssertFalse(FileManager.default.fileExists(atPath: file))
        let second = try FileLock.acquire(file, guarding: "d")
        XCTAssertTrue(second.createdFile)
        XCTAssertThrowsError(try FileLock.acquire(file, guarding: "d"))
    }

    func testAMissingFolderIsAnIOErrorNamingIt() {
        XCTAssertThrowsError(try FileLock.acquire("/nonexistent-qat-folder/.lock", guarding: "run directory /nonexistent-qat-folder")) { e in
            XCTAssertEqual((e as? FileError)?.kind, .io)
            XCTAssertTrue("\(e)".contains("cannot create the lock file of run directory /nonexistent-qat-folder"), "\(e)")
        }
    }
}

final class TemporariesTests: XCTestCase {
    func testNamesParseBack() {
        let n = Temporaries.name(for: "last.h5", .file)
        XCTAssertTrue(n.hasPrefix(".last.h5.tmp-\(Temporaries.host)-\(getpid())-"), n)
        let p = Temporaries.parse(n)
        XCTAssertEqual(p?.target, "last.h5"); XCTAssertEqual(p?.kind, .file)
        XCTAssertEqual(p?.owner, Temporaries.Owner(host: Temporaries.host, pid: getpid()))
        let f = Temporaries.parse(".aircraft-n40-s96.partial-node-7.example.org-123-456")
        XCTAssertEqual(f?.target, "aircraft-n40-s96"); XCTAssertEqual(f?.kind, .folder)
        XCTAssertEqual(f?.owner, Temporaries.Owner(host: "node-7.example.org", pid: 123))
        // The form written before host names were added counts as this host's.
        XCTAssertEqual(Temporaries.parse(".best.h5.tmp-4242-99")?.owner, Temporaries.Owner(host: "", pid: 4242))
        for other in [".lock", "last.h5", ".tmp-1-2", ".x.tmp-", ".x.tmp-a-b", ".x.tmp-0-5", "x.tmp-host-1-2"] {
            XCTAssertNil(Temporaries.parse(other), other)
        }
    }

    func testLiveness() throws {
        let dead = try deadPID()
        XCTAssertEqual(Temporaries.isAlive(.init(host: Temporaries.host, pid: getpid())), true)
        XCTAssertEqual(Temporaries.isAlive(.init(host: Temporaries.host, pid: getppid())), true)
        XCTAssertEqual(Temporaries.isAlive(.init(host: Temporaries.host, pid: dead)), false)
        XCTAssertEqual(Temporaries.isAlive(.init(host: "", pid: dead)), false)
        XCTAssertNil(Temporaries.isAlive(.init(host: Temporaries.host + "x", pid: dead)), "another host's process cannot be judged")
    }

    /// Only temporaries of dead writers on this host go, files and folders: a live process's (here the
    /// test runner's parent), one this process is writing, another host's and ordinary files stay. One
    /// with this process's pid that it is not writing is a predecessor's with the same pid: stale.
    func testRemoveStale() throws {
        let dir = tempDir("stale")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dead = try deadPID(), h = Temporaries.host
        let writing = Temporaries.begin(for: "last.h5", .file)
        defer { Temporaries.end(writing) }
        let names = [".last.h5.tmp-\(h)-\(dead)-1", ".best.h5.tmp-\(dead)-2", ".last.h5.tmp-\(h)-\(getppid())-3",
                     ".last.h5.tmp-elsewhere-\(dead)-4", "last.h5", ".lock", writing, ".best.h5.tmp-\(h)-\(getpid())-6"]
        for n in names { XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/" + n, contents: Data("x".utf8))) }
        try FileManager.default.createDirectory(atPath: dir + "/.data.partial-\(h)-\(dead)-5/images", withIntermediateDirectories: true)
        XCTAssertEqual(Temporaries.removeStale(in: dir, for: "last.h5"), [".last.h5.tmp-\(h)-\(dead)-1"])
        XCTAssertEqual(Set(Temporaries.removeStale(in: dir)), [".best.h5.tmp-\(dead)-2", ".data.partial-\(h)-\(dead)-5", ".best.h5.tmp-\(h)-\(getpid())-6"])
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)),
                       [".last.h5.tmp-\(h)-\(getppid())-3", ".last.h5.tmp-elsewhere-\(dead)-4", "last.h5", ".lock", writing])
        Temporaries.end(writing)
        XCTAssertEqual(Temporaries.removeStale(in: dir, for: "last.h5"), [writing], "once written, a leftover of this process is stale")
        XCTAssertEqual(Temporaries.removeStale(in: dir + "/missing"), [])
    }
}

final class AtomicFileTests: XCTestCase {
    var dir: String!
    override func setUp() { dir = tempDir("atomic") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Outputs never replace a checkpoint (by extension or by the HDF5 signature), a recipe or a run's
    /// metrics; the owner of such a file replaces it with `.anything`.
    func testOutputsNeverReplaceProtectedFiles() throws {
        let hdf5 = Data(ProtectedFiles.hdf5Signature + [1, 2, 3])
        let cases: [(String, Data, String)] = [
            ("best.h5", Data("not even hdf5".utf8), "a checkpoint"),
            ("renamed.json", hdf5, "a checkpoint"),
            ("recipe.resolved.yaml", Data("name: x\n".utf8), "a recipe"),
            ("base.yml", Data("name: x\n".utf8), "a recipe"),
            ("metrics.jsonl", Data("{}\n".utf8), "a run's metrics"),
            ("final.json", Data("{}".utf8), "a run's metrics"),
        ]
        for (name, content, kind) in cases {
            let path = dir + "/" + name
            try content.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try AtomicFile.write("{\"accuracy\": 1}", to: path), name) { e in
                XCTAssertEqual((e as? FileError)?.kind, .protected)
                XCTAssertTrue("\(e)".contains("\(path): is \(kind)") && "\(e)".contains("nothing was written"), "\(e)")
            }
            XCTAssertThrowsError(try ProtectedFiles.check(output: path))
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), content, name)
            try AtomicFile.write("replaced", to: path, replacing: .anything)
            XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "replaced")
        }
        // Anything else, and new files of any name, are fine.
        try "old".write(toFile: dir + "/best.test.metrics.json", atomically: false, encoding: .utf8)
        try AtomicFile.write("new", to: dir + "/best.test.metrics.json")
        try AtomicFile.write("new", to: dir + "/new.h5")
        XCTAssertEqual(try String(contentsOfFile: dir + "/best.test.metrics.json", encoding: .utf8), "new")
        XCTAssertThrowsError(try ProtectedFiles.check(output: dir)) { XCTAssertTrue("\($0)".contains("is a directory"), "\($0)") }
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)).filter { $0.hasPrefix(".") }, [], "temporary files left")
    }

    /// A write cleans the temporaries of its own file that dead writers left, and nothing else.
    func testAWriteRemovesItsStaleTemporaries() throws {
        let dead = try deadPID(), h = Temporaries.host
        let stale = ".out.json.tmp-\(h)-\(dead)-7", live = ".out.json.tmp-\(h)-\(getppid())-8", other = ".other.json.tmp-\(h)-\(dead)-9"
        for n in [stale, live, other] { _ = FileManager.default.createFile(atPath: dir + "/" + n, contents: Data()) }
        try AtomicFile.write("x", to: dir + "/out.json")
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), [live, other, "out.json"])
    }

    func testErrorsNameThePath() {
        XCTAssertThrowsError(try AtomicFile.write("x", to: dir + "/missing/f.json")) { XCTAssertTrue("\($0)".contains("does not exist; create it first"), "\($0)") }
        XCTAssertThrowsError(try AtomicFile.write("x", to: dir)) { XCTAssertTrue("\($0)".contains("is a directory"), "\($0)") }
    }
}

final class StagedFolderTests: XCTestCase {
    var dir: String!
    override func setUp() { dir = tempDir("staged") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testTheFolderAppearsOnlyComplete() throws {
        let dest = dir + "/data"
        try StagedFolder.create(dest) { tmp in
            XCTAssertFalse(FileManager.default.fileExists(atPath: dest))
            XCTAssertTrue((tmp as NSString).lastPathComponent.hasPrefix(".data.partial-\(Temporaries.host)-\(getpid())-"), tmp)
            try "a".write(toFile: tmp + "/a.txt", atomically: false, encoding: .utf8)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["data"])
        XCTAssertEqual(try String(contentsOfFile: dest + "/a.txt", encoding: .utf8), "a")
        // An existing, non-empty destination is refused and untouched.
        XCTAssertThrowsError(try StagedFolder.create(dest) { _ in XCTFail("must not fill") }) { e in
            XCTAssertEqual((e as? FileError)?.kind, .notEmpty)
            XCTAssertTrue("\(e)".contains("already exists and is not empty"), "\(e)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dest), ["a.txt"])
    }

    /// A failing fill leaves neither the destination nor the temporary folder; an empty destination
    /// folder is filled.
    func testAFailedFillLeavesNothing() throws {
        struct Boom: Error {}
        let dest = dir + "/data"
        XCTAssertThrowsError(try StagedFolder.create(dest) { tmp in
            try "a".write(toFile: tmp + "/a.txt", atomically: false, encoding: .utf8)
            throw Boom()
        }) { XCTAssertTrue($0 is Boom) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
        try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: false)
        try StagedFolder.create(dest) { tmp in try "b".write(toFile: tmp + "/b.txt", atomically: false, encoding: .utf8) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dest), ["b.txt"])
    }

    /// What a killed writer left (a temporary folder of a dead process) does not block the next run and
    /// is removed by it; a live writer's folder stays.
    func testStaleTemporaryFoldersAreRemovedAtTheNextStart() throws {
        let dead = try deadPID()
        let stale = dir + "/.data.partial-\(Temporaries.host)-\(dead)-1", live = dir + "/.data.partial-\(Temporaries.host)-\(getppid())-2"
        for d in [stale, live] { try FileManager.default.createDirectory(atPath: d + "/images", withIntermediateDirectories: true) }
        try StagedFolder.create(dir + "/data") { _ in }
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["data", (live as NSString).lastPathComponent])
    }
}

final class AppendFileTests: XCTestCase {
    func testAppendsWholeLinesAndReportsErrors() throws {
        let dir = tempDir("append")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let f = try AppendFile(path: dir + "/metrics.jsonl")
        try f.append("{\"step\": 1}\n")
        try AppendFile.append("{\"step\": 2}\n", to: dir + "/metrics.jsonl")
        try f.append("{\"step\": 3}\n")
        XCTAssertEqual(try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8), "{\"step\": 1}\n{\"step\": 2}\n{\"step\": 3}\n")
        XCTAssertThrowsError(try AppendFile(path: dir)) { e in
            XCTAssertEqual((e as? FileError)?.kind, .io)
            XCTAssertTrue("\(e)".contains("\(dir): cannot open for appending"), "\(e)")
        }
    }
}
