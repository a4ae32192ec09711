import Dispatch
import Foundation
import CBLAS

/// Thread policy for every kernel: `QAT_NUM_THREADS` (default: all cores). OpenBLAS is told the same
/// number, so a GEMM and our own loops never oversubscribe the machine.
public enum Parallel {
    nonisolated(unsafe) private static var configured: Int = {
        let n = threadsFromEnvironment()
        openblas_set_num_threads(Int32(n))
        return n
    }()

    /// Threads used by kernels and OpenBLAS.
    public static var threads: Int { configured }

    /// The most threads accepted from a flag, a recipe or `QAT_NUM_THREADS` (OpenBLAS takes an Int32,
    /// and every thread gets its own scratch buffers).
    public static let maxThreads = 1024

    /// Reads `QAT_NUM_THREADS`; a missing value means all cores. An unparsable value is reported
    /// on stderr once and ignored (the caller's process keeps working with all cores).
    static func threadsFromEnvironment() -> Int {
        let cores = min(max(1, ProcessInfo.processInfo.activeProcessorCount), maxThreads)
        guard let raw = ProcessInfo.processInfo.environment["QAT_NUM_THREADS"], !raw.isEmpty else { return cores }
        guard let n = Int(raw.trimmingCharacters(in: .whitespaces)), (1...maxThreads).contains(n) else {
            FileHandle.standardError.write(Data("qat: QAT_NUM_THREADS=\(raw) is not an integer in 1...\(maxThreads); using \(cores) threads. Set it to e.g. 1 or 2.\n".utf8))
            return cores
        }
        return n
    }

    /// Sets the thread count for kernels and OpenBLAS. Call it before starting work, not concurrently with kernels.
    public static func setThreads(_ n: Int) {
        precondition((1...maxThreads).contains(n), "Parallel.setThreads: thread count must be 1...\(maxThreads), got \(n)")
        _ = configured
        configured = n
        openblas_set_num_threads(Int32(n))
    }
}

/// Lets a non-escaping, non-Sendable closure run on Dispatch's worker threads. Safe because every caller
/// partitions the data it writes by the index it is given.
private struct UncheckedSendable<T>: @unchecked Sendable { let value: T }

/// Runs `body(i)` for i in 0..<n on up to `Parallel.threads` threads; runs inline when n == 1 or one thread.
@inline(__always)
public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    if n <= 0 { return }
    if n == 1 || Parallel.threads == 1 {
        for i in 0..<n { body(i) }
        return
    }
    withoutActuallyEscaping(body) { escapable in
        let box = UncheckedSendable(value: escapable)
        DispatchQueue.concurrentPerform(iterations: n) { i in box.value(i) }
    }
}

/// Splits 0..<count into contiguous chunks (at least `grain` elements each, at most one per thread)
/// and runs `body(range)` on them in parallel. The partition depends only on `count`, `grain` and the
/// thread count, so results are reproducible for a fixed thread count.
@inline(__always)
public func parallelChunks(_ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
    if count <= 0 { return }
    let chunks = min(Parallel.threads, max(1, count / max(1, grain)))
    if chunks <= 1 { body(0..<count); return }
    let per = (count + chunks - 1) / chunks
    parallelFor(chunks) { c in
        let lo = c * per
        let hi = min(count, lo + per)
        if lo < hi { body(lo..<hi) }
    }
}
