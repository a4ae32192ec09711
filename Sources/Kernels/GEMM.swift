import CBLAS

/// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, with op(A) M x K and op(B) K x N.
///
/// OpenBLAS runs single-threaded (see `Parallel`); a GEMM above OpenBLAS's own threading threshold
/// (M*N*K > 262,144, `SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD`) is split here into one slab of C
/// per thread: column slabs (multiples of 16 columns) when N is wide enough, else row slabs. Each
/// element of C is still one OpenBLAS reduction over K; with OpenBLAS's SkylakeX kernels the split
/// changes no bits, with its Zen/Haswell kernels (whose micro-kernel for a column depends on the call's
/// N) elements differ within rounding. The same thread count always gives the same bits.
/// Inside a parallel loop (e.g. a convolution parallel over images) it runs as one call.
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // BLAS leaves C untouched when K == 0 only for beta == 1; make the beta scaling explicit.
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
        return
    }
    let t = Parallel.threads
    if t > 1, !ParallelRegion.isActive, m * n * k > 262_144 {
        if n >= 32 * t {
            // Column slabs: C[:, j0..<j1] = op(A) * op(B)[:, j0..<j1].
            let per = (n + t - 1) / t, slab = (per + 15) / 16 * 16
            let parts = (n + slab - 1) / slab
            parallelFor(parts) { p in
                let j0 = p * slab, j1 = min(n, j0 + slab)
                let bs = transB ? b + j0 * ldb : b + j0
                gemmCall(transA, transB, m, j1 - j0, k, alpha, a, lda, bs, ldb, beta, c + j0, ldc)
            }
            return
        }
        if m >= 32 * t {
            // Row slabs: C[i0..<i1, :] = op(A)[i0..<i1, :] * op(B).
            let per = (m + t - 1) / t, slab = (per + 15) / 16 * 16
            let parts = (m + slab - 1) / slab
            parallelFor(parts) { p in
                let i0 = p * slab, i1 = min(m, i0 + slab)
                let as_ = transA ? a + i0 : a + i0 * lda
                gemmCall(transA, transB, i1 - i0, n, k, alpha, as_, lda, b, ldb, beta, c + i0 * ldc, ldc)
            }
            return
        }
    }
    gemmCall(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

@inline(__always)
private func gemmCall(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                      _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}
