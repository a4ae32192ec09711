import Kernels

extension Tensor {
    func poolGeometry(_ kernel: (Int, Int), _ stride: (Int, Int)?, _ padding: (Int, Int), op: String) -> PoolGeometry {
        do { return try PoolGeometry(input: shape, kernel: kernel, stride: stride ?? kernel, padding: padding, op: op) }
        catch { preconditionFailure("\(error)") }
    }

    /// Max pooling over NCHW (stride defaults to the kernel, as in PyTorch).
    public func maxPool2d(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) -> Tensor {
        let geo = poolGeometry(kernel, stride, padding, op: "max_pool2d")
        let outCount = Shape.count(geo.outputShape)
        let out = FloatBuffer(count: outCount)
        let arg = UnsafeMutableBufferPointer<Int32>.allocate(capacity: outCount)
        Pool.maxForward(geo, x: pointer, y: out.pointer, arg: arg.baseAddress!)
        let args = Array(arg); arg.deallocate()
        let xs = shape
        return Tensor.make(geo.outputShape, out, op: "max_pool2d", inputs: [self]) { g in
            let dx = FloatBuffer(count: Shape.count(xs))
            args.withUnsafeBufferPointer { Pool.maxBackward(geo, dy: g.pointer, arg: $0.baseAddress!, dx: dx.pointer) }
            return [Tensor(shape: xs, storage: dx)]
        }
    }

    /// Average pooling; `countIncludePad` defaults to true like PyTorch.
    public func avgPool2d(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0), countIncludePad: Bool = true) -> Tensor {
        let geo = poolGeometry(kernel, stride, padding, op: "avg_pool2d")
        let out = FloatBuffer(count: Shape.count(geo.outputShape))
        Pool.avgForward(geo, countIncludePad: countIncludePad, x: pointer, y: out.pointer)
        let xs = shape
        return Tensor.make(geo.outputShape, out, op: "avg_pool2d", inputs: [self]) { g in
            let dx = FloatBuffer(count: Shape.count(xs))
            Pool.avgBackward(geo, countIncludePad: countIncludePad, dy: g.pointer, dx: dx.pointer)
            return [Tensor(shape: xs, storage: dx)]
        }
    }

    /// Mean over H and W: [N, C, H, W] -> [N, C, 1, 1].
    public func globalAvgPool2d() -> Tensor {
        precondition(rank == 4, "global_avg_pool2d: input must be 4-D NCHW, got shape \(shape)")
        let planes = shape[0] * shape[1], hw = shape[2] * shape[3]
        let out = FloatBuffer(count: planes)
        Pool.globalAvgForward(planes: planes, hw: hw, x: pointer, y: out.pointer)
        let xs = shape
        return Tensor.make([shape[0], shape[1], 1, 1], out, op: "global_avg_pool2d", inputs: [self]) { g in
            let dx = FloatBuffer(count: Shape.count(xs))
            Pool.globalAvgBackward(planes: planes, hw: hw, dy: g.pointer, dx: dx.pointer)
            return [Tensor(shape: xs, storage: dx)]
        }
    }

    /// Nearest-neighbour upsampling by integer factors.
    public func upsampleNearest(scale: (Int, Int) = (2, 2)) -> Tensor {
        precondition(rank == 4, "upsample_nearest: input must be 4-D NCHW, got shape \(shape)")
        precondition(scale.0 >= 1 && scale.1 >= 1, "upsample_nearest: scale factors must be >= 1, got \(scale)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let outShape = [n, c, h * scale.0, w * scale.1]
        let out = FloatBuffer(count: Shape.count(outShape))
        Pool.upsampleNearestForward(planes: n * c, height: h, width: w, factorH: scale.0, factorW: scale.1, x: pointer, y: out.pointer)
        let xs = shape
        return Tensor.make(outShape, out, op: "upsample_nearest", inputs: [self]) { g in
            let dx = FloatBuffer(count: Shape.count(xs))
            Pool.upsampleNearestBackward(planes: n * c, height: h, width: w, factorH: scale.0, factorW: scale.1, dy: g.pointer, dx: dx.pointer)
            return [Tensor(shape: xs, storage: dx)]
        }
    }
}
