import Foundation

/// Fused parameter-update loops (one pass over param, grad and state), PyTorch's formulas.
public enum OptimKernels {
    /// SGD with momentum/dampening/Nesterov and L2 weight decay (torch.optim.SGD). `buf` is the momentum
    /// buffer; `firstStep` initialises it to the gradient as PyTorch does.
    public static func sgd(param p: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, buf: UnsafeMutablePointer<Float>?,
                           count n: Int, lr: Float, momentum: Float, dampening: Float, nesterov: Bool,
                           weightDecay wd: Float, firstStep: Bool) {
        parallelChunks(n, grain: 65_536) { r in
            for i in r {
                var d = g[i] + wd * p[i]
                if let buf {
                    let b = firstStep ? d : momentum * buf[i] + (1 - dampening) * d
                    buf[i] = b
                    d = nesterov ? d + momentum * b : b
                }
                p[i] -= lr * d
            }
        }
    }

    /// Adam / AdamW (torch.optim.Adam, AdamW; amsgrad off). `decoupled` applies p *= 1 - lr*wd first
    /// (AdamW); otherwise wd is added to the gradient (Adam's L2). `step` is this parameter's 1-based step.
    public static func adam(param p: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>,
                            expAvg m: UnsafeMutablePointer<Float>, expAvgSq v: UnsafeMutablePointer<Float>, count n: Int,
                            lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay wd: Float, decoupled: Bool, step: Int) {
        let bc1 = 1 - Foundation.pow(Double(beta1), Double(step))
        let bc2 = 1 - Foundation.pow(Double(beta2), Double(step))
        let stepSize = Float(Double(lr) / bc1)
        let bc2Sqrt = Float(bc2.squareRoot())
        let decay: Float = decoupled ? 1 - lr * wd : 1
        let l2: Float = decoupled ? 0 : wd
        parallelChunks(n, grain: 65_536) { r in
            for i in r {
                let pi = p[i] * decay
                let gi = g[i] + l2 * pi
                let mi = beta1 * m[i] + (1 - beta1) * gi
                let vi = beta2 * v[i] + (1 - beta2) * gi * gi
                m[i] = mi; v[i] = vi
                p[i] = pi - stepSize * mi / (vi.squareRoot() / bc2Sqrt + eps)
            }
        }
    }
}
