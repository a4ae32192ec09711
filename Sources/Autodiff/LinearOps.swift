import Kernels

extension Tensor {
    /// Matrix product: [M, K] x [K, N] -> [M, N], or batched [B, M, K] x [B, K, N] -> [B, M, N].
    public func matmul(_ other: Tensor) -> Tensor {
        let a = self, b = other
        precondition((a.rank == 2 && b.rank == 2) || (a.rank == 3 && b.rank == 3 && a.shape[0] == b.shape[0]),
                     "matmul: expected [M,K]x[K,N] or [B,M,K]x[B,K,N], got \(a.shape) and \(b.shape)")
        let batched = a.rank == 3
        let bs = batched ? a.shape[0] : 1
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
        precondition(b.shape[b.rank - 2] == k, "matmul: inner dimensions differ: \(a.shape) and \(b.shape)")
        let outShape = batched ? [bs, m, n] : [m, n]
        let out = FloatBuffer(count: bs * m * n)
        for i in 0..<bs {
            sgemm(m: m, n: n, k: k, a: a.pointer + i * m * k, lda: k, b: b.pointer + i * k * n, ldb: n,
                  c: out.pointer + i * m * n, ldc: n)
        }
        return Tensor.make(outShape, out, op: "matmul", inputs: [a, b]) { g in
            var ga: Tensor? = nil, gb: Tensor? = nil
            if a.requiresGrad {
                let t = FloatBuffer(count: a.count)
                for i in 0..<bs {  // dA = G B^T
                    sgemm(transB: true, m: m, n: k, k: n, a: g.pointer + i * m * n, lda: n, b: b.pointer + i * k * n, ldb: n,
                          c: t.pointer + i * m * k, ldc: k)
                }
                ga = Tensor(shape: a.shape, storage: t)
            }
            if b.requiresGrad {
                let t = FloatBuffer(count: b.count)
                for i in 0..<bs {  // dB = A^T G
                    sgemm(transA: true, m: k, n: n, k: m, a: a.pointer + i * m * k, lda: k, b: g.pointer + i * m * n, ldb: n,
                          c: t.pointer + i * k * n, ldc: n)
                }
                gb = Tensor(shape: b.shape, storage: t)
            }
            return [ga, gb]
        }
    }

    /// Inference only (outside the tape, `noGrad`): `conv2d` whose output planes are clamped to `clamp` in
    /// the conv's own epilogue (relu: 0...inf, relu6: 0...6), so the activation costs no extra pass.
    /// Values equal `conv2d(...)` followed by relu / relu6.
    public func conv2dInference(_ weight: Tensor, bias: Tensor?, stride: (Int, Int), padding: (Int, Int),
                                dilation: (Int, Int), groups: Int, clamp: ClosedRange<Float>?) -> Tensor {
        precondition(!GradMode.isEnabled, "conv2dInference records no gradient: call it inside noGrad")
        let (geo, out) = convForward(weight, bias, stride, padding, dilation, groups, clamp, op: "conv2dInference")
        return Tensor(shape: geo.outputShape, storage: out)
    }

    /// The forward pass shared by `conv2d` and `conv2dInference`: geometry and bias checks, output buffer.
    private func convForward(_ weight: Tensor, _ bias: Tensor?, _ stride: (Int, Int), _ padding: (Int, Int), _ dilation: (Int, Int),
                             _ groups: Int, _ clamp: ClosedRange<Float>?, op: String) -> (ConvGeometry, FloatBuffer) {
        let geo: ConvGeometry
        do {
            geo = try ConvGeometry(input: shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
        } catch { preconditionFailure("\(error)") }
        if let bias {
            precondition(bias.shape == [geo.outChannels], "\(op): bias shape \(bias.shape) must be [\(geo.outChannels)] for weight \(weight.shape)")
        }
        let out = FloatBuffer(count: Shape.count(geo.outputShape))
        Conv2D.forward(geo, x: pointer, weight: weight.pointer, bias: bias.map { UnsafePointer($0.pointer) }, y: out.pointer, clamp: clamp)
        return (geo, out)
    }

    /// 2-D convolution (cross-correlation, as in PyTorch) of NCHW input with OIHW weights.
    public func conv2d(_ weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                       dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        let (geo, out) = convForward(weight, bias, stride, padding, dilation, groups, nil, op: "conv2d")
        let x = self
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tensor.make(geo.outputShape, out, op: "conv2d", inputs: inputs) { g in
            let dx = x.requiresGrad ? FloatBuffer(count: x.count) : nil
            let dw = weight.requiresGrad ? FloatBuffer(count: weight.count) : nil
            let db = (bias?.requiresGrad ?? false) ? FloatBuffer(count: geo.outChannels) : nil
            Conv2D.backward(geo, x: x.pointer, weight: weight.pointer, dy: g.pointer,
                            dx: dx?.pointer, dw: dw?.pointer, db: db?.pointer)
            var r: [Tensor?] = [dx.map { Tensor(shape: x.shape, storage: $0) }, dw.map { Tensor(shape: weight.shape, storage: $0) }]
            if bias != nil { r.append(db.map { Tensor(shape: [geo.outChannels], storage: $0) }) }
            return r
        }
    }
}
