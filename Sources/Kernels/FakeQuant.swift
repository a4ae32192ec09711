import Foundation

/// Affine fake quantization, forward and backward, exactly as PyTorch's learnable fake-quant CPU
/// kernels (`_fake_quantize_learnable_per_{tensor,channel}_affine`): multiply by the reciprocal of the
/// scale, round half to even, add the rounded-and-clamped zero point, clamp to [qmin, qmax], subtract
/// the zero point, multiply by the scale. Backward gives the three-region gradients of x, scale and
/// zero point (shared/docs/ALGORITHMS.md section 1).
///
/// Layout: the tensor is viewed as (outer, channels, inner); per-tensor quantization is channels == 1.
/// Quantization dropout: an optional per-element or per-channel mask (non-zero = quantize) leaves
/// unmasked elements in full precision, with a pass-through gradient and no scale/zero-point gradient.
public enum FakeQuant {
    public struct Layout: Sendable, Equatable {
        public let outer: Int, channels: Int, inner: Int
        public init(outer: Int, channels: Int, inner: Int) { self.outer = outer; self.channels = channels; self.inner = inner }
        public var count: Int { outer * channels * inner }
        /// View of `shape` for quantization along `axis` (nil: per tensor).
        public init(shape: [Int], axis: Int?) {
            if let axis {
                outer = shape[..<axis].reduce(1, *); channels = shape[axis]; inner = shape[(axis + 1)...].reduce(1, *)
            } else { outer = 1; channels = 1; inner = shape.reduce(1, *) }
        }
    }

    /// An activation fused in front of the quantizer: the kernels quantize act(x) and the gradient to x
    /// carries act's derivative (the same as `Elementwise.unaryBackward`: relu passes where x > 0, relu6
    /// where 0 < x < 6, hardswish is 0 for x <= -3, 1 for x >= 3 and x/3 + 1/2 between). Equal to running
    /// the activation first, without materialising it.
    public enum PreActivation: Sendable, Equatable {
        case relu, relu6, hardswish
        @inline(__always) public func apply(_ v: Float) -> Float {
            switch self {
            case .relu: return Swift.max(v, 0)
            case .relu6: return Swift.min(Swift.max(v, 0), 6)
            case .hardswish: return v * Swift.min(Swift.max(v + 3, 0), 6) / 6
            }
        }
        /// Where the derivative is not zero.
        @inline(__always) public func passes(_ v: Float) -> Bool {
            switch self { case .relu: return v > 0; case .relu6: return v > 0 && v < 6; case .hardswish: return v > -3 }
        }
        /// g times the derivative at v (the unfused backward's expression, so the bits agree).
        @inline(__always) public func gradient(_ g: Float, at v: Float) -> Float {
            switch self {
            case .relu, .relu6: return passes(v) ? g : 0
            case .hardswish: return v <= -3 ? 0 : (v < 3 ? g * (v / 3 + 0.5) : g)
            }
        }
    }

    /// PyTorch's forward zero point: round half to even, then clamp to the grid.
    @inline(__always)
    public static func roundedZeroPoint(_ z: Float, qmin: Int, qmax: Int) -> Float {
        Swift.min(Swift.max(z.rounded(.toNearestOrEven), Float(qmin)), Float(qmax))
    }

    /// Elements per work segment: rows longer than this are split so a per-tensor quantizer still uses
    /// every thread. Fixed, so partial sums (and their order) do not depend on the thread count.
    static let segment = 16_384

