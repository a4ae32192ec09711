import Kernels

extension Tensor {
    /// Batch normalisation of NCHW input (PyTorch's `batch_norm`). In training the batch statistics
    /// normalise and `runningMean`/`runningVar` (if given) move by `momentum` towards them (unbiased
    /// variance, as PyTorch); otherwise the running statistics normalise. Gradients flow to x, weight
    /// and bias; the running statistics are buffers.
    public func batchNorm(weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?,
                          training: Bool, momentum: Float = 0.1, eps: Float = 1e-5) -> Tensor {
        precondition(rank == 4 || rank == 2, "batch_norm: input must be NCHW or NC, got shape \(shape)")
        let n = shape[0], c = shape[1], hw = rank == 4 ? shape[2] * shape[3] : 1
        for (name, t) in [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar)] {
            if let t { precondition(t.shape == [c], "batch_norm: \(name) shape \(t.shape) must be [\(c)] for input \(shape)") }
        }
        let out = FloatBuffer(count: count)
        let mean = FloatBuffer(count: c), invstd = FloatBuffer(count: c)
        let meanLow = FloatBuffer(zeros: c)   // stays zero in evaluation
        let gp = weight.map { UnsafePointer($0.pointer) }, bp = bias.map { UnsafePointer($0.pointer) }
        if training {
            precondition(n * hw > 1, "batch_norm: training needs more than one value per channel, got input \(shape)")
            let vu = FloatBuffer(count: c)
            Norm.batchNormTrainForward(n: n, c: c, hw: hw, x: pointer, gamma: gp, beta: bp, eps: eps, y: out.pointer,
                                       mean: mean.pointer, meanLow: meanLow.pointer, invstd: invstd.pointer, varUnbiased: vu.pointer)
            if let rm = runningMean, let rv = runningVar {
                for ch in 0..<c {
                    rm.pointer[ch] = (1 - momentum) * rm.pointer[ch] + momentum * mean.pointer[ch]
                    rv.pointer[ch] = (1 - momentum) * rv.pointer[ch] + momentum * vu.pointer[ch]
                }
            }
        } else {
            precondition(runningMean != nil && runningVar != nil, "batch_norm: evaluation needs running statistics")
            for ch in 0..<c {
                mean.pointer[ch] = runningMean!.pointer[ch]
                invstd.pointer[ch] = 1 / (runningVar!.pointer[ch] + eps).squareRoot()
            }
            Norm.batchNormApply(n: n, c: c, hw: hw, x: pointer, gamma: gp, beta: bp, mean: mean.pointer, invstd: invstd.pointer, y: out.pointer)
        }
        let x = self
        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return Tensor.make(shape, out, op: "batch_norm", inputs: inputs) { g in
            let dx = x.requiresGrad ? FloatBuffer(count: x.count) : nil
            let dg = (weight?.requiresGrad ?? false) ? FloatBuffer(count: c) : nil
            let db = (bias?.requiresGrad ?? false) ? FloatBuffer(count: c) : nil
            Norm.batchNormBackward(n: n, c: c, hw: hw, x: x.pointer, dy: g.pointer, gamma: weight.map { UnsafePointer($0.pointer) },
                                   mean: mean.pointer, meanLow: meanLow.pointer, invstd: invstd.pointer, batchStats: training,
                                   dx: dx?.pointer, dgamma: dg?.pointer, dbeta: db?.pointer)
            var r: [Tensor?] = [dx.map { Tensor(shape: x.shape, storage: $0) }]
            if weight != nil { r.append(dg.map { Tensor(shape: [c], storage: $0) }) }
            if bias != nil { r.append(db.map { Tensor(shape: [c], storage: $0) }) }
            return r
        }
    }
}
