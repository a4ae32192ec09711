import Dispatch
import Foundation
import CBLAS

/// Thread policy for every kernel: `QAT_NUM_THREADS` (default: all cores). All parallelism is ours:
/// OpenBLAS runs single-threaded inside the caller's thread, and `sgemm` / the convolutions split their
/// work over our threads themselves. OpenBLAS's own pool (pthreads build) spins in `sched_yield` between
/// calls, which on 2 cores took ~24% of a detector training step's samples and competed with our loops;
/// with one parallel runtime nothing oversubscribes the cores. Loops nested inside a parallel loop run
/// inline on their thread (`ParallelRegion`).
public enum Parallel {
    nonisolated(unsafe) private static var configured: Int = {
        openblas_set_num_threads(1)
        return threadsFromEnvironment()
    }()

    /// Threads used by kernels and GEMM splits.
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

    /// Sets the thread count for kernels (and the GEMM splits). Call it before starting work, not concurrently with kernels.
    public static func setThreads(_ n: Int) {
        precondition((1...maxThreads).contains(n), "Parallel.setThreads: thread count must be 1...\(maxThreads), got \(n)")
        _ = configured
        configured = n
    }
}

/// Whether the current thread is running an iteration of a parallel loop: nested loops (and GEMM
/// splits) then run inline, since the outer loop already occupies every thread.
public enum ParallelRegion {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        // Called outside the precondition: release builds use -Ounchecked, where a precondition's
        // condition is never evaluated, so the key was never created and key 0 (another library's) was
        // read and written instead.
        let rc = pthread_key_create(&k, nil)
        precondition(rc == 0, "ParallelRegion: pthread_key_create failed")
        return k
    }()

    /// True inside a `parallelFor` iteration that runs on more than one thread.
    @inline(__always)
    public static var isActive: Bool { pthread_getspecific(key) != nil }

    @inline(__always)
    static func run(_ body: () -> Void) {
        if isActive { body(); return }
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        body()
        pthread_setspecific(key, nil)
    }
}

/// Lets a non-escaping, non-Sendable closure run on Dispatch's worker threads. Safe because every caller
/// partitions the data it writes by the index it is given.
private struct UncheckedSendable<T>: @unchecked Sendable { let value: T }

/// Runs `body(i)` for i in 0..<n on up to `Parallel.threads` threads; runs inline when n == 1, on one
/// thread, or nested inside another parallel loop.
@inline(__always)
public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    if n <= 0 { return }
    if n == 1 || Parallel.threads == 1 || ParallelRegion.isActive {
        for i in 0..<n { body(i) }
        return
    }
    withoutActuallyEscaping(body) { escapable in
        let box = UncheckedSendable(value: escapable)
        DispatchQueue.concurrentPerform(iterations: n) { i in ParallelRegion.run { box.value(i) } }
    }
}

/// Splits 0..<count into contiguous chunks (at least `grain` elements each, at most one per thread)
/// and runs `body(range)` on them in parallel. The partition depends only on `count`, `grain` and the
/// thread count, so results are reproducible for a fixed thread count.
@inline(__always)
public func parallelChunks(_ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
    if count <= 0 { return }
    let chunks = ParallelRegion.isActive ? 1 : min(Parallel.threads, max(1, count / max(1, grain)))
    if chunks <= 1 { body(0..<count); return }
    let per = (count + chunks - 1) / chunks
    parallelFor(chunks) { c in
        let lo = c * per
        let hi = min(count, lo + per)
        if lo < hi { body(lo..<hi) }
    }
}
