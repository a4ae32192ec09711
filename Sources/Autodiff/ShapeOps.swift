import Kernels

extension Tensor {
    func normalizedAxis(_ axis: Int, op: String) -> Int {
        do { return try Shape.axis(axis, rank: rank, op: op, shape: shape) } catch { preconditionFailure("\(error)") }
    }

    /// Same values in a new shape (one entry may be -1). Shares storage: no copy.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "reshape: cannot infer -1 in \(newShape) for shape \(shape)")
            s[i] = count / known
        }
        precondition(Shape.count(s) == count && s.allSatisfy({ $0 >= 0 }),
                     "reshape: shape \(newShape) does not hold the \(count) elements of shape \(shape)")
        if s == shape { return self }
        let xs = shape
        return Tensor.make(s, storage, op: "reshape", inputs: [self]) { g in [g.reshaped(xs)] }
    }

    /// Flattens axes from `startAxis` on: [N, C, H, W] -> [N, C*H*W] by default.
    public func flattened(from startAxis: Int = 1) -> Tensor {
        let a = normalizedAxis(startAxis, op: "flatten")
        return reshaped(Array(shape[..<a]) + [Shape.count(Array(shape[a...]))])
    }

    public func unsqueezed(_ axis: Int) -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        precondition(a >= 0 && a <= rank, "unsqueeze: axis \(axis) out of range for shape \(shape)")
        var s = shape; s.insert(1, at: a)
        return reshaped(s)
    }

    public func squeezed(_ axis: Int) -> Tensor {
        let a = normalizedAxis(axis, op: "squeeze")
        precondition(shape[a] == 1, "squeeze: axis \(axis) of shape \(shape) has size \(shape[a]), not 1")
        var s = shape; s.remove(at: a)
        return reshaped(s)
    }

    /// Reorders axes: output axis k is input axis perm[k].
    public func permuted(_ perm: [Int]) -> Tensor {
        precondition(perm.count == rank && Set(perm) == Set(0..<rank),
                     "permute: \(perm) is not a permutation of the axes of shape \(shape)")
        if perm == Array(0..<rank) { return self }
        let outShape = perm.map { shape[$0] }
        let out = FloatBuffer(count: count)
        Layout.permute(pointer, shape: shape, perm: perm, out: out.pointer)
        var inverse = [Int](repeating: 0, count: rank)
        for (k, p) in perm.enumerated() { inverse[p] = k }
        return Tensor.make(outShape, out, op: "permute", inputs: [self]) { g in [g.permuted(inverse)] }
    }

    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        let i = normalizedAxis(a, op: "transpose"), j = normalizedAxis(b, op: "transpose")
        var p = Array(0..<rank); p.swapAt(i, j)
        return permuted(p)
    }

    /// Joins tensors along `axis`; all other axes must agree.
    public static func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
        precondition(!tensors.isEmpty, "concat: no tensors given")
        let first = tensors[0]
        let ax = first.normalizedAxis(axis, op: "concat")
        for t in tensors {
            var a = t.shape, b = first.shape
            precondition(a.count == b.count, "concat: shapes \(first.shape) and \(t.shape) differ in rank")
            a[ax] = 0; b[ax] = 0
            precondition(a == b, "concat: shapes \(first.shape) and \(t.shape) differ outside axis \(axis)")
        }
        var outShape = first.shape
        outShape[ax] = tensors.reduce(0) { $0 + $1.shape[ax] }
        let out = FloatBuffer(count: Shape.count(outShape))
        var start = 0
        var starts: [Int] = []
        for t in tensors {
            starts.append(start)
            Layout.sliceScatter(t.pointer, outShape: outShape, axis: ax, start: start, length: t.shape[ax], out: out.pointer, accumulate: false)
            start += t.shape[ax]
        }
        return Tensor.make(outShape, out, op: "concat", inputs: tensors) { g in
            zip(tensors, starts).map { t, s in t.requiresGrad ? g.slice(axis: ax, start: s, end: s + t.shape[ax]) : nil }
        }
    }

    /// Elements start..<end along `axis` (a copy).
    public func slice(axis: Int, start: Int, end: Int) -> Tensor {
        let ax = normalizedAxis(axis, op: "slice")
        precondition(start >= 0 && start <= end && end <= shape[ax],
                     "slice: range \(start)..<\(end) is outside axis \(axis) of shape \(shape)")
        var outShape = shape; outShape[ax] = end - start
        let out = FloatBuffer(count: Shape.count(outShape))
        Layout.slice(pointer, shape: shape, axis: ax, start: start, length: end - start, out: out.pointer)
        let xs = shape
        return Tensor.make(outShape, out, op: "slice", inputs: [self]) { g in
            let dx = FloatBuffer(zeros: Shape.count(xs))
            Layout.sliceScatter(g.pointer, outShape: xs, axis: ax, start: start, length: end - start, out: dx.pointer, accumulate: false)
            return [Tensor(shape: xs, storage: dx)]
        }
    }

    /// Splits along `axis` into pieces of the given sizes (which must add up to the axis length).
    public func split(axis: Int, sizes: [Int]) -> [Tensor] {
        let ax = normalizedAxis(axis, op: "split")
        precondition(sizes.reduce(0, +) == shape[ax] && sizes.allSatisfy { $0 >= 0 },
                     "split: sizes \(sizes) do not add up to axis \(axis) of shape \(shape)")
        var s = 0
        return sizes.map { n in defer { s += n }; return slice(axis: ax, start: s, end: s + n) }
    }

    /// Constant padding: `padding[k] = (before, after)` for each axis k (all axes listed).
    public func padded(_ padding: [(Int, Int)], value: Float = 0) -> Tensor {
        precondition(padding.count == rank, "pad: \(padding.count) (before, after) pairs given for shape \(shape) of rank \(rank)")
        precondition(padding.allSatisfy { $0.0 >= 0 && $0.1 >= 0 }, "pad: negative padding \(padding) for shape \(shape)")
        let before = padding.map(\.0), after = padding.map(\.1)
        let outShape = zip(shape, padding).map { $0 + $1.0 + $1.1 }
        let out = FloatBuffer(count: Shape.count(outShape))
        Layout.pad(pointer, shape: shape, before: before, after: after, value: value, out: out.pointer)
        let xs = shape
        return Tensor.make(outShape, out, op: "pad", inputs: [self]) { g in
            let dx = FloatBuffer(count: Shape.count(xs))
            Layout.unpad(g.pointer, shape: xs, before: before, after: after, dx: dx.pointer)
            return [Tensor(shape: xs, storage: dx)]
        }
    }

    /// Gathers `indices` along `axis` (repeats allowed; their gradients add up).
    public func indexSelect(axis: Int, indices: [Int]) -> Tensor {
        let ax = normalizedAxis(axis, op: "index_select")
        for i in indices {
            precondition(i >= 0 && i < shape[ax], "index_select: index \(i) is out of range for axis \(axis) of shape \(shape)")
        }
        var outShape = shape; outShape[ax] = indices.count
        let out = FloatBuffer(count: Shape.count(outShape))
        Layout.indexSelect(pointer, shape: shape, axis: ax, indices: indices, out: out.pointer)
        let xs = shape
        return Tensor.make(outShape, out, op: "index_select", inputs: [self]) { g in
            let dx = FloatBuffer(count: Shape.count(xs))
            Layout.indexAdd(g.pointer, xShape: xs, axis: ax, indices: indices, dx: dx.pointer)
            return [Tensor(shape: xs, storage: dx)]
        }
    }
}
