import Foundation

/// Exclusive ownership of a directory (a run, a sweep cell, a sweep folder) or of a cache entry, by
/// `flock(LOCK_EX)` on a lock file (`DIR/.lock` for a directory). The kernel drops the lock when its
/// holder exits, however it ends (kill -9 included), so a crash never leaves anything locked; the file
/// itself stays and holds `PID HOST` of the last owner, for messages. Locks belong to an open file
/// description: a second acquisition fails even in the same process (two shards run as threads).
public final class FileLock: @unchecked Sendable {
    /// The lock file.
    public let path: String
    /// What the lock guards, as messages name it (e.g. "run directory runs/x/1").
    public let resource: String
    /// True when this acquisition created the lock file (an abandoned setup may remove it again).
    public let createdFile: Bool
    private var fd: Int32
    private let mutex = NSLock()

    private init(path: String, resource: String, fd: Int32, createdFile: Bool) {
        self.path = path; self.resource = resource; self.fd = fd; self.createdFile = createdFile
    }
    deinit { release() }

    /// The lock file of a directory.
    public static func file(ofDirectory dir: String) -> String { dir + "/.lock" }

    /// The process named in a lock file (the current owner while the lock is held, else the last one).
    public struct Holder: Equatable, Sendable, CustomStringConvertible {
        public var pid: Int32
        public var host: String
        public var description: String { host == Temporaries.host ? "process \(pid)" : "process \(pid) on \(host)" }
    }

    public static func holder(_ lockFile: String) -> Holder? {
        guard let text = try? String(contentsOfFile: lockFile, encoding: .utf8) else { return nil }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard parts.count >= 1, let pid = Int32(parts[0]) else { return nil }
        return Holder(pid: pid, host: parts.count > 1 ? String(parts[1]) : Temporaries.host)
    }

    /// Takes the lock without waiting. Throws `FileError.busy` naming the resource and the process
    /// that holds it, or `.io` when the lock file cannot be created (a missing or read-only folder).
    public static func acquire(_ lockFile: String, guarding resource: String) throws -> FileLock {
        guard let lock = try attempt(lockFile, resource) else { throw busy(lockFile, resource) }
        return lock
    }

    /// Takes the lock, waiting while another process holds it: `waiting` is told once who that is;
    /// every `interval` seconds `cancelled` is asked whether to give up (then nil is returned).
    public static func acquire(_ lockFile: String, guarding resource: String, interval: Double = 0.2,
                               waiting: (Holder?) -> Void, cancelled: () -> Bool) throws -> FileLock? {
        var told = false
        while true {
            if let lock = try attempt(lockFile, resource) { return lock }
            if !told { waiting(holder(lockFile)); told = true }
            if cancelled() { return nil }
            Thread.sleep(forTimeInterval: interval)
        }
    }

    /// Whether some open file description holds the lock on `lockFile` now (nil: no such file). Probes
    /// with a read-only descriptor and leaves the file's owner record alone.
    public static func isLocked(_ lockFile: String) -> Bool? {
        let fd = open(lockFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT ? nil : true }
        defer { close(fd) }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            return true
        }
        flock(fd, LOCK_UN)
        return false
    }

    /// Releases the lock (also on deinit). The lock file stays.
    public func release() {
        mutex.lock(); defer { mutex.unlock() }
        guard fd >= 0 else { return }
        close(fd)   // closing the last descriptor of the open file description drops the flock
        fd = -1
    }

    public var isHeld: Bool { mutex.lock(); defer { mutex.unlock() }; return fd >= 0 }

    /// Removes the lock file while holding the lock, then releases it: for a directory that is being
    /// removed because its setup failed. A process that opened the old file meanwhile notices that it is
    /// no longer the file at `path` and opens the new one.
    public func releaseRemovingFile() {
        mutex.lock()
        if fd >= 0 { unlink(path) }
        mutex.unlock()
        release()
    }

    static func busy(_ lockFile: String, _ resource: String) -> FileError {
        let who = holder(lockFile).map(\.description) ?? "another process"
        return FileError(.busy, path: lockFile, "\(resource) is in use by \(who) (it holds \(lockFile)); wait until it ends or stop it, then retry")
    }

    /// One try: the lock, nil when another open file description holds it.
    private static func attempt(_ lockFile: String, _ resource: String) throws -> FileLock? {
        while true {
            var created = true
            var fd = open(lockFile, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd < 0 && errno == EEXIST {
                created = false
                fd = open(lockFile, O_RDWR | O_CLOEXEC)
                if fd < 0 && errno == ENOENT { continue }   // removed between the two opens
            }
            guard fd >= 0 else {
                throw FileError(.io, path: lockFile, "cannot create the lock file of \(resource): \(FileError.errnoText(errno))")
            }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let err = errno
                close(fd)
                if err == EINTR { continue }
                if err == EWOULDBLOCK { return nil }
                throw FileError(.io, path: lockFile, "cannot lock \(resource): \(FileError.errnoText(err)) (does this file system support flock?)")
            }
            // The file may have been removed (and maybe recreated) between open and flock by an owner
            // abandoning the directory: then this lock guards nothing; start over.
            var a = stat(), b = stat()
            guard fstat(fd, &a) == 0, stat(lockFile, &b) == 0, a.st_dev == b.st_dev, a.st_ino == b.st_ino else {
                close(fd)
                continue
            }
            let text = Array("\(getpid()) \(Temporaries.host)\n".utf8)
            if ftruncate(fd, 0) == 0 { _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
            return FileLock(path: lockFile, resource: resource, fd: fd, createdFile: created)
        }
    }
}
