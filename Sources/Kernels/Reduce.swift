/// Contiguous reductions with SIMD accumulators (8 lanes x 2 chains so the adds pipeline).
public enum Reduce {
    @inline(__always)
    public static func sum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var a0 = SIMD8<Float>(repeating: 0), a1 = SIMD8<Float>(repeating: 0)
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 16 <= n {
            a0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            a1 += raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            i += 16
        }
        var s = (a0 + a1).sum()
        while i < n { s += x[i]; i += 1 }
        return s
    }

    @inline(__always)
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) -> Float {
        var a0 = SIMD8<Float>(repeating: 0), a1 = SIMD8<Float>(repeating: 0)
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y)
        while i + 16 <= n {
            a0 += rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) * ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            a1 += rx.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self) * ry.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            i += 16
        }
        var s = (a0 + a1).sum()
        while i < n { s += x[i] * y[i]; i += 1 }
        return s
    }

    /// Sum of a whole buffer: fixed 64K-element blocks (independent of the thread count, so the bits
    /// do not change with it), each summed with SIMD, block sums added in Double.
    public static func total(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        let block = 65_536
        let blocks = (n + block - 1) / block
        if blocks <= 1 { return sum(x, count: n) }
        let partial = FloatBuffer(count: blocks)
        let pp = partial.pointer
        parallelChunks(blocks, grain: 1) { r in
            for b in r { pp[b] = sum(x + b * block, count: min(block, n - b * block)) }
        }
        var acc: Double = 0
        for b in 0..<blocks { acc += Double(pp[b]) }
        return Float(acc)
    }

    /// Sums `x` (of `shape`) over the axes whose flag in `reduce` is true, writing the kept-axis layout
    /// to `out` (row-major over the kept axes). Iterates `x` in memory order so every pass is streaming.
    public static func sumAxes(_ x: UnsafePointer<Float>, shape: [Int], reduce: [Bool], out: UnsafeMutablePointer<Float>) {
        let plan = AxisPlan(shape: shape, reduce: reduce)
        out.initialize(repeating: 0, count: plan.outCount)
        let inner = plan.dims.last!
        plan.forEachRow { inOff, outOff in
            if inner.reduced {
                out[outOff] += sum(x + inOff, count: inner.size)
            } else {
                let o = out + outOff, s = x + inOff
                for i in 0..<inner.size { o[i] += s[i] }
            }
        }
    }

    /// Max over the reduced axes; `arg` receives the flat input index of the first maximum.
    public static func maxAxes(_ x: UnsafePointer<Float>, shape: [Int], reduce: [Bool],
                               out: UnsafeMutablePointer<Float>, arg: UnsafeMutablePointer<Int>) {
        let plan = AxisPlan(shape: shape, reduce: reduce)
        out.initialize(repeating: -.infinity, count: plan.outCount)
        arg.initialize(repeating: -1, count: plan.outCount)
        let inner = plan.dims.last!
        plan.forEachRow { inOff, outOff in
            if inner.reduced {
                var best = out[outOff], bi = arg[outOff]
                for i in 0..<inner.size {
                    let v = x[inOff + i]
                    // NaN propagates like torch.max: a NaN wins and stays.
                    if v > best || bi < 0 || (v.isNaN && !best.isNaN) { best = v; bi = inOff + i }
                }
                out[outOff] = best; arg[outOff] = bi
            } else {
                for i in 0..<inner.size {
                    let v = x[inOff + i]
                    let o = outOff + i
                    if v > out[o] || arg[o] < 0 || (v.isNaN && !out[o].isNaN) { out[o] = v; arg[o] = inOff + i }
                }
            }
        }
    }
}

/// Collapses a shape into alternating runs of reduced and kept axes and walks it row by row
/// (a row = the innermost run), handing out input and output offsets.
struct AxisPlan {
    struct Dim { var size: Int; var reduced: Bool }
    var dims: [Dim]
    var outCount: Int

    init(shape: [Int], reduce: [Bool]) {
        precondition(shape.count == reduce.count, "AxisPlan: shape \(shape) and reduce flags \(reduce) differ in rank")
        var d: [Dim] = []
        for (s, r) in zip(shape, reduce) where s != 1 {
            if let last = d.last, last.reduced == r { d[d.count - 1].size *= s } else { d.append(Dim(size: s, reduced: r)) }
        }
        if d.isEmpty { d = [Dim(size: 1, reduced: false)] }
        dims = d
        outCount = zip(shape, reduce).reduce(1) { $0 * ($1.1 ? 1 : $1.0) }
    }

    @inline(__always)
    func forEachRow(_ body: (Int, Int) -> Void) {
        let rank = dims.count
        let innerSize = dims[rank - 1].size
        if rank == 1 { body(0, 0); return }
        // Output stride of each outer dim (0 for reduced dims).
        var outStride = [Int](repeating: 0, count: rank)
        var acc = dims[rank - 1].reduced ? 1 : innerSize
        for k in stride(from: rank - 2, through: 0, by: -1) {
            if !dims[k].reduced { outStride[k] = acc; acc *= dims[k].size }
        }
        var idx = [Int](repeating: 0, count: rank - 1)
        var inOff = 0, outOff = 0
        let rows = dims[0..<(rank - 1)].reduce(1) { $0 * $1.size }
        for _ in 0..<rows {
            body(inOff, outOff)
            inOff += innerSize
            var k = rank - 2
            while k >= 0 {
                idx[k] += 1
                outOff += outStride[k]
                if idx[k] < dims[k].size { break }
                outOff -= outStride[k] * dims[k].size
                idx[k] = 0
                k -= 1
            }
        }
    }
}
