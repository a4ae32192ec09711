import Foundation

/// Reads a file the user named (a recipe, a sweep, an annotation or label file, an image), so that
/// every such read fails the same clear way: not found, a symlink loop, a dangling link, a directory,
/// not a regular file, unreadable, or larger than the reader accepts (refused from its size, before
/// anything is read).
public enum UserFile {
    /// The whole file. `what` names the kind of file for messages ("recipe file", "annotation file").
    public static func read(_ path: String, maxBytes: Int, what: String = "file") throws -> Data {
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT, PathProblem.diagnose(path, writing: false) == nil { throw PathError(path: path, cause: "\(what) does not exist", isNotFound: true) }
            throw PathError(path: path, cause: PathProblem.cause(errno: e, path: path, writing: false))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PathError(path: path, cause: PathProblem.cause(errno: errno, path: path, writing: false)) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw PathError(path: path, cause: "is a directory; give the \(what) inside it")
        default: throw PathError(path: path, cause: "is not a regular file (a device, pipe or socket); give a \(what)")
        }
        let size = Int(st.st_size)
        guard size <= maxBytes else {
            throw PathError(path: path, cause: "is \(size) bytes; a \(what) may have at most \(maxBytes) bytes")
        }
        var data = Data(count: size)
        var done = 0
        while done < size {
            let n = data.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw PathError(path: path, cause: "cannot read: \(PathProblem.cause(errno: errno, path: path, writing: false))")
            }
            if n == 0 { break }   // the file shrank while being read
            done += n
        }
        return data.prefix(done)
    }

    /// The whole file as UTF-8 text.
    public static func readText(_ path: String, maxBytes: Int, what: String = "file") throws -> String {
        let data = try read(path, maxBytes: maxBytes, what: what)
        guard let text = String(data: data, encoding: .utf8) else {
            throw PathError(path: path, cause: "is not UTF-8 text; a \(what) must be a UTF-8 text file")
        }
        return text
    }
}
