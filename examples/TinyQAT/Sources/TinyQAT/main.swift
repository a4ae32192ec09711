import Foundation
import Kernels
import Autodiff
import NN
import Optim
import Quant

// Toy task: does an 8x8 noisy image hold a horizontal or a vertical bar (2 classes)?
func batch(_ n: Int, rng: inout RNG) -> (Tensor, [Int]) {
    let x = Tensor.randn([n, 1, 8, 8], std: 0.5, rng: &rng)
    var labels: [Int] = []
    for i in 0..<n {
        let vertical = rng.nextInt(below: 2), line = rng.nextInt(below: 8)
        for t in 0..<8 { x.pointer[i * 64 + (vertical == 1 ? t * 8 + line : line * 8 + t)] += 1 }
        labels.append(vertical)
    }
    return (x, labels)
}

/// A layer of our own: subclassing `Module` is all a new block needs to train and be quantized.
final class GlobalAveragePool: Module {
    override init() { super.init() }
    override func forward(_ x: Tensor) -> Tensor { x.globalAvgPool2d().flattened() }
}

func accuracy(_ m: Module, _ test: (Tensor, [Int])) -> Double {
    m.eval()
    let logits = noGrad { m(test.0) }.scalars
    let correct = test.1.indices.filter { i in (logits[2 * i + 1] > logits[2 * i]) == (test.1[i] == 1) }.count
    return Double(correct) / Double(test.1.count)
}

func train(_ m: Module, steps: Int, lr: Float, rng: inout RNG, handle: QATHandle? = nil) {
    m.train()
    let opt = SGD(m.namedParameters(), lr: lr, momentum: 0.9)
    for step in 0..<steps {
        handle?.setStep(step)
        let (x, y) = batch(32, rng: &rng)
        opt.zeroGrad()
        let loss = Loss.crossEntropy(m(x), targets: y)
        loss.backward()
        opt.step()
    }
}

var rng = RNG(seed: 0)
let model = Sequential(try Conv2d(1, 8, kernel: 3, bias: false, rng: &rng), BatchNorm2d(8), Activation(.relu),
                       try Conv2d(8, 16, kernel: 3, stride: 2, bias: false, rng: &rng), BatchNorm2d(16), Activation(.relu),
                       GlobalAveragePool(), try Linear(16, 2, rng: &rng))
let test = batch(512, rng: &rng)
train(model, steps: 150, lr: 0.05, rng: &rng)
let fp32 = accuracy(model, test)

// Quantization-aware training at W4A4: fake-quant on every conv and linear, LSQ scales learned.
let handle = try quantize(model, plan: .bits(weight: 4, activation: 4))
handle.calibrate(model, batches: [batch(64, rng: &rng).0], statistics: .batch) { model($0) }
train(model, steps: 100, lr: 0.01, rng: &rng, handle: handle)
let w4a4 = accuracy(model, test)
print(String(format: "TinyQAT: FP32 %.1f%%, QAT W4A4 %.1f%% (%d fake quantizers)", fp32 * 100, w4a4 * 100, handle.quantizers.count))
guard fp32 > 0.9 && w4a4 > 0.9 else { print("TinyQAT: accuracy below 90%"); exit(1) }
