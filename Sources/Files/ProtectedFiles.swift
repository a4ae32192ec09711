import Foundation

/// Files no command output may replace: checkpoints (and any other HDF5 file: the chips of a data
/// set), recipes, and a run's metrics. `qat eval X/best.h5 --out X/best.h5` or `qat export notebook RUN
/// --out RUN/metrics.jsonl` would otherwise destroy the run they read. Writers that own such a file (a
/// run saving its `last.h5`) say so with `Replacing.anything`.
public enum ProtectedFiles {
    /// The HDF5 format signature (first 8 bytes of every file h5py, libhdf5 or qat writes).
    static let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    /// What the existing file at `path` is, when it is one of the protected kinds ("a checkpoint", "a
    /// recipe", "a run's metrics"); nil when nothing is there or it may be replaced.
    public static func kind(of path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let name = (path as NSString).lastPathComponent
        let ext = (name as NSString).pathExtension.lowercased()
        if ext == "h5" || ext == "hdf5" || startsWithHDF5Signature(path) { return "a checkpoint (an HDF5 file)" }
        if ext == "yaml" || ext == "yml" { return "a recipe (YAML)" }
        if ext == "jsonl" || name == "final.json" { return "a run's metrics" }
        return nil
    }

    /// Refuses an output path that holds a protected file (or a folder); call it before a long
    /// computation whose result goes there, so nothing is computed in vain.
    public static func check(output path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw FileError(.notAFile, path: path, "is a directory; give a file name for the output")
        }
        if let kind = kind(of: path) {
            throw FileError(.protected, path: path, "is \(kind); an output never replaces a checkpoint, a recipe or a run's metrics. Choose another output file (nothing was written)")
        }
    }

    static func startsWithHDF5Signature(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: hdf5Signature.count)
        return read(fd, &head, head.count) == head.count && head == hdf5Signature
    }
}
