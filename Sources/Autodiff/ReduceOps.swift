import Kernels

extension Tensor {
    func axisFlags(_ axes: [Int], op: String) -> [Bool] {
        var flags = [Bool](repeating: false, count: rank)
        for a in axes {
            do { flags[try Shape.axis(a, rank: rank, op: op, shape: shape)] = true } catch { preconditionFailure("\(error)") }
        }
        return flags
    }

    func sum(axesFlags flags: [Bool], keepDims: Bool = true) -> Tensor {
        let keptShape = zip(shape, flags).map { $1 ? 1 : $0 }
        let out = FloatBuffer(count: Shape.count(keptShape))
        if flags.allSatisfy({ $0 }) || rank == 0 {
            out.pointer[0] = Reduce.total(pointer, count: count)
        } else {
            Reduce.sumAxes(pointer, shape: shape, reduce: flags, out: out.pointer)
        }
        let outShape = keepDims ? keptShape : zip(shape, flags).compactMap { $1 ? nil : $0 }
        let xs = shape
        return Tensor.make(outShape, out, op: "sum", inputs: [self]) { g in
            [g.reshaped(keptShape).broadcast(to: xs)]
        }
    }

    /// Sum over `axes` (all axes when nil). Negative axes count from the end.
    public func sum(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let flags = axes.map { axisFlags($0, op: "sum") } ?? [Bool](repeating: true, count: rank)
        return sum(axesFlags: flags, keepDims: keepDims)
    }

    public func mean(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let flags = axes.map { axisFlags($0, op: "mean") } ?? [Bool](repeating: true, count: rank)
        let n = zip(shape, flags).reduce(1) { $0 * ($1.1 ? $1.0 : 1) }
        return sum(axesFlags: flags, keepDims: keepDims).scaled(1 / Float(Swift.max(n, 1)))
    }

    /// Max over `axes`; the gradient goes to the first maximal element (like `torch.max(dim)`).
    public func max(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let flags = axes.map { axisFlags($0, op: "max") } ?? [Bool](repeating: true, count: rank)
        precondition(count > 0, "max: empty tensor of shape \(shape)")
        let keptShape = zip(shape, flags).map { $1 ? 1 : $0 }
        let outCount = Shape.count(keptShape)
        let out = FloatBuffer(count: outCount)
        let arg = UnsafeMutablePointer<Int>.allocate(capacity: outCount)
        Reduce.maxAxes(pointer, shape: shape, reduce: flags, out: out.pointer, arg: arg)
        let args = Array(UnsafeBufferPointer(start: arg, count: outCount))
        arg.deallocate()
        let outShape = keepDims ? keptShape : zip(shape, flags).compactMap { $1 ? nil : $0 }
        let xs = shape, n = count
        return Tensor.make(outShape, out, op: "max", inputs: [self]) { g in
            let gx = FloatBuffer(zeros: n)
            for (o, i) in args.enumerated() { gx.pointer[i] += g.pointer[o] }
            return [Tensor(shape: xs, storage: gx)]
        }
    }
}
