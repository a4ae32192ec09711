import Foundation
import CBLAS

/// Run-time choice of OpenBLAS's GEMM kernels for CPUs the installed OpenBLAS does not recognise.
///
/// OpenBLAS picks its kernels from the CPU model when the library loads. Debian's 0.3.21 does not know
/// recent Xeon models (e.g. family 6 model 207, AVX-512 + VNNI) and falls back to its SSE3 "Prescott"
/// kernels, which run sgemm 2-3x slower than the AVX-512 ones on the same machine (a RetinaNet training
/// step measured 1676 ms with Prescott against 872 ms with SkylakeX kernels). The choice can only be made
/// through `OPENBLAS_CORETYPE` before the library loads, so the `qat` executable calls
/// `reexecIfBetterKernelsExist` first: when OpenBLAS reports a generic fallback and the CPU has AVX-512
/// (F, VL, BW, DQ) or AVX2 + FMA, it sets `OPENBLAS_CORETYPE` to SkylakeX or Haswell and re-executes
/// itself once. A user's own `OPENBLAS_CORETYPE` always wins, and `QAT_BLAS_DISPATCH=0` turns this off.
public enum BLASDispatch {
    /// The kernel set OpenBLAS chose (e.g. "Prescott", "Haswell", "SkylakeX").
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// Kernel sets we replace: OpenBLAS's fallbacks for CPUs it does not identify.
    static let fallbacks: Set<String> = ["prescott", "core2", "nehalem", "katmai", "coppermine", "northwood", "banias", "atom", "unknown"]

    /// The better kernel set for this CPU, or nil when OpenBLAS's own choice stands.
    public static func preferredCoreType(cpuFlags: Set<String>, current: String, environment: [String: String]) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil, environment["QAT_BLAS_DISPATCH"] != "0",
              fallbacks.contains(current.lowercased()) else { return nil }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512dq"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The `flags` line of /proc/cpuinfo (empty elsewhere).
    public static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// Re-executes the process with `OPENBLAS_CORETYPE` set when that gives faster kernels (see the type).
    /// Returns normally when nothing is to be done or the re-exec fails.
    public static func reexecIfBetterKernelsExist() {
        #if os(Linux)
        let env = ProcessInfo.processInfo.environment
        guard env["QAT_BLAS_REEXEC"] == nil,
              let core = preferredCoreType(cpuFlags: cpuFlags(), current: coreName, environment: env) else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("QAT_BLAS_REEXEC", "1", 1)   // never twice, whatever OpenBLAS makes of the setting
        let args = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", args)
        // Only reached when exec failed: carry on with the kernels we have.
        unsetenv("OPENBLAS_CORETYPE")
        #endif
    }
}