    /// y = fake_quant(x). `zeroPoint` holds the raw (learnable, possibly fractional) zero points.
    public static func forward(_ l: Layout, x: UnsafePointer<Float>, scale: UnsafePointer<Float>, zeroPoint: UnsafePointer<Float>,
                               qmin: Int, qmax: Int, elementMask: UnsafePointer<Float>?, channelMask: UnsafePointer<Float>?,
                               preActivation act: PreActivation? = nil, y: UnsafeMutablePointer<Float>) {
        let lo = Float(qmin), hi = Float(qmax)
        let segs = (l.inner + segment - 1) / segment
        parallelChunks(l.outer * l.channels * segs, grain: max(1, 65_536 / Swift.min(l.inner, segment))) { range in
            for sIdx in range {
                let row = sIdx / segs, part = sIdx % segs
                let c = row % l.channels
                let start = row * l.inner + part * segment, n = Swift.min(segment, l.inner - part * segment)
                let s = scale[c], inv = 1 / s
                let z = roundedZeroPoint(zeroPoint[c], qmin: qmin, qmax: qmax)
                let xp = x + start, yp = y + start
                if let channelMask, channelMask[c] == 0 {
                    if let act { for i in 0..<n { yp[i] = act.apply(xp[i]) } } else { yp.update(from: xp, count: n) }
                    continue
                }
                if let elementMask { rows(act, FloatMask.self, xp, yp, elementMask + start, n, s: s, inv: inv, z: z, lo: lo, hi: hi) }
                else { rows(act, NoMask.self, xp, yp, nil, n, s: s, inv: inv, z: z, lo: lo, hi: hi) }
            }
        }
    }

    /// The zero point PyTorch's backward uses. Per channel: half to even and clamped, as the forward.
    /// Per tensor: `int64(z + 0.5)` (truncation) and clamped, which differs from the forward at .5
    /// (z = 0.5: forward uses 0, backward 1). We reproduce both, verified against PyTorch 2.15 fixtures.
    @inline(__always)
    public static func backwardZeroPoint(_ z: Float, qmin: Int, qmax: Int, perTensor: Bool) -> Float {
        perTensor ? Swift.min(Swift.max((z + 0.5).rounded(.towardZero), Float(qmin)), Float(qmax))
                  : roundedZeroPoint(z, qmin: qmin, qmax: qmax)
    }

    /// Gradients. `dscale`/`dzeroPoint` get one value per channel (already multiplied by `gradFactor`);
    /// `clippedSTE` false passes dy to x everywhere (plain straight-through estimator). `perTensor`
    /// selects PyTorch's per-tensor kernel conventions (see `backwardZeroPoint`). As in PyTorch's
    /// backward kernels the grid index is nearbyint(z + x/s) (the forward rounds x/s first).
    public static func backward(_ l: Layout, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, scale: UnsafePointer<Float>,
                                zeroPoint: UnsafePointer<Float>, qmin: Int, qmax: Int, gradFactor: Float, clippedSTE: Bool, perTensor: Bool,
                                elementMask: UnsafePointer<Float>?, channelMask: UnsafePointer<Float>?,
                                preActivation act: PreActivation? = nil,
                                dx: UnsafeMutablePointer<Float>?, dscale: UnsafeMutablePointer<Float>?, dzeroPoint: UnsafeMutablePointer<Float>?) {
        let lo = Float(qmin), hi = Float(qmax)
        let segs = (l.inner + segment - 1) / segment
        let total = l.outer * l.channels * segs
        let partS = UnsafeMutablePointer<Double>.allocate(capacity: total), partZ = UnsafeMutablePointer<Double>.allocate(capacity: total)
        defer { partS.deallocate(); partZ.deallocate() }
        parallelChunks(total, grain: max(1, 65_536 / Swift.min(l.inner, segment))) { range in
            // dx may be absent (only the scale / zero point need gradients): one scratch row per chunk.
            let scratch: UnsafeMutablePointer<Float>? = dx == nil ? .allocate(capacity: segment) : nil
            defer { scratch?.deallocate() }
            for sIdx in range {
                let row = sIdx / segs, part = sIdx % segs
                let c = row % l.channels
                let start = row * l.inner + part * segment, n = Swift.min(segment, l.inner - part * segment)
                let s = scale[c], inv = 1 / s
                let z = backwardZeroPoint(zeroPoint[c], qmin: qmin, qmax: qmax, perTensor: perTensor)
                let xp = x + start, gp = dy + start
                let out = dx.map { $0 + start } ?? scratch!
                if let channelMask, channelMask[c] == 0 {
                    if let act { for i in 0..<n { out[i] = act.gradient(gp[i], at: xp[i]) } } else { out.update(from: gp, count: n) }
                    partS[sIdx] = 0; partZ[sIdx] = 0
                    continue
                }
                (partS[sIdx], partZ[sIdx]) = elementMask.map {
                    gradientRows(act, FloatMask.self, xp, gp, out, $0 + start, n, s: s, inv: inv, z: z, lo: lo, hi: hi, clipped: clippedSTE)
                } ?? gradientRows(act, NoMask.self, xp, gp, out, nil, n, s: s, inv: inv, z: z, lo: lo, hi: hi, clipped: clippedSTE)
            }
        }
        // Deterministic per-channel reduction in segment order.
        if dscale != nil || dzeroPoint != nil {
            var sumS = [Double](repeating: 0, count: l.channels), sumZ = [Double](repeating: 0, count: l.channels)
            for sIdx in 0..<total {
                let c = (sIdx / segs) % l.channels
                sumS[c] += partS[sIdx]; sumZ[c] += partZ[sIdx]
            }
            for c in 0..<l.channels {
                dscale?[c] = Float(sumS[c]) * gradFactor
                dzeroPoint?[c] = Float(sumZ[c]) * gradFactor
            }
        }
    }

