import Foundation

/// Why an operation on a path the user gave failed, in words that name the path and the cause
/// ("read-only file system", "runs is a file, not a folder", "no space left on device") instead of
/// Foundation's `NSCocoaErrorDomain Code=512`. The cause comes from the error's errno when it carries
/// one; Foundation's "unknown write error" (512) carries none on Linux, so the path itself is then
/// examined: the nearest existing ancestor that is not a folder, a read-only file system, a folder
/// without write permission, a full disk.
public enum PathProblem {
    /// The cause of `error` (from Foundation or a POSIX call) for an operation on `path`.
    public static func cause(of error: Error, path: String, writing: Bool = true) -> String {
        if let e = errnoValue(of: error), e != 0 { return cause(errno: e, path: path, writing: writing) }
        return diagnose(path, writing: writing) ?? (error as NSError).localizedDescription
    }

    /// The cause of a failure with `errno` `e` on `path`.
    public static func cause(errno e: Int32, path: String, writing: Bool = true) -> String {
        switch e {
        case ENOTDIR: return diagnose(path, writing: writing) ?? "a part of the path is a file, not a folder"
        case ENOENT: return diagnose(path, writing: writing) ?? "does not exist"
        case EACCES, EPERM: return diagnose(path, writing: writing) ?? "permission denied"
        case EROFS: return "read-only file system; choose a path on a writable disk"
        case ENOSPC, EDQUOT: return "no space left on device (disk or quota full); free some space and retry"
        case ELOOP: return "symlink loop (a symbolic link that leads back to itself); fix or remove the link"
        case EISDIR: return "is a directory; give a file inside it"
        case ENAMETOOLONG: return "the path is too long"
        case EEXIST: return "already exists"
        default: return String(cString: strerror(e))
        }
    }

    /// The errno behind a Foundation or POSIX error, when it says.
    public static func errnoValue(of error: Error) -> Int32? {
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return Int32(ns.code) }
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain { return Int32(u.code) }
        guard ns.domain == NSCocoaErrorDomain else { return nil }
        switch ns.code {
        case CocoaError.fileWriteVolumeReadOnly.rawValue: return EROFS
        case CocoaError.fileWriteOutOfSpace.rawValue: return ENOSPC
        case CocoaError.fileWriteNoPermission.rawValue, CocoaError.fileReadNoPermission.rawValue: return EACCES
        case CocoaError.fileNoSuchFile.rawValue, CocoaError.fileReadNoSuchFile.rawValue: return ENOENT
        case CocoaError.fileWriteFileExists.rawValue: return EEXIST
        default: return nil
        }
    }

    /// Why `path` cannot be opened when `FileManager.fileExists` says it is not there: a symbolic link
    /// that loops or dangles (named as such), or nil when nothing at all is there (callers then say
    /// "does not exist" in their own words).
    public static func brokenLink(_ path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK else { return nil }
        return diagnose(path, writing: false)
    }

    /// What in the file system stops an operation on `path`: walks up to the nearest existing
    /// ancestor and reports it when it is not a folder, is on a read-only or full file system, or
    /// (writing) is a folder without write permission. nil when nothing is wrong there.
    public static func diagnose(_ path: String, writing: Bool = true) -> String? {
        var p = path.isEmpty ? "." : path
        var st = stat()
        // The nearest ancestor that exists (lstat: a dangling link is "existing" here).
        while lstat(p, &st) != 0 {
            if errno == ELOOP { return "symlink loop at \(p) (a symbolic link that leads back to itself); fix or remove the link" }
            let parent = (p as NSString).deletingLastPathComponent
            if parent.isEmpty || parent == p { return nil }
            p = parent
        }
        if p == path && (st.st_mode & S_IFMT) == S_IFLNK && stat(p, &st) != 0 {
            return errno == ELOOP ? "symlink loop (a symbolic link that leads back to itself); fix or remove the link"
                                  : "is a symbolic link to \((try? FileManager.default.destinationOfSymbolicLink(atPath: p)) ?? "?"), which does not exist"
        }
        _ = stat(p, &st)
        let isDir = (st.st_mode & S_IFMT) == S_IFDIR
        if p != path && !isDir { return "\(p) is a file, not a folder" }
        var fs = statvfs()
        if statvfs(p, &fs) == 0 {
            if writing && fs.f_flag & UInt(ST_RDONLY) != 0 { return "\(p) is on a read-only file system; choose a path on a writable disk" }
            if writing && fs.f_bavail == 0 { return "no space left on the device holding \(p); free some space and retry" }
        }
        if writing && isDir && access(p, W_OK) != 0 { return "\(p) is not writable (permission denied)" }
        if !writing && access(p, R_OK) != 0 { return "\(p) is not readable (permission denied)" }
        return nil
    }
}

/// A file-system failure on a path, as the command line prints it: the path, then the cause.
public struct PathError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var cause: String
    /// Nothing is at the path (no dangling link either), so callers may say it their own way.
    public var isNotFound = false
    public init(path: String, cause: String, isNotFound: Bool = false) { self.path = path; self.cause = cause; self.isNotFound = isNotFound }
    public var description: String { "\(path): \(cause)" }

    /// Foundation's file errors (which print as `NSCocoaErrorDomain Code=...`) as a `PathError` naming
    /// the path they carry and the cause; any other error unchanged.
    public static func translating(_ error: Error) -> Error {
        let ns = error as NSError
        guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return error }
        let path = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        guard let path else { return error }
        return PathError(path: path, cause: PathProblem.cause(of: error, path: path))
    }
}
