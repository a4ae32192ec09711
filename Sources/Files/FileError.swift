/// A file-system operation that failed or was refused: which path, what happened (the `errno` text
/// when there is one) and what to do about it.
public struct FileError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// A system call failed (disk full, permissions, a missing folder).
        case io
        /// A folder where a file is expected.
        case notAFile
        /// Another process owns the directory or cache entry (`FileLock`).
        case busy
        /// An output would replace a checkpoint, a recipe or a run's metrics (`ProtectedFiles`).
        case protected
        /// A destination folder that must be absent or empty holds files (`StagedFolder`).
        case notEmpty
    }
    public let kind: Kind
    public let path: String
    public let message: String
    public init(_ kind: Kind, path: String, _ message: String) { self.kind = kind; self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }

    /// The `errno` text, with a hint for the errors a user can act on.
    static func errnoText(_ err: Int32) -> String {
        let text = String(cString: strerror(err))
        switch err {
        case ENOSPC, EDQUOT: return text + " (disk full: free some space and retry)"
        case EACCES, EPERM, EROFS: return text + " (check the folder's permissions, or choose a writable location)"
        default: return text
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