    // MARK: SIMD rows (no dropout mask)

    typealias V = SIMD8<Float>

    /// Round half to even by adding and subtracting 1.5 * 2^23: exact for |v| < 2^22 under the default
    /// rounding mode. Larger magnitudes are far outside any 2..8-bit grid and clamp the same either way.
    /// (`SIMD8.rounded` calls rintf once per lane; this stays in vector registers.)
    @inline(__always)
    static func roundEven(_ v: V) -> V {
        let m = V(repeating: 12_582_912)
        return (v + m) - m
    }

    @inline(__always)
    static func clamp(_ v: V, _ lo: V, _ hi: V) -> V {
        v.replacing(with: lo, where: v .< lo).replacing(with: hi, where: v .> hi)
    }

    /// The fused activation as a type, so each SIMD row loop is specialised without a branch inside.
    protocol RowActivation {
        static var kind: PreActivation? { get }
        static func apply(_ v: V) -> V
        /// Lanes where the activation passes the gradient.
        static func passes(_ v: V) -> SIMDMask<V.MaskStorage>
        /// The gradient g (already zero where blocked) times the derivative at v, for activations whose
        /// derivative is not 1 wherever it passes (hardswish); the others return g.
        static func scaled(_ g: V, at v: V) -> V
    }
    enum NoAct: RowActivation {
        static var kind: PreActivation? { nil }
        @inline(__always) static func apply(_ v: V) -> V { v }
        @inline(__always) static func passes(_ v: V) -> SIMDMask<V.MaskStorage> { SIMDMask(repeating: true) }
    }
    enum ReLUAct: RowActivation {
        static var kind: PreActivation? { .relu }
        @inline(__always) static func apply(_ v: V) -> V { v.replacing(with: 0, where: v .< 0) }
        @inline(__always) static func passes(_ v: V) -> SIMDMask<V.MaskStorage> { v .> 0 }
    }
    enum ReLU6Act: RowActivation {
        static var kind: PreActivation? { .relu6 }
        @inline(__always) static func apply(_ v: V) -> V { v.replacing(with: 0, where: v .< 0).replacing(with: 6, where: v .> 6) }
        @inline(__always) static func passes(_ v: V) -> SIMDMask<V.MaskStorage> { (v .> 0) .& (v .< 6) }
    }
    enum HardswishAct: RowActivation {
        static var kind: PreActivation? { .hardswish }
        @inline(__always) static func apply(_ v: V) -> V {
            let t = (v + V(repeating: 3)).replacing(with: 0, where: v + V(repeating: 3) .< 0)
            return v * t.replacing(with: 6, where: t .> 6) / V(repeating: 6)
        }
        @inline(__always) static func passes(_ v: V) -> SIMDMask<V.MaskStorage> { v .> V(repeating: -3) }
        @inline(__always) static func scaled(_ g: V, at v: V) -> V {
            g.replacing(with: g * (v / V(repeating: 3) + V(repeating: 0.5)), where: (v .< V(repeating: 3)) .& (v .> V(repeating: -3)))
        }
    }

