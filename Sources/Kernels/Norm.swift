/// Batch normalisation over NCHW (statistics per channel over N, H, W), parallel over channels.
/// Sums are taken per plane with SIMD and added across planes in Double.
public enum Norm {
    /// Training forward: normalises with the batch statistics. Writes `mean`, `invstd` (1/sqrt(var+eps),
    /// biased var) and `varUnbiased` (for the running estimate) per channel.
    /// Non-cancelling forms (a channel far from zero with (near) zero variance keeps its accuracy): the
    /// mean is summed as deviations from the channel's first value K (x - K is exact for values within a
    /// factor 2 of K, so a constant channel's mean is exactly K), and y = (x - mean) * gamma * invstd + beta
    /// rather than x * a + (beta - mean * a), whose two large terms cancel. The mean is kept as a float pair
    /// mean + meanLow (the part of the Double mean a Float cannot hold): x - mean is exact for x near the
    /// mean, and subtracting meanLow after it keeps deviations far below one ulp of the mean accurate.
    public static func batchNormTrainForward(n: Int, c: Int, hw: Int, x: UnsafePointer<Float>,
                                             gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, eps: Float,
                                             y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                             meanLow: UnsafeMutablePointer<Float>? = nil,
                                             invstd: UnsafeMutablePointer<Float>, varUnbiased: UnsafeMutablePointer<Float>) {
        let m = Double(n * hw)
        parallelChunks(c, grain: max(1, 32_768 / max(1, n * hw))) { r in
            for ch in r {
                let k = x[ch * hw]
                var s: Double = 0
                for b in 0..<n { s += Double(sumDeviation(x + (b * c + ch) * hw, count: hw, from: k)) }
                let muD = Double(k) + s / m
                let mu = Float(muD), lo = Float(muD - Double(mu))
                var ss: Double = 0
                for b in 0..<n { ss += Double(sumSquaredDeviation(x + (b * c + ch) * hw, count: hw, mean: mu)) }
                // Deviations were taken from mu; the mean of their squares about mu + lo is that minus lo^2.
                let v = max(ss / m - Double(lo) * Double(lo), 0)
                let istd = Float(1 / (v + Double(eps)).squareRoot())
                mean[ch] = mu; invstd[ch] = istd; meanLow?[ch] = lo
                varUnbiased[ch] = m > 1 ? Float(v * m / (m - 1)) : Float(v)
                let scale = (gamma?[ch] ?? 1) * istd, bt = beta?[ch] ?? 0
                for b in 0..<n {
                    let xp = x + (b * c + ch) * hw, yp = y + (b * c + ch) * hw
                    for i in 0..<hw { yp[i] = ((xp[i] - mu) - lo) * scale + bt }
                }
            }
        }
    }

    /// Sum of x - k.
    @inline(__always)
    static func sumDeviation(_ x: UnsafePointer<Float>, count n: Int, from k: Float) -> Float {
        var a0 = SIMD8<Float>(repeating: 0), a1 = SIMD8<Float>(repeating: 0)
        let kv = SIMD8<Float>(repeating: k)
        let raw = UnsafeRawPointer(x)
        var i = 0
        while i + 16 <= n {
            a0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - kv
            a1 += raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self) - kv
            i += 16
        }
        var s = (a0 + a1).sum()
        while i < n { s += x[i] - k; i += 1 }
        return s
    }

    /// Sum of g * (x - mean): dgamma's sum without the cancelling sum(g x) - mean sum(g).
    @inline(__always)
    static func dotDeviation(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, count n: Int, mean: Float) -> Float {
        var a0 = SIMD8<Float>(repeating: 0), a1 = SIMD8<Float>(repeating: 0)
        let mv = SIMD8<Float>(repeating: mean)
        let rg = UnsafeRawPointer(g), rx = UnsafeRawPointer(x)
        var i = 0
        while i + 16 <= n {
            a0 += rg.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) * (rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - mv)
            a1 += rg.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self) * (rx.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self) - mv)
            i += 16
        }
        var s = (a0 + a1).sum()
        while i < n { s += g[i] * (x[i] - mean); i += 1 }
        return s
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
    /// dgamma = sum(dy*xhat) = invstd * sum(dy * (x - mean)), dbeta = sum(dy).
    public static func batchNormBackward(n: Int, c: Int, hw: Int, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                         gamma: UnsafePointer<Float>?, mean: UnsafePointer<Float>, meanLow: UnsafePointer<Float>? = nil,
                                         invstd: UnsafePointer<Float>, batchStats: Bool, dx: UnsafeMutablePointer<Float>?,
                                         dgamma: UnsafeMutablePointer<Float>?, dbeta: UnsafeMutablePointer<Float>?) {
        let m = Float(n * hw)
        parallelChunks(c, grain: max(1, 32_768 / max(1, n * hw))) { r in
            for ch in r {
                let mu = mean[ch], lo = meanLow?[ch] ?? 0, istd = invstd[ch]
                var sdy: Double = 0, sdyx: Double = 0
                for b in 0..<n {
                    let xp = x + (b * c + ch) * hw, gp = dy + (b * c + ch) * hw
                    sdy += Double(Reduce.sum(gp, count: hw))
                    sdyx += Double(dotDeviation(gp, xp, count: hw, mean: mu))
                }
                sdyx -= Double(lo) * sdy
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
                            let xhat = ((xp[i] - mu) - lo) * istd
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
