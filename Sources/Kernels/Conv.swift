/// 2-D convolution kernels (NCHW input, OIHW weights). General path: im2col + `cblas_sgemm` per image and
/// group, parallel over images (each thread its own im2col buffer, single-threaded GEMMs; one image:
/// im2col/col2im and the GEMM split over threads instead); 1x1 stride-1 convs skip im2col;
/// depthwise convs (groups == in == out channels) use direct loops parallel over channels.
/// Per-tensor fake quantization of a depthwise conv's input, fused into the conv (the fake-quantized
/// input is never materialised): the forward quantizes each plane while copying it into the padded
/// scratch plane; the backward applies the quantizer's gradient to each plane of dx in cache.
/// Same formulas as `FakeQuant` (PyTorch's per-tensor conventions for the zero point).
/// With `preActivation` the conv's x is the activation's input: planes are quantized as act(x) and the
/// gradient to x carries the activation's mask (see `FakeQuant.PreActivation`).
public struct InputQuant: Sendable {
    public var scale: Float, zeroPoint: Float, qmin: Int, qmax: Int, clipped: Bool
    public var preActivation: FakeQuant.PreActivation?
    public init(scale: Float, zeroPoint: Float, qmin: Int, qmax: Int, clipped: Bool, preActivation: FakeQuant.PreActivation? = nil) {
        self.scale = scale; self.zeroPoint = zeroPoint; self.qmin = qmin; self.qmax = qmax; self.clipped = clipped
        self.preActivation = preActivation
    }
}

public enum Conv2D {
    /// Output columns `lo..<hi` for which input index `o * stride - pad + tap * dilation` lies in 0..<size.
    @inline(__always)
    static func validRange(outSize: Int, inSize: Int, stride: Int, pad: Int, offset: Int) -> (Int, Int) {
        // i = o*stride + (offset - pad), need 0 <= i < inSize
        let shift = offset - pad
        var lo = 0
        if shift < 0 { lo = (-shift + stride - 1) / stride }
        var hi = 0
        let top = inSize - 1 - shift
        if top >= 0 { hi = top / stride + 1 }
        return (min(lo, outSize), max(min(hi, outSize), min(lo, outSize)))
    }

    /// im2col for one image and one group: `x` holds `channels` planes of HxW; `col` receives
    /// (channels*KH*KW) rows of OH*OW values.
    public static func im2col(_ g: ConvGeometry, channels: Int, x: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>) {
        let kk = g.kernelH * g.kernelW
        let rows = channels * kk
        let oh = g.outHeight, ow = g.outWidth, h = g.height, w = g.width
        let p = oh * ow
        parallelChunks(rows, grain: max(1, 8192 / max(1, p))) { range in
            for r in range {
                let c = r / kk, i = (r % kk) / g.kernelW, j = r % g.kernelW
                let xc = x + c * h * w
                let dst = col + r * p
                let (olo, ohi) = validRange(outSize: ow, inSize: w, stride: g.strideW, pad: g.padW, offset: j * g.dilationW)
                for y in 0..<oh {
                    let row = dst + y * ow
                    let ih = y * g.strideH - g.padH + i * g.dilationH
                    if ih < 0 || ih >= h {
                        row.initialize(repeating: 0, count: ow)
                        continue
                    }
                    if olo > 0 { row.initialize(repeating: 0, count: olo) }
                    if ohi < ow { (row + ohi).initialize(repeating: 0, count: ow - ohi) }
                    let src = xc + ih * w - g.padW + j * g.dilationW
                    if g.strideW == 1 {
                        if ohi > olo { (row + olo).update(from: src + olo, count: ohi - olo) }
                    } else {
                        let s = g.strideW
                        var o = olo
                        while o < ohi { row[o] = src[o * s]; o += 1 }
                    }
                }
            }
        }
    }