    /// Quantization-dropout mask of a row as a type: `NoMask` (every value quantized) compiles to the
    /// plain loops, `FloatMask` reads a 0/1 Float mask (non-zero = quantized).
    protocol RowMask {
        static func quantized(_ m: UnsafeRawPointer?, _ byteOffset: Int) -> SIMDMask<V.MaskStorage>
        static func quantized(_ m: UnsafePointer<Float>?, _ i: Int) -> Bool
    }
    enum NoMask: RowMask {
        @inline(__always) static func quantized(_ m: UnsafeRawPointer?, _ byteOffset: Int) -> SIMDMask<V.MaskStorage> { SIMDMask(repeating: true) }
        @inline(__always) static func quantized(_ m: UnsafePointer<Float>?, _ i: Int) -> Bool { true }
    }
    enum FloatMask: RowMask {
        @inline(__always) static func quantized(_ m: UnsafeRawPointer?, _ byteOffset: Int) -> SIMDMask<V.MaskStorage> {
            m.unsafelyUnwrapped.loadUnaligned(fromByteOffset: byteOffset, as: V.self) .!= V(repeating: 0)
        }
        @inline(__always) static func quantized(_ m: UnsafePointer<Float>?, _ i: Int) -> Bool { m.unsafelyUnwrapped[i] != 0 }
    }

    /// `forwardRow` specialised for the activation.
    @inline(__always)
    static func rows<M: RowMask>(_ act: PreActivation?, _ mask: M.Type, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                 _ m: UnsafePointer<Float>?, _ n: Int, s: Float, inv: Float, z: Float, lo: Float, hi: Float) {
        switch act {
        case nil: forwardRow(x, y, m, n, s: s, inv: inv, z: z, lo: lo, hi: hi, NoAct.self, M.self)
        case .relu: forwardRow(x, y, m, n, s: s, inv: inv, z: z, lo: lo, hi: hi, ReLUAct.self, M.self)
        case .relu6: forwardRow(x, y, m, n, s: s, inv: inv, z: z, lo: lo, hi: hi, ReLU6Act.self, M.self)
        case .hardswish: forwardRow(x, y, m, n, s: s, inv: inv, z: z, lo: lo, hi: hi, HardswishAct.self, M.self)
        }
    }

    /// `backwardRow` specialised for the activation.
    @inline(__always)
    static func gradientRows<M: RowMask>(_ act: PreActivation?, _ mask: M.Type, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                         _ dx: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>?, _ n: Int,
                                         s: Float, inv: Float, z: Float, lo: Float, hi: Float, clipped: Bool) -> (Double, Double) {
        switch act {
        case nil: return backwardRow(x, g, dx, m, n, s: s, inv: inv, z: z, lo: lo, hi: hi, clipped: clipped, NoAct.self, M.self)
        case .relu: return backwardRow(x, g, dx, m, n, s: s, inv: inv, z: z, lo: lo, hi: hi, clipped: clipped, ReLUAct.self, M.self)
        case .relu6: return backwardRow(x, g, dx, m, n, s: s, inv: inv, z: z, lo: lo, hi: hi, clipped: clipped, ReLU6Act.self, M.self)
        case .hardswish: return backwardRow(x, g, dx, m, n, s: s, inv: inv, z: z, lo: lo, hi: hi, clipped: clipped, HardswishAct.self, M.self)
        }
    }

