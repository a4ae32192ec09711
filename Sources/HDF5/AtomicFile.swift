import Foundation

/// A test hook that makes `AtomicFile.write` fail the way a full disk does.
public struct WriteFaults: Sendable {
    /// After this many bytes reach the file, `write(2)` reports ENOSPC.
    public var failAfterBytes: Int?
    public init(failAfterBytes: Int? = nil) { self.failAfterBytes = failAfterBytes }
}

/// Replaces a file so that it is always either the complete old file or the complete new one.
public enum AtomicFile {
    /// Writes `bytes` to a temporary file in `path`'s folder, fsyncs it, renames it over `path` and
    /// fsyncs the folder. On any failure (disk full, I/O error, a failing `close`) the temporary file is
    /// removed and `path` is untouched; the error names the cause from `errno`.
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String, faults: WriteFaults = WriteFaults()) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw HDF5Error(.io, file: path, "folder \(dir) does not exist; create it first")
        }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw HDF5Error(.notAFile, file: path, "is a directory; give a file name inside it")
        }
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
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
        // The rename is durable once the folder is; a folder that cannot be fsynced (some network file
        // systems) still holds a complete file, so this is best effort.
        let dfd = Foundation.open(dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    static func failure(_ path: String, _ what: String, _ err: Int32) -> HDF5Error {
        let hint = err == ENOSPC || err == EDQUOT ? " (disk full: free some space and retry)" : ""
        return HDF5Error(.io, file: path, "\(what): \(String(cString: strerror(err)))\(hint); \(path) is unchanged")
    }
}
