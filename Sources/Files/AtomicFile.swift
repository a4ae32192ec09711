import Foundation
import UserPaths

/// A test hook that makes `AtomicFile.write` fail the way a full disk does.
public struct WriteFaults: Sendable {
    /// After this many bytes reach the file, `write(2)` reports ENOSPC.
    public var failAfterBytes: Int?
    public init(failAfterBytes: Int? = nil) { self.failAfterBytes = failAfterBytes }
}

/// What an atomic write may replace.
public enum Replacing: Sendable {
    /// A command's output: an existing checkpoint, recipe or run metrics file at the destination is
    /// refused (`ProtectedFiles`), so `--out` can never destroy one.
    case outputsOnly
    /// The writer owns the file and replaces it whatever it is (a run's `last.h5`, its
    /// `metrics.jsonl`, a sweep's summary).
    case anything
}

/// Every file the framework writes goes through here: it is always either the complete old file or the
/// complete new one, never a mix, whatever happens to the process or the disk.
public enum AtomicFile {
    /// Writes `bytes` to a temporary file in `path`'s folder (`Temporaries`: named after this process),
    /// fsyncs it, renames it over `path` and fsyncs the folder. Stale temporaries of `path` left by
    /// writers that died first are removed. On any failure (disk full, I/O error, a failing `close`)
    /// the temporary file is removed and `path` is untouched; the error names the cause from `errno`.
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String, replacing: Replacing = .outputsOnly,
                             faults: WriteFaults = WriteFaults()) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw FileError(.io, path: path, PathProblem.diagnose(path) ?? "folder \(dir) does not exist; create it first")
        }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw FileError(.notAFile, path: path, "is a directory; give a file name inside it")
        }
        if replacing == .outputsOnly { try ProtectedFiles.check(output: path) }
        Temporaries.removeStale(in: dir, for: url.lastPathComponent)
        let tmpName = Temporaries.begin(for: url.lastPathComponent, .file)
        defer { Temporaries.end(tmpName) }
        let tmp = dir + "/" + tmpName
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path, "cannot create a temporary file in \(dir)", errno) }
        var open = true
        do {
            var offset = 0
            while offset < bytes.count {
                var chunk = min(bytes.count - offset, 1 << 30)
                if let limit = faults.failAfterBytes { chunk = min(chunk, max(limit - offset, 0)) }
                let n = chunk == 0 ? -1 : Foundation.write(fd, bytes.baseAddress! + offset, chunk)
                let err = chunk == 0 ? ENOSPC : errno
                if n < 0 {
                    if err == EINTR { continue }
                    throw failure(path, "cannot write \(tmp)", err)
                }
                offset += n
            }
            guard fsync(fd) == 0 else { throw failure(path, "cannot flush \(tmp) to disk (fsync)", errno) }
            open = false
            // close can report a deferred write error (NFS, quotas): it counts like a failed write.
            guard close(fd) == 0 else { throw failure(path, "cannot close \(tmp)", errno) }
            guard rename(tmp, path) == 0 else { throw failure(path, "cannot move the finished temporary file into place", errno) }
        } catch {
            if open { close(fd) }
            unlink(tmp)
            throw error
        }
        syncFolder(dir)
    }

    public static func write(_ data: Data, to path: String, replacing: Replacing = .outputsOnly) throws {
        try data.withUnsafeBytes { try write($0, to: path, replacing: replacing) }
    }

    public static func write(_ text: String, to path: String, replacing: Replacing = .outputsOnly) throws {
        try write(Data(text.utf8), to: path, replacing: replacing)
    }

    /// Makes a rename in `dir` durable. A folder that cannot be fsynced (some network file systems)
    /// still holds the complete file, so this is best effort.
    static func syncFolder(_ dir: String) {
        let dfd = open(dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    static func failure(_ path: String, _ what: String, _ err: Int32) -> FileError {
        FileError(.io, path: path, "\(what): \(FileError.errnoText(err)); \(path) is unchanged")
    }
}
