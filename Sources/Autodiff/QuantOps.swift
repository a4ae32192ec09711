import Kernels

/// Straight-through estimator for the input gradient of fake quantization.
public enum STE: String, Sendable, CaseIterable {
    /// Gradient passes only where the value lies on the grid's range (PyTorch's learnable fake quant).
    case clipped
    /// Gradient passes everywhere (the plain STE), for ablations.
    case identity
}

extension Tensor {
    /// Learnable affine fake quantization (PyTorch's `_fake_quantize_learnable_per_{tensor,channel}_affine`):
    /// per tensor when `axis` is nil (scale and zeroPoint of shape [1]), else per channel along `axis`
    /// (shape [C]). Gradients flow to x, scale and zeroPoint (each multiplied by `gradFactor` for scale and
    /// zero point). `elementMask` (same shape as x) or `channelMask` ([C]) select which values are
    /// quantized (non-zero) for quantization dropout; the rest pass through unchanged.
    public func fakeQuantize(scale: Tensor, zeroPoint: Tensor, qmin: Int, qmax: Int, axis: Int? = nil,
                             gradFactor: Float = 1, ste: STE = .clipped,
                             elementMask: Tensor? = nil, channelMask: Tensor? = nil,
                             preActivation: FakeQuant.PreActivation? = nil) -> Tensor {
        precondition(qmin < qmax, "fake_quantize: qmin \(qmin) must be below qmax \(qmax)")
        let ax = axis.map { normalizedAxis($0, op: "fake_quantize") }
        let layout = FakeQuant.Layout(shape: shape, axis: ax)
        precondition(scale.count == layout.channels && zeroPoint.count == layout.channels,
                     "fake_quantize: scale \(scale.shape) and zero point \(zeroPoint.shape) must hold \(layout.channels) values for input \(shape) with axis \(String(describing: axis))")
        if let m = elementMask { precondition(m.shape == shape, "fake_quantize: element mask \(m.shape) must match input \(shape)") }
        if let m = channelMask { precondition(m.count == layout.channels, "fake_quantize: channel mask \(m.shape) must hold \(layout.channels) values") }
        let out = FloatBuffer(count: count)
        let em = elementMask.map { UnsafePointer($0.pointer) }, cm = channelMask.map { UnsafePointer($0.pointer) }
        FakeQuant.forward(layout, x: pointer, scale: scale.pointer, zeroPoint: zeroPoint.pointer, qmin: qmin, qmax: qmax,
                          elementMask: em, channelMask: cm, preActivation: preActivation, y: out.pointer)
        let x = self
        let emT = elementMask?.detached(), cmT = channelMask?.detached()
        return Tensor.make(shape, out, op: preActivation == nil ? "fake_quantize" : "fused_activation_fake_quantize", inputs: [x, scale, zeroPoint]) { g in
            // Each element of g is read before dx is written at the same index: an unshared g takes dx.
            let dx = x.requiresGrad ? (g.consumable ? g.storage : FloatBuffer(count: x.count)) : nil
            let ds = scale.requiresGrad ? FloatBuffer(count: scale.count) : nil
            let dz = zeroPoint.requiresGrad ? FloatBuffer(count: zeroPoint.count) : nil
            FakeQuant.backward(layout, x: x.pointer, dy: g.pointer, scale: scale.pointer, zeroPoint: zeroPoint.pointer,
                               qmin: qmin, qmax: qmax, gradFactor: gradFactor, clippedSTE: ste == .clipped, perTensor: ax == nil,
                               elementMask: emT.map { UnsafePointer($0.pointer) }, channelMask: cmT.map { UnsafePointer($0.pointer) },
                               preActivation: preActivation, dx: dx?.pointer, dscale: ds?.pointer, dzeroPoint: dz?.pointer)
            return [dx.map { Tensor(shape: x.shape, storage: $0) }, ds.map { Tensor(shape: scale.shape, storage: $0) },
                    dz.map { Tensor(shape: zeroPoint.shape, storage: $0) }]
        }
    }
}

extension Tensor {
    /// Depthwise conv of a per-tensor fake-quantized input, fused: equal to
    /// `fakeQuantize(scale:zeroPoint:...)` followed by `conv2d(...)`, without materialising the quantized
    /// input (the kernel quantizes each plane as it copies it). With `preActivation` the input is
    /// act(self), also never materialised. Gradients flow to x (through the STE),
    /// weight, bias, scale and zero point.
    public func depthwiseConv2dQuantizedInput(_ weight: Tensor, bias: Tensor?, stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int),
                                              scale: Tensor, zeroPoint: Tensor, qmin: Int, qmax: Int, gradFactor: Float, ste: STE,
                                              preActivation: FakeQuant.PreActivation? = nil) -> Tensor {
        let geo: ConvGeometry
        do {
            geo = try ConvGeometry(input: shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation, groups: shape.count == 4 ? shape[1] : 1)
        } catch { preconditionFailure("\(error)") }
        precondition(geo.isDepthwise, "depthwise_conv2d_quantized_input: weight \(weight.shape) is not depthwise for input \(shape)")
        precondition(scale.count == 1 && zeroPoint.count == 1 && qmin < qmax, "depthwise_conv2d_quantized_input: needs a per-tensor quantizer")
        let q = InputQuant(scale: scale.pointer[0], zeroPoint: zeroPoint.pointer[0], qmin: qmin, qmax: qmax, clipped: ste == .clipped,
                           preActivation: preActivation)
        let out = FloatBuffer(count: Shape.count(geo.outputShape))
        Conv2D.forward(geo, x: pointer, weight: weight.pointer, bias: bias.map { UnsafePointer($0.pointer) }, y: out.pointer, inputQuant: q)
        let x = self
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        inputs += [scale, zeroPoint]
        return Tensor.make(geo.outputShape, out, op: "depthwise_conv2d_quantized_input", inputs: inputs) { g in
            let needQ = scale.requiresGrad || zeroPoint.requiresGrad
            let dx = (x.requiresGrad || needQ) ? FloatBuffer(count: x.count) : nil
            let dw = weight.requiresGrad ? FloatBuffer(count: weight.count) : nil
            let db = (bias?.requiresGrad ?? false) ? FloatBuffer(count: geo.outChannels) : nil
            let sums = UnsafeMutablePointer<Double>.allocate(capacity: 2 * geo.inChannels)
            defer { sums.deallocate() }
            Conv2D.backward(geo, x: x.pointer, weight: weight.pointer, dy: g.pointer, dx: dx?.pointer, dw: dw?.pointer, db: db?.pointer,
                            inputQuant: q, quantSums: dx == nil ? nil : sums)
            var dS: Double = 0, dZ: Double = 0
            if dx != nil { for c in 0..<geo.inChannels { dS += sums[2 * c]; dZ += sums[2 * c + 1] } }
            var r: [Tensor?] = [x.requiresGrad ? dx.map { Tensor(shape: x.shape, storage: $0) } : nil,
                                dw.map { Tensor(shape: weight.shape, storage: $0) }]
            if bias != nil { r.append(db.map { Tensor(shape: [geo.outChannels], storage: $0) }) }
            r.append(scale.requiresGrad ? Tensor(shape: scale.shape, scalars: [Float(dS) * gradFactor]) : nil)
            r.append(zeroPoint.requiresGrad ? Tensor(shape: zeroPoint.shape, scalars: [Float(dZ) * gradFactor]) : nil)
            return r
        }
    }
}
