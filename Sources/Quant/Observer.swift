import Foundation
import Kernels
import Autodiff

/// How a quantizer's range is estimated from data.
public enum RangeMethod: Sendable, Equatable, CustomStringConvertible {
    /// Running min and max over all batches seen.
    case minMax
    /// PyTorch's MovingAverageMinMaxObserver: range += momentum * (batch range - range).
    case movingAverageMinMax(momentum: Float)
    /// The p-th and (100-p)-th percentiles per batch (p e.g. 99.99), averaged over batches.
    case percentile(Float)
    /// The clipping range minimising the mean squared fake-quantization error, per batch, averaged.
    case mse
    /// LSQ (Esser et al. 2020): s = 2 mean|v| / sqrt(qmax), averaged over batches.
    case lsq
    /// LSQ+ (Bhalgat et al. 2020): s = max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1).
    case lsqPlus

    public var description: String {
        switch self {
        case .minMax: return "min_max"
        case .movingAverageMinMax(let m): return "moving_average_min_max(\(m))"
        case .percentile(let p): return "percentile(\(p))"
        case .mse: return "mse"
        case .lsq: return "lsq"
        case .lsqPlus: return "lsq_plus"
        }
    }
}

/// Per-channel statistics of the values a quantizer sees, turned into (scale, zero point) on demand.
struct Observer {
    var method: RangeMethod
    var lo: [Float] = [], hi: [Float] = []
    var scaleEstimate: [Float] = []
    var batches = 0

    init(_ method: RangeMethod) { self.method = method }

    /// Channel slices of x along the scheme's axis (or the whole tensor).
    static func channels(_ x: Tensor, axis: Int?) -> [[Float]] {
        let l = FakeQuant.Layout(shape: x.shape, axis: axis)
        var out = [[Float]](repeating: [], count: l.channels)
        let p = x.pointer
        for c in 0..<l.channels {
            var v = [Float](); v.reserveCapacity(l.outer * l.inner)
            for o in 0..<l.outer { let base = (o * l.channels + c) * l.inner; v.append(contentsOf: UnsafeBufferPointer(start: p + base, count: l.inner)) }
            out[c] = v
        }
        return out
    }

    /// Visits the values of channel `c` in memory order (outer blocks, then inner), without copying.
    @inline(__always)
    static func forEach(_ x: Tensor, _ l: FakeQuant.Layout, channel c: Int, _ body: (Float) -> Void) {
        let p = x.pointer
        for o in 0..<l.outer {
            let base = p + (o * l.channels + c) * l.inner
            for i in 0..<l.inner { body(base[i]) }
        }
    }

    /// Per-channel min and max, read in place (observed-mode training calls this every step).
    static func minMax(_ x: Tensor, axis: Int?) -> ([Float], [Float]) {
        let l = FakeQuant.Layout(shape: x.shape, axis: axis)
        var lo = [Float](repeating: 0, count: l.channels), hi = lo
        for c in 0..<l.channels {
            var mn = Float.infinity, mx = -Float.infinity
            forEach(x, l, channel: c) { v in mn = min(mn, v); mx = max(mx, v) }
            if l.outer * l.inner > 0 { lo[c] = mn; hi[c] = mx }
        }
        return (lo, hi)
    }

