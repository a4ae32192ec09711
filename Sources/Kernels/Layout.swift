/// Data-movement kernels: transpose/permute, axis slices and concatenation, padding, gathers.
public enum Layout {
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for k in stride(from: shape.count - 1, through: 0, by: -1) { s[k] = acc; acc *= shape[k] }
        return s
    }

    /// out (shape = shape[perm[k]]) = x permuted; the inner loop runs over the last output axis.
    public static func permute(_ x: UnsafePointer<Float>, shape: [Int], perm: [Int], out: UnsafeMutablePointer<Float>) {
        let r = shape.count
        if r == 0 { out[0] = x[0]; return }
        let inStr = strides(shape)
        let outShape = perm.map { shape[$0] }
        let src = perm.map { inStr[$0] }
        let inner = outShape[r - 1], innerStride = src[r - 1]
        let rows = outShape.dropLast().reduce(1, *)
        parallelChunks(rows, grain: max(1, 16_384 / max(1, inner))) { range in
            for row in range {
                var rem = row, off = 0
                var k = r - 2
                while k >= 0 { off += (rem % outShape[k]) * src[k]; rem /= outShape[k]; k -= 1 }
                let o = out + row * inner
                if innerStride == 1 { o.update(from: x + off, count: inner) }
                else { for i in 0..<inner { o[i] = x[off + i * innerStride] } }
            }
        }
    }

    /// View of `shape` around `axis` as (outer, axis, inner).
    public static func split(_ shape: [Int], axis: Int) -> (outer: Int, size: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    /// Copies `x[..., start..<start+len, ...]` along `axis` into `out`.
    public static func slice(_ x: UnsafePointer<Float>, shape: [Int], axis: Int, start: Int, length: Int, out: UnsafeMutablePointer<Float>) {
        let (outer, size, inner) = split(shape, axis: axis)
        let blk = length * inner
        parallelChunks(outer, grain: max(1, 16_384 / max(1, blk))) { r in
            for o in r { (out + o * blk).update(from: x + (o * size + start) * inner, count: blk) }
        }
    }

    /// Writes `src` (its axis length `length`) into `out[..., start..<start+length, ...]`, adding when `accumulate`.
    public static func sliceScatter(_ src: UnsafePointer<Float>, outShape: [Int], axis: Int, start: Int, length: Int,
                                    out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let (outer, size, inner) = split(outShape, axis: axis)
        let blk = length * inner
        parallelChunks(outer, grain: max(1, 16_384 / max(1, blk))) { r in
            for o in r {
                let d = out + (o * size + start) * inner, s = src + o * blk
                if accumulate { for i in 0..<blk { d[i] += s[i] } } else { d.update(from: s, count: blk) }
            }
        }
    }

    /// Gathers indices along `axis`: out[..., k, ...] = x[..., idx[k], ...].
    public static func indexSelect(_ x: UnsafePointer<Float>, shape: [Int], axis: Int, indices: [Int], out: UnsafeMutablePointer<Float>) {
        let (outer, size, inner) = split(shape, axis: axis)
        let m = indices.count
        indices.withUnsafeBufferPointer { idx in
            parallelChunks(outer, grain: max(1, 16_384 / max(1, m * inner))) { r in
                for o in r {
                    for k in 0..<m { (out + (o * m + k) * inner).update(from: x + (o * size + idx[k]) * inner, count: inner) }
                }
            }
        }
    }

    /// Adjoint of `indexSelect`: dx (zeroed here) gets g[..., k, ...] added at idx[k] (repeats accumulate).
    public static func indexAdd(_ g: UnsafePointer<Float>, xShape: [Int], axis: Int, indices: [Int], dx: UnsafeMutablePointer<Float>) {
        let (outer, size, inner) = split(xShape, axis: axis)
        let m = indices.count
        dx.initialize(repeating: 0, count: outer * size * inner)
        indices.withUnsafeBufferPointer { idx in
            parallelChunks(outer, grain: max(1, 16_384 / max(1, m * inner))) { r in
                for o in r {
                    for k in 0..<m {
                        let d = dx + (o * size + idx[k]) * inner, s = g + (o * m + k) * inner
                        for i in 0..<inner { d[i] += s[i] }
                    }
                }
            }
        }
    }

    /// Constant padding: `before[k]`/`after[k]` elements on each side of axis k. out is fully written.
    public static func pad(_ x: UnsafePointer<Float>, shape: [Int], before: [Int], after: [Int], value: Float, out: UnsafeMutablePointer<Float>) {
        let outShape = zip(shape, zip(before, after)).map { $0 + $1.0 + $1.1 }
        out.initialize(repeating: value, count: outShape.reduce(1, *))
        forEachRow(shape: shape, outShape: outShape, before: before) { inOff, outOff, n in
            (out + outOff).update(from: x + inOff, count: n)
        }
    }

    /// Adjoint of `pad`: copies the interior back out.
    public static func unpad(_ g: UnsafePointer<Float>, shape: [Int], before: [Int], after: [Int], dx: UnsafeMutablePointer<Float>) {
        let outShape = zip(shape, zip(before, after)).map { $0 + $1.0 + $1.1 }
        forEachRow(shape: shape, outShape: outShape, before: before) { inOff, outOff, n in
            (dx + inOff).update(from: g + outOff, count: n)
        }
    }

    /// Walks the rows (last axis) of `shape` and the matching rows inside a padded `outShape`.
    static func forEachRow(shape: [Int], outShape: [Int], before: [Int], _ body: (Int, Int, Int) -> Void) {
        let r = shape.count
        if r == 0 { body(0, 0, 1); return }
        let inner = shape[r - 1]
        let outStr = strides(outShape)
        let rows = shape.dropLast().reduce(1, *)
        if inner == 0 || rows == 0 { return }
        for row in 0..<rows {
            var rem = row, off = before[r - 1]
            var k = r - 2
            while k >= 0 { off += (rem % shape[k] + before[k]) * outStr[k]; rem /= shape[k]; k -= 1 }
            body(row * inner, off, inner)
        }
    }
}
