import Kernels
import Autodiff
import NN
import Quant

/// Random BN statistics (so merging them matters), quantized by `plan`, calibrated on random batches.
func preparedModel(_ model: Module, plan: QuantPlan, inputs: [Tensor], seed: UInt64 = 1) throws -> Module {
    var rng = RNG(seed: seed)
    func u() -> Float { Float(rng.nextUInt64() >> 40) / Float(1 << 24) }
    for (_, m) in model.namedModules() {
        guard let bn = m as? BatchNorm2d else { continue }
        let c = bn.weight.count
        for i in 0..<c {
            bn.weight.pointer[i] = 0.5 + u()
            bn.bias.pointer[i] = u() - 0.5
            bn.runningMean.pointer[i] = 0.2 * (u() - 0.5)
            bn.runningVar.pointer[i] = 0.5 + u()
        }
    }
    let handle = try quantize(model, plan: plan)
    handle.calibrate(model, batches: inputs, forward: { model($0) })
    model.eval()
    return model
}

func randomBatch(_ n: Int, _ size: Int, seed: UInt64) -> Tensor {
    var rng = RNG(seed: seed)
    return Tensor.randn([n, 3, size, size], rng: &rng)
}

