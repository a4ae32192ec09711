import Foundation
import CInt8

/// The kernel path: AVX-512 VNNI where the CPU has it, else AVX2 + FMA, else portable C (chosen at run
/// time). `QAT_INT8_KERNELS=avx2|portable` forces a path (tests compare them all).
public enum Int8Kernels {
    nonisolated(unsafe) public static var path: Int32 = {
        switch ProcessInfo.processInfo.environment["QAT_INT8_KERNELS"] {
        case "portable": return Int32(QI8_PATH_PORTABLE)
        case "avx2" where qi8_supports(Int32(QI8_PATH_AVX2)) != 0: return Int32(QI8_PATH_AVX2)
        default: return qi8_best_path()
        }
    }()
    public static let best: Int32 = qi8_best_path()
    public static let portable = Int32(QI8_PATH_PORTABLE)
    /// Every path this CPU runs.
    public static var available: [Int32] {
        [Int32(QI8_PATH_PORTABLE), Int32(QI8_PATH_AVX2), Int32(QI8_PATH_AVX512VNNI)].filter { qi8_supports($0) != 0 }
    }
    public static func name(_ p: Int32) -> String {
        switch p {
        case Int32(QI8_PATH_AVX512VNNI): return "avx512-vnni"
        case Int32(QI8_PATH_AVX2): return "avx2"
        default: return "portable"
        }
    }
}
