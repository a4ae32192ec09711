import XCTest
import Foundation
@testable import UserPaths

final class UserPathsTests: XCTestCase {
    var dir = ""
    override func setUp() {
        dir = NSTemporaryDirectory() + "userpaths-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func cause(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    func testReadRefusesWhatIsNotAReadableFileWithTheReason() throws {
        try "a: 1\n".write(toFile: dir + "/ok.yaml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try UserFile.readText(dir + "/ok.yaml", maxBytes: 100), "a: 1\n")
        // A missing file, a directory, a symlink loop, a dangling link, a FIFO, a too large file, non-UTF-8.
        XCTAssertEqual(cause { _ = try UserFile.read(dir + "/none.yaml", maxBytes: 100, what: "recipe file") }, "\(dir)/none.yaml: recipe file does not exist")
        XCTAssertTrue(cause { _ = try UserFile.read(dir, maxBytes: 100, what: "recipe file") }.hasSuffix("is a directory; give the recipe file inside it"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/loop1", withDestinationPath: dir + "/loop2")
        try FileManager.default.createSymbolicLink(atPath: dir + "/loop2", withDestinationPath: dir + "/loop1")
        XCTAssertTrue(cause { _ = try UserFile.read(dir + "/loop1", maxBytes: 100) }.contains("symlink loop"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling", withDestinationPath: dir + "/gone.yaml")
        XCTAssertTrue(cause { _ = try UserFile.read(dir + "/dangling", maxBytes: 100) }.contains("is a symbolic link to \(dir)/gone.yaml, which does not exist"))
        XCTAssertEqual(mkfifo(dir + "/fifo", 0o644), 0)
        XCTAssertTrue(cause { _ = try UserFile.read(dir + "/fifo", maxBytes: 100) }.contains("is not a regular file"))
        XCTAssertTrue(cause { _ = try UserFile.read(dir + "/ok.yaml", maxBytes: 3, what: "recipe file") }.contains("is 5 bytes; a recipe file may have at most 3 bytes"))
        try Data([0xFF, 0xFE, 0x41]).write(to: URL(fileURLWithPath: dir + "/bin.yaml"))
        XCTAssertTrue(cause { _ = try UserFile.readText(dir + "/bin.yaml", maxBytes: 100) }.contains("is not UTF-8 text"))
    }

    /// What a "file exists?" check cannot tell apart: nothing there (nil, the caller's "does not
    /// exist"), a symlink loop, a dangling link.
    func testBrokenLinksAreNamedAndMissingFilesLeftToTheCaller() throws {
        XCTAssertNil(PathProblem.brokenLink(dir + "/none.h5"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/loop1", withDestinationPath: dir + "/loop2")
        try FileManager.default.createSymbolicLink(atPath: dir + "/loop2", withDestinationPath: dir + "/loop1")
        XCTAssertEqual(PathProblem.brokenLink(dir + "/loop1"), "symlink loop (a symbolic link that leads back to itself); fix or remove the link")
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling", withDestinationPath: dir + "/gone.h5")
        XCTAssertEqual(PathProblem.brokenLink(dir + "/dangling"), "is a symbolic link to \(dir)/gone.h5, which does not exist")
    }

    func testWriteFailuresNameThePathAndTheCause() throws {
        try Data().write(to: URL(fileURLWithPath: dir + "/afile"))
        // Foundation on Linux reports ENOTDIR as "unknown write error" (Code=512) without an errno: the
        // path is examined instead.
        do { try FileManager.default.createDirectory(atPath: dir + "/afile/sub", withIntermediateDirectories: true); XCTFail("created") } catch {
            XCTAssertEqual(PathProblem.cause(of: error, path: dir + "/afile/sub"), "\(dir)/afile is a file, not a folder")
            let translated = "\(PathError.translating(error))"
            XCTAssertFalse(translated.contains("NSCocoaErrorDomain"), translated)
        }
        XCTAssertTrue(PathProblem.cause(errno: ENOSPC, path: dir).contains("no space left on device"))
        XCTAssertTrue(PathProblem.cause(errno: EROFS, path: dir).contains("read-only file system"))
        XCTAssertEqual(PathProblem.errnoValue(of: CocoaError(.fileWriteVolumeReadOnly)), EROFS)
        XCTAssertEqual(PathProblem.errnoValue(of: CocoaError(.fileWriteOutOfSpace)), ENOSPC)
        XCTAssertNil(PathProblem.diagnose(dir + "/new/deeper"), "a writable folder with nothing in the way")
        // Other errors pass through untouched.
        struct Other: Error {}
        XCTAssertTrue(PathError.translating(Other()) is Other)
    }

    /// A real read-only file system and a full one (small tmpfs mounts) when this machine lets the test
    /// mount them; skipped otherwise (the errno mapping above still runs).
    func testReadOnlyAndFullFileSystemsAreNamed() throws {
        let mnt = dir + "/ro"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        guard geteuid() == 0, mount("tmpfs", mnt, "tmpfs", UInt(MS_RDONLY), "size=64k") == 0 else {
            throw XCTSkip("cannot mount a read-only tmpfs here (needs root and CAP_SYS_ADMIN)")
        }
        defer { umount(mnt) }
        do { try FileManager.default.createDirectory(atPath: mnt + "/run", withIntermediateDirectories: true); XCTFail("created") } catch {
            XCTAssertTrue(PathProblem.cause(of: error, path: mnt + "/run").contains("read-only file system"), PathProblem.cause(of: error, path: mnt + "/run"))
        }
        do { try "x".write(toFile: mnt + "/x.txt", atomically: true, encoding: .utf8); XCTFail("written") } catch {
            XCTAssertEqual("\(PathError.translating(error))".contains("read-only file system"), true, "\(PathError.translating(error))")
        }

        let full = dir + "/full"
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        XCTAssertEqual(mount("tmpfs", full, "tmpfs", 0, "size=64k"), 0)
        defer { umount(full) }
        do { try Data(count: 1 << 20).write(to: URL(fileURLWithPath: full + "/big.bin")); XCTFail("written") } catch {
            let text = "\(PathError.translating(error))"
            XCTAssertTrue(text.contains("no space left on device"), text)
            XCTAssertFalse(text.contains("NSCocoaErrorDomain"), text)
        }
    }
}
