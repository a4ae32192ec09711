/// Batch normalisation over NCHW (statistics per channel over N, H, W), parallel over channels.
/// Sums are taken per plane with SIMD and added across planes in Double.
public enum Norm {
    /// Training forward: normalises with the batch statistics. Writes `mean`, `invstd` (1/sqrt(var+eps),
    /// biased var) and `varUnbiased` (for the running estimate) per channel.
    public static func batchNormTrainForward(n: Int, c: Int, hw: Int, x: UnsafePointer<Float>,
                                             gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, eps: Float,
                                             y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                             invstd: UnsafeMutablePointer<Float>, varUnbiased: UnsafeMutablePointer<Float>) {
        let m = Double(n * hw)
        parallelChunks(c, grain: max(1, 32_768 / max(1, n * hw))) { r in
            for ch in r {
                var s: Double = 0
                for b in 0..<n { s += Double(Reduce.sum(x + (b * c + ch) * hw, count: hw)) }
                let mu = Float(s / m)
                var ss: Double = 0
                for b in 0..<n { ss += Double(sumSquaredDeviation(x + (b * c + ch) * hw, count: hw, mean: mu)) }
                let v = ss / m
                let istd = Float(1 / (v + Double(eps)).squareRoot())
                mean[ch] = mu; invstd[ch] = istd
                varUnbiased[ch] = m > 1 ? Float(ss / (m - 1)) : Float(v)
                let g = gamma?[ch] ?? 1, bt = beta?[ch] ?? 0
                let scale = g * istd, shift = bt - mu * scale
                for b in 0..<n {
                    let xp = x + (b * c + ch) * hw, yp = y + (b * c + ch) * hw
                    for i in 0..<hw { yp[i] = xp[i] * scale + shift }
                }
            }
        }
    }

    @inline(__always)
    static func sumSquaredDeviation(_ x: UnsafePointer<Float>, count n: Int, mean: Float) -> Float {
        var a0 = SIMD8<Float>(repeating: 0), a1 = SIMD8<Float>(repeating: 0)
        let mv = SIMD8<Float>(repeating: mean)
        let raw = UnsafeRawPointer(x)
        var i = 0
        while i + 16 <= n {
            let d0 = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - mv
            let d1 = raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self) - mv
            a0 += d0 * d0; a1 += d1 * d1
            i += 16
        }
        var s = (a0 + a1).sum()
        while i < n { let d = x[i] - mean; s += d * d; i += 1 }
        return s
    }

    /// Evaluation forward: y = gamma * (x - mean) * invstd + beta with given per-channel mean and invstd.
    public static func batchNormApply(n: Int, c: Int, hw: Int, x: UnsafePointer<Float>, gamma: UnsafePointer<Float>?,
                                      beta: UnsafePointer<Float>?, mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                                      y: UnsafeMutablePointer<Float>) {
        parallelChunks(n * c, grain: max(1, 32_768 / max(1, hw))) { r in
            for p in r {
                let ch = p % c
                let scale = (gamma?[ch] ?? 1) * invstd[ch]
                let shift = (beta?[ch] ?? 0) - mean[ch] * scale
                let xp = x + p * hw, yp = y + p * hw
                for i in 0..<hw { yp[i] = xp[i] * scale + shift }
            }
        }
    }

    /// Backward. With `batchStats` (training) the statistics depend on x:
    /// dx = gamma*invstd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)); otherwise dx = gamma*invstd*dy.
    /// dgamma = sum(dy*xhat), dbeta = sum(dy).
    public static func batchNormBackward(n: Int, c: Int, hw: Int, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                         gamma: UnsafePointer<Float>?, mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                                         batchStats: Bool, dx: UnsafeMutablePointer<Float>?,
                                         dgamma: UnsafeMutablePointer<Float>?, dbeta: UnsafeMutablePointer<Float>?) {
        let m = Float(n * hw)
        parallelChunks(c, grain: max(1, 32_768 / max(1, n * hw))) { r in
            for ch in r {
                let mu = mean[ch], istd = invstd[ch]
                var sdy: Double = 0, sdyx: Double = 0
                for b in 0..<n {
                    let xp = x + (b * c + ch) * hw, gp = dy + (b * c + ch) * hw
                    sdy += Double(Reduce.sum(gp, count: hw))
                    sdyx += Double(Reduce.dot(gp, xp, count: hw)) - Double(mu) * Double(Reduce.sum(gp, count: hw))
                }
                let sumDy = Float(sdy), sumDyXhat = Float(sdyx) * istd
                dgamma?[ch] = sumDyXhat
                dbeta?[ch] = sumDy
                guard let dx else { continue }
                let g = gamma?[ch] ?? 1
                if batchStats {
                    let k = g * istd
                    let meanDy = sumDy / m, meanDyXhat = sumDyXhat / m
                    for b in 0..<n {
                        let xp = x + (b * c + ch) * hw, gp = dy + (b * c + ch) * hw, dp = dx + (b * c + ch) * hw
                        for i in 0..<hw {
                            let xhat = (xp[i] - mu) * istd
                            dp[i] = k * (gp[i] - meanDy - xhat * meanDyXhat)
                        }
                    }
                } else {
                    let k = g * istd
                    for b in 0..<n {
                        let gp = dy + (b * c + ch) * hw, dp = dx + (b * c + ch) * hw
                        for i in 0..<hw { dp[i] = k * gp[i] }
                    }
                }
            }
        }
    }
}