    /// y = fake_quant(act(x)) on quantized lanes, act(x) on the others.
    @inline(__always)
    static func forwardRow<A: RowActivation, M: RowMask>(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>?, _ n: Int,
                                                         s: Float, inv: Float, z: Float, lo: Float, hi: Float, _ act: A.Type, _ mask: M.Type) {
        let vs = V(repeating: s), vinv = V(repeating: inv), vz = V(repeating: z), vlo = V(repeating: lo), vhi = V(repeating: hi)
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y), rm = m.map(UnsafeRawPointer.init)
        var i = 0
        while i + 8 <= n {
            let v = A.apply(rx.loadUnaligned(fromByteOffset: i * 4, as: V.self))
            let q = clamp(roundEven(v * vinv) + vz, vlo, vhi)
            ry.storeBytes(of: v.replacing(with: (q - vz) * vs, where: M.quantized(rm, i * 4)), toByteOffset: i * 4, as: V.self)
            i += 8
        }
        while i < n {
            let v = A.kind?.apply(x[i]) ?? x[i]
            let q = Swift.min(Swift.max((v * inv).rounded(.toNearestOrEven) + z, lo), hi)
            y[i] = M.quantized(m, i) ? (q - z) * s : v
            i += 1
        }
    }

    /// dx for one row and its scale / zero-point sums (before the grad factor). Lanes accumulate in
    /// Float for 512 elements at a time, then into Double, so long rows keep about 1e-7 relative accuracy.
    /// Unquantized lanes (dropout) pass the gradient through the activation's mask and add nothing.
    @inline(__always)
    static func backwardRow<A: RowActivation, M: RowMask>(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                                          _ m: UnsafePointer<Float>?, _ n: Int, s: Float, inv: Float, z: Float, lo: Float, hi: Float,
                                                          clipped: Bool, _ act: A.Type, _ mask: M.Type) -> (Double, Double) {
        let vs = V(repeating: s), vinv = V(repeating: inv), vz = V(repeating: z), vlo = V(repeating: lo), vhi = V(repeating: hi)
        let zero = V(repeating: 0)
        let rx = UnsafeRawPointer(x), rg = UnsafeRawPointer(g), rd = UnsafeMutableRawPointer(dx), rm = m.map(UnsafeRawPointer.init)
        var totS: Double = 0, totZ: Double = 0
        var i = 0
        while i + 8 <= n {
            var aS = zero, aZ = zero
            let end = Swift.min(n - (n - i) % 8, i + 512)
            while i < end {
                let a = rx.loadUnaligned(fromByteOffset: i * 4, as: V.self)
                let v = A.apply(a)
                let gv = rg.loadUnaligned(fromByteOffset: i * 4, as: V.self)
                let quantized = M.quantized(rm, i * 4)
                let xq = roundEven(vz + v * vinv)
                let out = ((xq .< vlo) .| (xq .> vhi)) .& quantized
                let cq = clamp(xq, vlo, vhi)
                var blocked = clipped ? out : SIMDMask<V.MaskStorage>(repeating: false)
                if A.kind != nil { blocked = blocked .| .!A.passes(a) }
                rd.storeBytes(of: A.scaled(gv.replacing(with: zero, where: blocked), at: a), toByteOffset: i * 4, as: V.self)
                let inTerm = gv * ((cq - vz) * vs - v) * vinv
                let outTerm = gv * (cq - vz)
                aS += inTerm.replacing(with: zero, where: .!quantized).replacing(with: outTerm, where: out)
                aZ -= (gv * vs).replacing(with: zero, where: .!out)
                i += 8
            }
            totS += Double(aS.sum()); totZ += Double(aZ.sum())
        }
        while i < n {
            let a = x[i], v = A.kind?.apply(a) ?? a, gi = g[i]
            let through = A.kind?.gradient(gi, at: a) ?? gi
            let xq = (z + v * inv).rounded(.toNearestOrEven)
            if !M.quantized(m, i) { dx[i] = through; i += 1; continue }
            if xq < lo || xq > hi {
                dx[i] = clipped ? 0 : through
                totS += Double(gi * ((xq < lo ? lo : hi) - z)); totZ -= Double(gi * s)
            } else {
                dx[i] = through
                totS += Double(gi * ((xq - z) * s - v) * inv)
            }
            i += 1
        }
        return (totS, totZ)
    }
}

extension FakeQuant.RowActivation {
    /// Derivative 1 wherever the gradient passes (none, relu, relu6).
    @inline(__always) static func scaled(_ g: FakeQuant.V, at v: FakeQuant.V) -> FakeQuant.V { g }
}