    /// col2im for one image and group: accumulates `col` into `dx` (which the caller zeroed).
    public static func col2im(_ g: ConvGeometry, channels: Int, col: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let kk = g.kernelH * g.kernelW
        let oh = g.outHeight, ow = g.outWidth, h = g.height, w = g.width
        let p = oh * ow
        parallelChunks(channels, grain: 1) { range in
            for c in range {
                let dc = dx + c * h * w
                for i in 0..<g.kernelH {
                    for j in 0..<g.kernelW {
                        let src = col + (c * kk + i * g.kernelW + j) * p
                        let (olo, ohi) = validRange(outSize: ow, inSize: w, stride: g.strideW, pad: g.padW, offset: j * g.dilationW)
                        if ohi <= olo { continue }
                        for y in 0..<oh {
                            let ih = y * g.strideH - g.padH + i * g.dilationH
                            if ih < 0 || ih >= h { continue }
                            let dst = dc + ih * w - g.padW + j * g.dilationW
                            let s = src + y * ow
                            if g.strideW == 1 {
                                for o in olo..<ohi { dst[o] += s[o] }
                            } else {
                                let st = g.strideW
                                for o in olo..<ohi { dst[o * st] += s[o] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// y = conv(x, w) + bias. `y` must hold `g.outputShape` elements; it is fully overwritten.
    /// `clamp` (inference epilogue): each output plane is clamped to [lo, hi] right after it is computed,
    /// while it is in cache (relu: 0...inf, relu6: 0...6), instead of a separate activation pass.
    public static func forward(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, inputQuant: InputQuant? = nil,
                               clamp: ClosedRange<Float>? = nil) {
        precondition(inputQuant == nil || g.isDepthwise, "Conv2D.forward: fused input quantization needs a depthwise conv, got \(g)")
        if g.isDepthwise { depthwiseForward(g, x: x, weight: weight, bias: bias, y: y, q: inputQuant, clamp: clamp); return }
        let cg = g.inChannels / g.groups, og = g.outChannels / g.groups
        let k = cg * g.kernelH * g.kernelW
        let p = g.outHeight * g.outWidth
        let hw = g.height * g.width
        // Prefill with the bias so the GEMM accumulates onto it (beta = 1): one write pass instead of two.
        let planes = g.batch * g.outChannels
        if let bias {
            parallelChunks(planes, grain: max(1, 16384 / max(1, p))) { r in
                for pl in r { (y + pl * p).initialize(repeating: bias[pl % g.outChannels], count: p) }
            }
        }
        let beta: Float = bias == nil ? 0 : 1
        // Parallel over (image, group) pairs, each thread with its own im2col buffer and single-threaded
        // GEMMs: one parallel region per conv instead of one per im2col and per GEMM, and the buffer
        // stays in the thread's cache. Fewer pairs than threads: one pair at a time, im2col and GEMM
        // split inside.
        let pairs = g.batch * g.groups
        let chunks = Parallel.threads > 1 && !ParallelRegion.isActive && pairs >= Parallel.threads ? Parallel.threads : 1
        let per = (pairs + chunks - 1) / chunks
        parallelFor(chunks) { ch in
            let col: FloatBuffer? = g.isPointwise ? nil : FloatBuffer(count: k * p)
            for pair in (ch * per)..<min(pairs, (ch + 1) * per) {
                let n = pair / g.groups, grp = pair % g.groups
                let xg = x + (n * g.inChannels + grp * cg) * hw
                var bsrc = xg
                if let col { im2col(g, channels: cg, x: xg, col: col.pointer); bsrc = UnsafePointer(col.pointer) }
                let yg = y + (n * g.outChannels + grp * og) * p
                sgemm(m: og, n: p, k: k, a: weight + grp * og * k, lda: k, b: bsrc, ldb: p, beta: beta, c: yg, ldc: p)
                if let clamp { clampInPlace(yg, count: og * p, clamp) }
            }
        }
    }

    /// x = min(max(x, lo), hi) in place, on the calling thread (the same expression as `Elementwise`'s
    /// relu/relu6, which LLVM vectorizes).
    @inline(__always)
    static func clampInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, _ r: ClosedRange<Float>) {
        let lo = r.lowerBound, hi = r.upperBound
        for i in 0..<count { x[i] = Swift.min(Swift.max(x[i], lo), hi) }
    }

    /// Gradients of `forward`. Each output pointer is optional: pass only what is needed. `dx`, `dw` and
    /// `db` are fully overwritten (not accumulated).
    /// With `inputQuant` (depthwise only) `dx` is the gradient of the raw input and `quantSums` receives
    /// per channel the scale and zero-point gradient sums ([2 * C]: dS, dZ), before the grad factor.
    public static func backward(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
                                dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?,
                                inputQuant: InputQuant? = nil, quantSums: UnsafeMutablePointer<Double>? = nil) {
        precondition(inputQuant == nil || g.isDepthwise, "Conv2D.backward: fused input quantization needs a depthwise conv, got \(g)")
        let p = g.outHeight * g.outWidth
        if let db {
            parallelChunks(g.outChannels, grain: 1) { r in
                for o in r {
                    var acc: Double = 0
                    for n in 0..<g.batch { acc += Double(Reduce.sum(dy + (n * g.outChannels + o) * p, count: p)) }
                    db[o] = Float(acc)
                }
            }
        }
        if g.isDepthwise { depthwiseBackward(g, x: x, weight: weight, dy: dy, dx: dx, dw: dw, q: inputQuant, qsum: quantSums); return }
        if dx == nil && dw == nil { return }
        let cg = g.inChannels / g.groups, og = g.outChannels / g.groups
        let k = cg * g.kernelH * g.kernelW
        let hw = g.height * g.width
        if let dx, !g.isPointwise { dx.initialize(repeating: 0, count: g.batch * g.inChannels * hw) }
        // Parallel over images as in `forward`: chunk c of the batch accumulates its own weight gradient
        // (chunk 0 straight into dw, the others into scratch), summed in chunk order at the end, so the
        // result is the same for a given thread count.
        let chunks = Parallel.threads > 1 && !ParallelRegion.isActive && g.batch >= Parallel.threads ? Parallel.threads : 1
        let per = (g.batch + chunks - 1) / chunks
        let wsize = g.outChannels * k
        let partial: FloatBuffer? = dw != nil && chunks > 1 ? FloatBuffer(count: (chunks - 1) * wsize) : nil
        parallelFor(chunks) { ch in
            let col: FloatBuffer? = g.isPointwise ? nil : FloatBuffer(count: k * p)
            let dwc: UnsafeMutablePointer<Float>? = dw.map { ch == 0 ? $0 : partial!.pointer + (ch - 1) * wsize }
            let first = ch * per
            for n in first..<min(g.batch, (ch + 1) * per) {
                for grp in 0..<g.groups {
                    let xg = x + (n * g.inChannels + grp * cg) * hw
                    let dyg = dy + (n * g.outChannels + grp * og) * p
                    let wg = weight + grp * og * k
                    if let dwc {
                        var bsrc = xg
                        if let col { im2col(g, channels: cg, x: xg, col: col.pointer); bsrc = UnsafePointer(col.pointer) }
                        sgemm(transB: true, m: og, n: k, k: p, a: dyg, lda: p, b: bsrc, ldb: p,
                              beta: n == first ? 0 : 1, c: dwc + grp * og * k, ldc: k)
                    }
                    if let dx {
                        let dxg = dx + (n * g.inChannels + grp * cg) * hw
                        if let col {
                            sgemm(transA: true, m: k, n: p, k: og, a: wg, lda: k, b: dyg, ldb: p, c: col.pointer, ldc: p)
                            col2im(g, channels: cg, col: col.pointer, dx: dxg)
                        } else {
                            sgemm(transA: true, m: cg, n: p, k: og, a: wg, lda: k, b: dyg, ldb: p, c: dxg, ldc: p)
                        }
                    }
                }
            }
        }
        if let dw, let partial {
            for c in 1..<chunks {
                let src = partial.pointer + (c - 1) * wsize
                parallelChunks(wsize, grain: 16_384) { r in for i in r { dw[i] += src[i] } }
            }
        }
    }

    // MARK: depthwise
    // Each channel plane is first copied into a zero-bordered scratch plane, so the tap loops have no
    // bounds checks and run as straight vector loops over an output row.

    @inline(__always)
    static func copyPadded(_ g: ConvGeometry, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ q: InputQuant? = nil) {
        let pw = g.width + 2 * g.padW
        if let q {
            let z = FakeQuant.roundedZeroPoint(q.zeroPoint, qmin: q.qmin, qmax: q.qmax)
            for ih in 0..<g.height {
                let row = src + ih * g.width, out = dst + (ih + g.padH) * pw + g.padW
                let s = q.scale, inv = 1 / q.scale, lo = Float(q.qmin), hi = Float(q.qmax)
                FakeQuant.rows(q.preActivation, FakeQuant.NoMask.self, row, out, nil, g.width, s: s, inv: inv, z: z, lo: lo, hi: hi)
            }
            return
        }
        for ih in 0..<g.height { (dst + (ih + g.padH) * pw + g.padW).update(from: src + ih * g.width, count: g.width) }
    }

    /// The input quantizer's backward on one plane of dx (in place): dx = STE(dxq), and the plane's
    /// scale / zero-point gradient sums (before the grad factor).
    @inline(__always)
    static func quantBackwardPlane(_ q: InputQuant, x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, count: Int) -> (Double, Double) {
        let z = FakeQuant.backwardZeroPoint(q.zeroPoint, qmin: q.qmin, qmax: q.qmax, perTensor: true)
        let s = q.scale, inv = 1 / q.scale, lo = Float(q.qmin), hi = Float(q.qmax)
        return FakeQuant.gradientRows(q.preActivation, FakeQuant.NoMask.self, x, UnsafePointer(dx), dx, nil, count,
                                      s: s, inv: inv, z: z, lo: lo, hi: hi, clipped: q.clipped)
    }

    static func depthwiseForward(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                 bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, q: InputQuant? = nil,
                                 clamp: ClosedRange<Float>? = nil) {
        let c = g.inChannels, h = g.height, w = g.width, oh = g.outHeight, ow = g.outWidth
        let kh = g.kernelH, kw = g.kernelW, sw = g.strideW, dw = g.dilationW
        let pw = w + 2 * g.padW, ph = h + 2 * g.padH
        parallelChunks(g.batch * c, grain: 1) { range in
            let scratch = FloatBuffer(zeros: ph * pw + 16)
            let pad = scratch.pointer
            for plane in range {
                let ch = plane % c
                copyPadded(g, x + plane * h * w, pad, q)
                let yp = y + plane * oh * ow
                let wp = weight + ch * kh * kw
                let b = bias?[ch] ?? 0
                if sw == 1 && kh == 3 && kw == 3 {
                    let dh = g.dilationH * pw
                    for oy in 0..<oh {
                        let r0 = pad + oy * g.strideH * pw
                        correlate3x3Row(out: yp + oy * ow, count: ow, bias: b, rows: (UnsafePointer(r0), UnsafePointer(r0 + dh), UnsafePointer(r0 + 2 * dh)), dil: dw, w: wp)
                    }
                    if let clamp { clampInPlace(yp, count: oh * ow, clamp) }
                    continue
                }
                for oy in 0..<oh {
                    let yr = yp + oy * ow
                    yr.initialize(repeating: b, count: ow)
                    for i in 0..<kh {
                        let pr = pad + (oy * g.strideH + i * g.dilationH) * pw
                        if sw == 1 {
                            for j in 0..<kw { let wv = wp[i * kw + j], r = pr + j * dw; for o in 0..<ow { yr[o] += wv * r[o] } }
                        } else {
                            for j in 0..<kw { let wv = wp[i * kw + j], r = pr + j * dw; for o in 0..<ow { yr[o] += wv * r[o * sw] } }
                        }
                    }
                }
                if let clamp { clampInPlace(yp, count: oh * ow, clamp) }
            }
        }
    }

    /// out[o] = bias + sum_{i,j<3} w[i*3+j] * rows.i[o + j*dil]: all nine taps in one pass, one store per output.
    @inline(__always)
    static func correlate3x3Row(out: UnsafeMutablePointer<Float>, count n: Int, bias: Float,
                                rows: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>), dil: Int,
                                w: UnsafePointer<Float>) {
        typealias V = SIMD8<Float>
        let w00 = V(repeating: w[0]), w01 = V(repeating: w[1]), w02 = V(repeating: w[2])
        let w10 = V(repeating: w[3]), w11 = V(repeating: w[4]), w12 = V(repeating: w[5])
        let w20 = V(repeating: w[6]), w21 = V(repeating: w[7]), w22 = V(repeating: w[8])
        let (a, b, c) = (UnsafeRawPointer(rows.0), UnsafeRawPointer(rows.1), UnsafeRawPointer(rows.2))
        let d = dil * 4
        var o = 0
        while o + 8 <= n {
            let off = o * 4
            var acc = V(repeating: bias)
            acc += w00 * a.loadUnaligned(fromByteOffset: off, as: V.self)
            acc += w01 * a.loadUnaligned(fromByteOffset: off + d, as: V.self)
            acc += w02 * a.loadUnaligned(fromByteOffset: off + 2 * d, as: V.self)
            acc += w10 * b.loadUnaligned(fromByteOffset: off, as: V.self)
            acc += w11 * b.loadUnaligned(fromByteOffset: off + d, as: V.self)
            acc += w12 * b.loadUnaligned(fromByteOffset: off + 2 * d, as: V.self)
            acc += w20 * c.loadUnaligned(fromByteOffset: off, as: V.self)
            acc += w21 * c.loadUnaligned(fromByteOffset: off + d, as: V.self)
            acc += w22 * c.loadUnaligned(fromByteOffset: off + 2 * d, as: V.self)
            UnsafeMutableRawPointer(out).storeBytes(of: acc, toByteOffset: off, as: V.self)
            o += 8
        }
        while o < n {
            var s = bias
            for j in 0..<3 { s += w[j] * rows.0[o + j * dil] + w[3 + j] * rows.1[o + j * dil] + w[6 + j] * rows.2[o + j * dil] }
            out[o] = s
            o += 1
        }
    }

    static func depthwiseBackward(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                  dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?,
                                  q: InputQuant? = nil, qsum: UnsafeMutablePointer<Double>? = nil) {
        if let qsum { qsum.initialize(repeating: 0, count: 2 * g.inChannels) }
        if g.strideH == 1 && g.strideW == 1 && g.kernelH == 3 && g.kernelW == 3 {
            depthwiseBackward3x3s1(g, x: x, weight: weight, dy: dy, dx: dx, dw: dw, q: q, qsum: qsum)
            return
        }
        let c = g.inChannels, h = g.height, w = g.width, oh = g.outHeight, ow = g.outWidth
        let kh = g.kernelH, kw = g.kernelW, sw = g.strideW, dl = g.dilationW
        let pw = w + 2 * g.padW, ph = h + 2 * g.padH
        // Parallel over channels: each thread owns a channel's weight gradient and its input planes.
        parallelChunks(c, grain: 1) { range in
            let xs = FloatBuffer(zeros: ph * pw), gs = FloatBuffer(zeros: ph * pw)
            let xpad = xs.pointer, gpad = gs.pointer
            let acc = FloatBuffer(zeros: kh * kw)
            for ch in range {
                let wp = weight + ch * kh * kw
                acc.pointer.initialize(repeating: 0, count: kh * kw)
                for n in 0..<g.batch {
                    let plane = n * c + ch
                    let dyp = dy + plane * oh * ow
                    if dw != nil { copyPadded(g, x + plane * h * w, xpad, q) }
                    if dx != nil { gpad.initialize(repeating: 0, count: ph * pw) }
                    for oy in 0..<oh {
                        let dyr = dyp + oy * ow
                        for i in 0..<kh {
                            let row = (oy * g.strideH + i * g.dilationH) * pw
                            for j in 0..<kw {
                                let off = row + j * dl
                                if dw != nil {
                                    if sw == 1 { acc.pointer[i * kw + j] += Reduce.dot(dyr, xpad + off, count: ow) }
                                    else { var s: Float = 0; for o in 0..<ow { s += dyr[o] * xpad[off + o * sw] }; acc.pointer[i * kw + j] += s }
                                }
                                if dx != nil {
                                    let wv = wp[i * kw + j], gr = gpad + off
                                    if sw == 1 { for o in 0..<ow { gr[o] += wv * dyr[o] } }
                                    else { for o in 0..<ow { gr[o * sw] += wv * dyr[o] } }
                                }
                            }
                        }
                    }
                    if let dx {
                        let d = dx + plane * h * w
                        for ih in 0..<h { (d + ih * w).update(from: gpad + (ih + g.padH) * pw + g.padW, count: w) }
                        if let q, let qsum {
                            let (a, b) = quantBackwardPlane(q, x: x + plane * h * w, dx: d, count: h * w)
                            qsum[2 * ch] += a; qsum[2 * ch + 1] += b
                        }
                    }
                }
                if let dw { (dw + ch * kh * kw).update(from: acc.pointer, count: kh * kw) }
            }
        }
    }

    /// Stride-1 3x3 depthwise backward. dx is the correlation of dy (zero-bordered by 2*dilation) with
    /// the flipped kernel, computed like the forward (one store per element). dw uses nine SIMD
    /// accumulators per channel, reduced once per channel.
    static func depthwiseBackward3x3s1(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                       dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?,
                                       q: InputQuant? = nil, qsum: UnsafeMutablePointer<Double>? = nil) {
        typealias V = SIMD8<Float>
        let c = g.inChannels, h = g.height, w = g.width, oh = g.outHeight, ow = g.outWidth
        let dlh = g.dilationH, dlw = g.dilationW
        let pw = w + 2 * g.padW, ph = h + 2 * g.padH
        let bh = 2 * dlh, bw = 2 * dlw                   // border around dy for the full correlation
        let sw = ow + 2 * bw, sh = oh + 2 * bh
        parallelChunks(c, grain: 1) { range in
            let xs = FloatBuffer(zeros: ph * pw + 16), gs = FloatBuffer(zeros: sh * sw + 16)
            let xpad = xs.pointer, gpad = gs.pointer
            var flipped = [Float](repeating: 0, count: 9)
            for ch in range {
                let wp = weight + ch * 9
                for k in 0..<9 { flipped[k] = wp[8 - k] }
                var acc = [V](repeating: V(repeating: 0), count: 9)
                var tail = [Float](repeating: 0, count: 9)
                for n in 0..<g.batch {
                    let plane = n * c + ch
                    let dyp = dy + plane * oh * ow
                    if dw != nil {
                        copyPadded(g, x + plane * h * w, xpad, q)
                        // Nine accumulators in registers; each dy vector is loaded once for all taps.
                        var a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4]
                        var a5 = acc[5], a6 = acc[6], a7 = acc[7], a8 = acc[8]
                        for oy in 0..<oh {
                            let d = UnsafeRawPointer(dyp + oy * ow)
                            let x0 = UnsafeRawPointer(xpad + oy * pw)
                            let x1 = x0 + dlh * pw * 4, x2 = x0 + 2 * dlh * pw * 4
                            let s1 = dlw * 4, s2 = 2 * dlw * 4
                            var o = 0
                            while o + 8 <= ow {
                                let b = o * 4
                                let dv = d.loadUnaligned(fromByteOffset: b, as: V.self)
                                a0 += dv * x0.loadUnaligned(fromByteOffset: b, as: V.self)
                                a1 += dv * x0.loadUnaligned(fromByteOffset: b + s1, as: V.self)
                                a2 += dv * x0.loadUnaligned(fromByteOffset: b + s2, as: V.self)
                                a3 += dv * x1.loadUnaligned(fromByteOffset: b, as: V.self)
                                a4 += dv * x1.loadUnaligned(fromByteOffset: b + s1, as: V.self)
                                a5 += dv * x1.loadUnaligned(fromByteOffset: b + s2, as: V.self)
                                a6 += dv * x2.loadUnaligned(fromByteOffset: b, as: V.self)
                                a7 += dv * x2.loadUnaligned(fromByteOffset: b + s1, as: V.self)
                                a8 += dv * x2.loadUnaligned(fromByteOffset: b + s2, as: V.self)
                                o += 8
                            }
                            let df = dyp + oy * ow
                            while o < ow {
                                for i in 0..<3 {
                                    let xf = xpad + (oy + i * dlh) * pw
                                    for j in 0..<3 { tail[i * 3 + j] += df[o] * xf[o + j * dlw] }
                                }
                                o += 1
                            }
                        }
                        acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4
                        acc[5] = a5; acc[6] = a6; acc[7] = a7; acc[8] = a8
                    }
                    if let dx {
                        for oy in 0..<oh { (gpad + (oy + bh) * sw + bw).update(from: dyp + oy * ow, count: ow) }
                        let d = dx + plane * h * w
                        flipped.withUnsafeBufferPointer { fw in
                            for ih in 0..<h {
                                // dx[ih][iw] = sum_{i,j} w[i][j] dy[ih + pad - i*dil][iw + pad - j*dil]
                                //            = sum_{i,j} wflip[i][j] gpad[ih + pad - 2dil + i*dil + bh][iw + pad - 2dil + j*dil + bw]
                                let r0 = gpad + (ih + g.padH - 2 * dlh + bh) * sw + (g.padW - 2 * dlw + bw)
                                correlate3x3Row(out: d + ih * w, count: w, bias: 0, rows: (UnsafePointer(r0), UnsafePointer(r0 + dlh * sw), UnsafePointer(r0 + 2 * dlh * sw)), dil: dlw, w: fw.baseAddress!)
                            }
                        }
                        if let q, let qsum {
                            let (a, b) = quantBackwardPlane(q, x: x + plane * h * w, dx: d, count: h * w)
                            qsum[2 * ch] += a; qsum[2 * ch + 1] += b
                        }
                    }
                }
                if let dw {
                    for k in 0..<9 { dw[ch * 9 + k] = acc[k].sum() + tail[k] }
                }
            }
        }
    }
}
