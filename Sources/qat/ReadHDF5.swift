import Foundation
import HDF5
import Checkpoint
import Datasets

/// The child side of `H5Sandbox`: `qat _read-hdf5 KIND FILE ARGS...` performs the read the parent is
/// about to do and exits 0 (read), 1 (refused, message on stderr) or 2 (bad arguments). If libhdf5
/// crashes on the file, this process dies instead of the parent. Hidden: not a user command.
enum ReadHDF5 {
    static func run(_ args: [String]) -> Int32 {
        func int(_ i: Int) -> Int? { i < args.count ? Int(args[i]) : nil }
        guard args.count >= 2 else { return 2 }
        let (kind, path) = (args[0], args[1])
        do {
            switch kind {
            case "checkpoint":
                guard let entry = int(2), let total = int(3) else { return 2 }
                _ = try Checkpoint.load(from: path, limits: LoadLimits(maxEntryElements: entry, maxTotalElements: total))
            case "hdf5_chips":
                guard let bytes = int(2) else { return 2 }
                _ = try HDF5ClassificationSource(path: path, maxImageBytes: bytes)
            default:
                return 2
            }
            return 0
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            return 1
        }
    }
}
