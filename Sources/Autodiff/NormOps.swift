import Kernels

/// Sums per-channel values over every process of a data-parallel job, in place (an MPI allreduce):
/// what synchronised BatchNorm needs to normalise with the statistics of the global batch.
public protocol CrossProcessSum: AnyObject {
    func sumInPlace(_ values: UnsafeMutablePointer<Double>, count: Int)
}

extension Tensor {
    /// Batch normalisation of NCHW input (PyTorch's `batch_norm`). In training the batch statistics
    /// normalise and `runningMean`/`runningVar` (if given) move by `momentum` towards them (unbiased
    /// variance, as PyTorch); otherwise the running statistics normalise. Gradients flow to x, weight
    /// and bias; the running statistics are buffers. With `sync` (training only) the statistics are
    /// those of the global batch of every process (PyTorch's SyncBatchNorm; `syncBatchNorm`).
    public func batchNorm(weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?,
                          training: Bool, momentum: Float = 0.1, eps: Float = 1e-5, sync: CrossProcessSum? = nil) -> Tensor {
        if training, let sync {
            return syncBatchNorm(weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar, momentum: momentum, eps: eps, sync: sync)
        }
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

extension Tensor {
    /// Training-mode batch normalisation over the global batch of a data-parallel job (PyTorch's
    /// SyncBatchNorm): per-channel sums and counts are summed over processes, then the centred sums of
    /// squares (two passes, so a near-constant channel does not cancel); backward sums dy and dy (x -
    /// mean) over processes for the input gradient, while the weight and bias gradients stay local
    /// (data-parallel averaging of parameter gradients adds them up, as in PyTorch). Accumulation in
    /// Double; three small allreduces per layer and step.
    func syncBatchNorm(weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?,
                       momentum: Float, eps: Float, sync: CrossProcessSum) -> Tensor {
        precondition(rank == 4 || rank == 2, "batch_norm: input must be NCHW or NC, got shape \(shape)")
        let n = shape[0], c = shape[1], hw = rank == 4 ? shape[2] * shape[3] : 1
        for (name, t) in [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar)] {
            if let t { precondition(t.shape == [c], "batch_norm: \(name) shape \(t.shape) must be [\(c)] for input \(shape)") }
        }
        let x = pointer
        var sums = [Double](repeating: 0, count: c + 1)
        for i in 0..<n {
            for ch in 0..<c {
                let p = x + (i * c + ch) * hw
                var a = 0.0
                for j in 0..<hw { a += Double(p[j]) }
                sums[ch] += a
            }
        }
        sums[c] = Double(n * hw)
        sync.sumInPlace(&sums, count: c + 1)
        let total = sums[c]
        precondition(total > 1, "batch_norm: training needs more than one value per channel over all processes, got \(total)")
        let mean = (0..<c).map { sums[$0] / total }
        var sq = [Double](repeating: 0, count: c)
        for i in 0..<n {
            for ch in 0..<c {
                let p = x + (i * c + ch) * hw, m = mean[ch]
                var a = 0.0
                for j in 0..<hw { let d = Double(p[j]) - m; a += d * d }
                sq[ch] += a
            }
        }
        sync.sumInPlace(&sq, count: c)
        let invstd = (0..<c).map { 1 / (sq[$0] / total + Double(eps)).squareRoot() }
        if let rm = runningMean, let rv = runningVar {
            for ch in 0..<c {
                rm.pointer[ch] = (1 - momentum) * rm.pointer[ch] + momentum * Float(mean[ch])
                rv.pointer[ch] = (1 - momentum) * rv.pointer[ch] + momentum * Float(sq[ch] / (total - 1))
            }
        }
        let out = FloatBuffer(count: count)
        let y = out.pointer
        for i in 0..<n {
            for ch in 0..<c {
                let a = invstd[ch] * Double(weight?.pointer[ch] ?? 1), b = Double(bias?.pointer[ch] ?? 0), m = mean[ch]
                let o = (i * c + ch) * hw
                for j in 0..<hw { y[o + j] = Float((Double(x[o + j]) - m) * a + b) }
            }
        }
        let input = self
        var inputs = [input]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return Tensor.make(shape, out, op: "sync_batch_norm", inputs: inputs) { g in
            let dy = g.pointer, x = input.pointer
            var red = [Double](repeating: 0, count: 2 * c)   // sum dy, sum dy (x - mean) per channel
            for i in 0..<n {
                for ch in 0..<c {
                    let o = (i * c + ch) * hw, m = mean[ch]
                    var s = 0.0, t = 0.0
                    for j in 0..<hw { let d = Double(dy[o + j]); s += d; t += d * (Double(x[o + j]) - m) }
                    red[ch] += s; red[c + ch] += t
                }
            }
            let dg = (weight?.requiresGrad ?? false) ? Tensor(shape: [c], storage: FloatBuffer(count: c)) : nil
            let db = (bias?.requiresGrad ?? false) ? Tensor(shape: [c], storage: FloatBuffer(count: c)) : nil
            for ch in 0..<c {
                dg?.pointer[ch] = Float(red[c + ch] * invstd[ch])
                db?.pointer[ch] = Float(red[ch])
            }
            var dx: Tensor? = nil
            if input.requiresGrad {
                sync.sumInPlace(&red, count: 2 * c)
                let d = Tensor(shape: input.shape, storage: FloatBuffer(count: input.count))
                let dp = d.pointer
                for i in 0..<n {
                    for ch in 0..<c {
                        let o = (i * c + ch) * hw, m = mean[ch], s = invstd[ch]
                        let k = s * Double(weight?.pointer[ch] ?? 1)
                        let mdy = red[ch] / total, mdyx = red[c + ch] / total * s * s
                        for j in 0..<hw { dp[o + j] = Float(k * (Double(dy[o + j]) - mdy - (Double(x[o + j]) - m) * mdyx)) }
                    }
                }
                dx = d
            }
            var r: [Tensor?] = [dx]
            if weight != nil { r.append(dg) }
            if bias != nil { r.append(db) }
            return r
        }
    }
}