    mutating func observe(_ x: Tensor, scheme: QuantScheme, eps: Float) {
        let l = FakeQuant.Layout(shape: x.shape, axis: scheme.axis)
        let count = Float(max(l.outer * l.inner, 1))
        let n = Float(batches)
        func average(_ old: inout [Float], _ new: [Float]) {
            if old.isEmpty { old = new } else { for i in 0..<new.count { old[i] = (old[i] * n + new[i]) / (n + 1) } }
        }
        switch method {
        case .minMax:
            let (bl, bh) = Observer.minMax(x, axis: scheme.axis)
            if lo.isEmpty { lo = bl; hi = bh } else { for i in 0..<bl.count { lo[i] = min(lo[i], bl[i]); hi[i] = max(hi[i], bh[i]) } }
        case .movingAverageMinMax(let m):
            let (bl, bh) = Observer.minMax(x, axis: scheme.axis)
            if lo.isEmpty { lo = bl; hi = bh } else { for i in 0..<bl.count { lo[i] += m * (bl[i] - lo[i]); hi[i] += m * (bh[i] - hi[i]) } }
        case .percentile(let p):
            let chans = Observer.channels(x, axis: scheme.axis)   // sorting needs a copy
            let bl = chans.map { Observer.percentile($0, 100 - p) }, bh = chans.map { Observer.percentile($0, p) }
            average(&lo, bl); average(&hi, bh)
        case .mse:
            let r = Observer.channels(x, axis: scheme.axis).map { Observer.mseRange($0, scheme: scheme, eps: eps) }
            average(&lo, r.map(\.0)); average(&hi, r.map(\.1))
        case .lsq:
            let s = (0..<l.channels).map { c -> Float in
                var sumAbs: Float = 0
                Observer.forEach(x, l, channel: c) { sumAbs += abs($0) }
                return 2 * (sumAbs / count) / Float(scheme.qmax).squareRoot()
            }
            average(&scaleEstimate, s)
        case .lsqPlus:
            let s = (0..<l.channels).map { c -> Float in
                var sum: Float = 0
                Observer.forEach(x, l, channel: c) { sum += $0 }
                let mu = sum / count
                var ss: Float = 0
                Observer.forEach(x, l, channel: c) { ss += ($0 - mu) * ($0 - mu) }
                let sd = (ss / count).squareRoot()
                return max(abs(mu - 3 * sd), abs(mu + 3 * sd)) / Float(1 << (scheme.bits - 1))
            }
            average(&scaleEstimate, s)
        }
        batches += 1
    }

    /// Scale and zero point per channel. LSQ methods give a scale; their zero point is the grid's
    /// symmetric one (middle of an unsigned grid, 0 for signed).
    func qparams(scheme: QuantScheme, eps: Float) -> ([Float], [Float]) {
        switch method {
        case .lsq, .lsqPlus:
            return (scaleEstimate.map { max($0, eps) }, scaleEstimate.map { _ in scheme.symmetricZeroPoint })
        default:
            let q = zip(lo, hi).map { scheme.qparams(min: $0, max: $1, eps: eps) }
            return (q.map(\.scale), q.map(\.zeroPoint))
        }
    }

    static func percentile(_ v: [Float], _ p: Float) -> Float {
        guard !v.isEmpty else { return 0 }
        let s = v.sorted()
        let pos = Double(p) / 100 * Double(s.count - 1)
        let i = Int(pos.rounded(.down)), f = Float(pos - Double(i))
        return i + 1 < s.count ? s[i] * (1 - f) + s[i + 1] * f : s[i]
    }

    /// Grid search over shrink factors of the min-max range (1.0 down to 0.2 in 80 steps), keeping the
    /// one with the least squared error after fake quantization.
    static func mseRange(_ v: [Float], scheme: QuantScheme, eps: Float) -> (Float, Float) {
        guard let mn = v.min(), let mx = v.max() else { return (0, 0) }
        var best = (mn, mx), bestErr = Double.infinity
        let qmin = Float(scheme.qmin), qmax = Float(scheme.qmax)
        for k in 0..<80 {
            let a = 1 - Float(k) * 0.01
            let (s, z) = scheme.qparams(min: mn * a, max: mx * a, eps: eps)
            let inv = 1 / s
            var err: Double = 0
            for x in v {
                let q = min(max((x * inv).rounded(.toNearestOrEven) + z, qmin), qmax)
                let d = Double((q - z) * s - x)
                err += d * d
            }
            if err < bestErr { bestErr = err; best = (mn * a, mx * a) }
        }
        return best
    }
}
