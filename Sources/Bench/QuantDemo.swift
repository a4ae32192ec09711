import Foundation
import Kernels
import Autodiff
import NN
import Optim
import Quant

/// `qat quant demo`: FP32 vs QAT W8A8 vs QAT W4A4 vs PTQ W4A4 vs QAT W4A4 with quantization dropout on a
/// small synthetic classification task, all from one seed. The task: 32 classes of oriented sinusoidal
/// gratings (class = orientation, 5.625 degrees apart) with random phase, frequency jitter, contrast and
/// Gaussian noise, 3x16x16: fine-grained enough that 4-bit rounding of features costs accuracy. A 4-conv CNN with BatchNorm learns it in a few hundred steps on a CPU.
public enum QuantDemo {
    public struct Config: Sendable {
        public var seed: UInt64 = 0
        public var fp32Steps = 400
        public var qatSteps = 200
        public var batch = 32
        public var testImages = 1024
        public var calibrationBatches = 4
        public init() {}
    }

    public struct Row: Codable, Sendable { public var variant: String; public var accuracy: Double; public var steps: Int }

    static let classes = 32, size = 16

    /// A batch of images and labels drawn from `rng`.
    static func batch(_ n: Int, rng: inout RNG) -> (Tensor, [Int]) {
        let x = Tensor.zeros([n, 3, size, size])
        var labels: [Int] = []
        let noise = Tensor.randn([n, 3, size, size], std: 0.8, rng: &rng)
        for i in 0..<n {
            let c = rng.nextInt(below: classes)
            labels.append(c)
            let u = Tensor.uniform([4], rng: &rng).scalars
            let theta = Float(c) * Float.pi / Float(classes) + (u[0] - 0.5) * 0.05
            let freq = 0.55 + 0.25 * u[1], phase = 2 * Float.pi * u[2], contrast = 0.3 + 0.7 * u[3]
            let (ct, st) = (Foundation.cos(theta), Foundation.sin(theta))
            for ch in 0..<3 {
                let tint: Float = [1.0, 0.8, 0.6][ch]
                for yy in 0..<size { for xx in 0..<size {
                    let t = (Float(xx) - 7.5) * ct + (Float(yy) - 7.5) * st
                    let v = contrast * tint * Foundation.sin(freq * t + phase)
                    let idx = ((i * 3 + ch) * size + yy) * size + xx
                    x.pointer[idx] = v + noise.pointer[idx]
                }}
            }
        }
        return (x, labels)
    }

    static func model(rng: inout RNG) throws -> Sequential {
        Sequential(try Conv2d(3, 16, kernel: 3, bias: false, rng: &rng), BatchNorm2d(16), Activation(.relu),
                   try Conv2d(16, 32, kernel: 3, stride: 2, bias: false, rng: &rng), BatchNorm2d(32), Activation(.relu),
                   try Conv2d(32, 32, kernel: 3, bias: false, rng: &rng), BatchNorm2d(32), Activation(.relu),
                   try Conv2d(32, 64, kernel: 3, stride: 2, bias: false, rng: &rng), BatchNorm2d(64), Activation(.relu),
                   GlobalPool(), try Linear(64, classes, rng: &rng))
    }

    final class GlobalPool: Module {
        override init() { super.init() }
        override func forward(_ x: Tensor) -> Tensor { x.globalAvgPool2d().flattened() }
    }

    static func train(_ m: Module, steps: Int, lr: Float, cfg: Config, rng: inout RNG, handle: QATHandle? = nil) {
        m.train()
        let opt = SGD(m.namedParameters(), lr: lr, momentum: 0.9, weightDecay: 5e-4,
                      rules: [.noDecayOnNormsAndBiases, .pattern("*Quantizer.*", weightDecay: 0)])
        let sched = LRSchedule(.cosine(totalSteps: steps, minFactor: 0.01), warmupSteps: min(20, steps / 10), warmupStartFactor: 0.1)
        for step in 0..<steps {
            handle?.setStep(step)
            opt.lrFactor = sched.factor(at: step)
            let (x, y) = batch(cfg.batch, rng: &rng)
            opt.zeroGrad()
            let loss = Loss.crossEntropy(m(x), targets: y)
            guard loss.item.isFinite else { continue }
            loss.backward()
            clipGradNorm(m.parameters(), maxNorm: 5)
            opt.step()
        }
    }

    static func accuracy(_ m: Module, test: [(Tensor, [Int])]) -> Double {
        m.eval()
        var correct = 0, total = 0
        noGrad {
            for (x, y) in test {
                let logits = m(x)
                for i in 0..<y.count {
                    let row = Array(logits.scalars[(i * classes)..<((i + 1) * classes)])
                    if row.firstIndex(of: row.max()!)! == y[i] { correct += 1 }
                    total += 1
                }
            }
        }
        return Double(correct) / Double(max(total, 1))
    }

