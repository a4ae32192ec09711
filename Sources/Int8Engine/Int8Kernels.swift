import Foundation
import CInt8

/// The kernel path: AVX-512 VNNI where the CPU has it (chosen at run time), else portable C.
/// `QAT_INT8_KERNELS=portable` forces the portable kernels (tests compare both).
public enum Int8Kernels {
    nonisolated(unsafe) public static var path: Int32 = {
        if ProcessInfo.processInfo.environment["QAT_INT8_KERNELS"] == "portable" { return Int32(QI8_PATH_PORTABLE) }
        return qi8_best_path()
    }()
    public static let best: Int32 = qi8_best_path()
    public static let portable = Int32(QI8_PATH_PORTABLE)
}
