import Foundation

/// A file that only grows by whole records: `metrics.jsonl`, `train.log`, `evolve.csv`. Each record
/// goes out in one `write(2)` on an `O_APPEND` descriptor, so records never interleave mid-line and a
/// kill leaves at most the last one incomplete (readers of these files skip a line that does not
/// parse). Errors (a full disk) are thrown, never fatal.
public final class AppendFile: @unchecked Sendable {
    public let path: String
    private let fd: Int32

    /// Opens `path` for appending, creating it if needed.
    public init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError(.io, path: path, "cannot open for appending: \(FileError.errnoText(errno))") }
    }
    deinit { close(fd) }

    public func append(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(.io, path: path, "cannot append: \(FileError.errnoText(errno))")
            }
            offset += n
        }
    }

    /// Opens, appends and closes.
    public static func append(_ text: String, to path: String) throws { try AppendFile(path: path).append(text) }
}