    static func copyWeights(from a: Module, to b: Module) {
        let src = Dictionary(uniqueKeysWithValues: (a.namedParameters() + a.namedBuffers()).map { ($0.0, $0.1) })
        for (p, t) in b.namedParameters() + b.namedBuffers() { if let s = src[p] { t.pointer.update(from: s.pointer, count: t.count) } }
    }

    public static func run(_ cfg: Config) throws -> [Row] {
        var dataRNG = RNG(seed: cfg.seed ^ 0xDA7A)
        let test = (0..<(cfg.testImages / 128)).map { _ in batch(128, rng: &dataRNG) }
        let calib = (0..<cfg.calibrationBatches).map { _ in batch(cfg.batch, rng: &dataRNG).0 }
        var initRNG = RNG(seed: cfg.seed)
        let fp32 = try model(rng: &initRNG)
        var trainRNG = RNG(seed: cfg.seed ^ 0x7EA1)
        train(fp32, steps: cfg.fp32Steps, lr: 0.05, cfg: cfg, rng: &trainRNG)
        var rows = [Row(variant: "FP32", accuracy: accuracy(fp32, test: test), steps: cfg.fp32Steps)]

        // Control: the FP32 model fine-tuned exactly like the QAT variants, without quantization.
        do {
            var r = RNG(seed: cfg.seed)
            let m = try model(rng: &r)
            copyWeights(from: fp32, to: m)
            var tr = RNG(seed: cfg.seed ^ 0x0A7)
            train(m, steps: cfg.qatSteps, lr: 0.01, cfg: cfg, rng: &tr)
            rows.append(Row(variant: "FP32 + same fine-tuning (control)", accuracy: accuracy(m, test: test), steps: cfg.qatSteps))
        }

        func variant(_ name: String, plan: QuantPlan, qat: Bool, equalize: Bool = false) throws {
            var r = RNG(seed: cfg.seed)
            let m = try model(rng: &r)
            copyWeights(from: fp32, to: m)
            if equalize { m.eval(); PTQ.foldBatchNorms(m); PTQ.equalizeCrossLayer(m) }
            let h = try quantize(m, plan: plan)
            h.calibrate(m, batches: calib) { m($0) }
            if equalize { h.correctBias(m, batches: calib) { m($0) } }
            if qat {
                var tr = RNG(seed: cfg.seed ^ 0x0A7)
                train(m, steps: cfg.qatSteps, lr: 0.01, cfg: cfg, rng: &tr, handle: h)
            }
            rows.append(Row(variant: name, accuracy: accuracy(m, test: test), steps: qat ? cfg.qatSteps : 0))
        }
        func plan(_ w: Int, _ a: Int, learnable: Bool, activationRange: RangeMethod = .minMax, dropout: QuantDropout? = nil) -> QuantPlan {
            var p = QuantPlan.bits(weight: w, activation: a)
            p.activation.rangeMethod = activationRange
            if !learnable { p.weight.mode = .fixed; p.activation.mode = .fixed }
            p.weight.dropout = dropout; p.activation.dropout = dropout
            p.seed = cfg.seed
            return p
        }
        try variant("QAT W8A8", plan: plan(8, 8, learnable: true), qat: true)
        try variant("QAT W4A4", plan: plan(4, 4, learnable: true), qat: true)
        try variant("PTQ W4A4 (min-max ranges)", plan: plan(4, 4, learnable: false), qat: false)
        try variant("PTQ W4A4 (MSE activation ranges)", plan: plan(4, 4, learnable: false, activationRange: .mse), qat: false)
        try variant("PTQ W4A4 (MSE) + BN fold + CLE + bias correction", plan: plan(4, 4, learnable: false, activationRange: .mse), qat: false, equalize: true)
        try variant("QAT W4A4 + quantization dropout (p 0.5, element)", plan: plan(4, 4, learnable: true, dropout: QuantDropout(.constant(0.5))), qat: true)
        return rows
    }

    public static func format(_ rows: [Row], cfg: Config) -> String {
        var s = "qat quant demo: 32-class oriented gratings 3x16x16, seed \(cfg.seed), \(cfg.testImages) test images\n"
        s += "variant                                              fine-tune steps   accuracy\n"
        for r in rows {
            s += r.variant.padding(toLength: 53, withPad: " ", startingAt: 0) + String(format: "%15d %10.1f%%\n", r.steps, r.accuracy * 100)
        }
        return s
    }
}
