import XCTest
import Foundation
@testable import HDF5

/// `H5Sandbox.vet` with stand-in children (shell scripts): a child that exits 0 or 1 lets the caller
/// read; one killed by a signal, one that exits otherwise and one that hangs past the limit are errors
/// naming the file. The real child (`qat _read-hdf5`) on a file that crashes libhdf5 is tested in
/// qatTests (ReliabilityCLITests).
final class H5SandboxTests: XCTestCase {
    var dir: String!
    override func setUp() { dir = scratchDir() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func child(_ body: String) throws -> String {
        let p = dir + "/child-\(UUID().uuidString).sh"
        try "#!/bin/sh\n\(body)\n".write(toFile: p, atomically: true, encoding: .utf8)
        chmod(p, 0o755)
        return p
    }

    func testChildOutcomes() throws {
        let file = dir + "/x.h5"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: file))
        // The child gets the command, the kind, the file and the caller's arguments.
        let args = dir + "/args"
        try H5Sandbox.vet(file, kind: "checkpoint", arguments: ["7", "9"], timeLimit: 30,
                          executable: try child("echo \"$@\" > \(args); exit 0"))
        XCTAssertEqual(try String(contentsOfFile: args, encoding: .utf8), "_read-hdf5 checkpoint \(file) 7 9\n")
        // Exit 1: the child refused the file with a message; the caller reads it and reports the same.
        XCTAssertNoThrow(try H5Sandbox.vet(file, kind: "checkpoint", arguments: [], timeLimit: 30, executable: try child("exit 1")))

        func refused(_ script: String, limit: Double = 30) -> String? {
            do { try H5Sandbox.vet(file, kind: "hdf5_chips", arguments: [], timeLimit: limit, executable: try child(script)); return nil }
            catch let e as HDF5Error { XCTAssertEqual(e.kind, .corrupt); XCTAssertEqual(e.file, file); return e.message }
            catch { XCTFail("\(error)"); return nil }
        }
        let segv = refused("kill -SEGV $$")
        XCTAssertTrue(segv?.contains("libhdf5 crashed reading it (SIGSEGV") == true && segv?.contains("nothing was loaded") == true, segv ?? "no error")
        XCTAssertTrue(refused("kill -KILL $$")?.contains("SIGKILL, e.g. out of memory") == true)
        XCTAssertTrue(refused("exit 3")?.contains("ended with status 3") == true)
        let start = Date()
        let hang = refused("exec sleep 30", limit: 0.5)
        XCTAssertTrue(hang?.contains("did not finish within 0 s") == true || hang?.contains("did not finish within 1 s") == true, hang ?? "no error")
        XCTAssertLessThan(Date().timeIntervalSince(start), 10, "the hung child was not killed at the limit")
    }

    /// Paths that are not regular files are left to the in-process reader's messages (no child).
    func testNonFilesAreLeftToTheReader() throws {
        let never = try child("kill -SEGV $$")
        XCTAssertNoThrow(try H5Sandbox.vet(dir + "/missing.h5", kind: "checkpoint", arguments: [], timeLimit: 30, executable: never))
        XCTAssertNoThrow(try H5Sandbox.vet(dir, kind: "checkpoint", arguments: [], timeLimit: 30, executable: never))
    }

    func testTimeLimitGrowsWithTheFile() {
        XCTAssertEqual(H5Sandbox.timeLimit(fileBytes: 0), 60)
        XCTAssertEqual(H5Sandbox.timeLimit(fileBytes: 2_000_000_000), 160)
    }
}
