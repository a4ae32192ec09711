import XCTest
import Kernels
import Autodiff
import NN
@testable import Optim

final class OptimizerTests: XCTestCase {
    func param(_ v: [Float], _ path: String = "w") -> (String, Tensor) {
        (path, Tensor(shape: [v.count], scalars: v, requiresGrad: true))
    }
    func setGrad(_ t: Tensor, _ g: [Float]) { t.grad = Tensor(shape: t.shape, scalars: g) }

    func testSGDMomentumAndNesterovByHand() {
        let (_, a) = param([1]), (_, b) = param([1])
        let plain = SGD([("a", a)], lr: 0.1, momentum: 0.9)
        let nest = SGD([("b", b)], lr: 0.1, momentum: 0.9, nesterov: true)
        for _ in 0..<2 { setGrad(a, [0.5]); setGrad(b, [0.5]); plain.step(); nest.step() }
        XCTAssertEqual(a.scalars[0], 0.855, accuracy: 1e-6)     // 1 - .1*.5 - .1*(.9*.5+.5)
        XCTAssertEqual(b.scalars[0], 0.7695, accuracy: 1e-6)    // 1 - .1*.95 - .1*(.5+.9*.95)
        XCTAssertEqual(plain.state["a"]!["momentum_buffer"]!.scalars[0], 0.95, accuracy: 1e-6)
    }

    func testWeightDecayExclusionForNormsAndBiases() {
        let w = Tensor(shape: [1, 1], scalars: [1], requiresGrad: true), b = Tensor(shape: [1], scalars: [1], requiresGrad: true)
        let opt = SGD([("conv.weight", w), ("conv.bias", b)], lr: 0.1, weightDecay: 0.1, rules: [.noDecayOnNormsAndBiases])
        w.grad = Tensor(shape: [1, 1], scalars: [0.5]); b.grad = Tensor(shape: [1], scalars: [0.5])
        opt.step()
        XCTAssertEqual(w.scalars[0], 1 - 0.1 * (0.5 + 0.1), accuracy: 1e-7)
        XCTAssertEqual(b.scalars[0], 1 - 0.1 * 0.5, accuracy: 1e-7)
        XCTAssertEqual(opt.entries.map(\.group), [0, 1])
    }

    func testPatternGroupsScaleTheLearningRate() {
        let s = Tensor(shape: [1], scalars: [1], requiresGrad: true), w = Tensor(shape: [1], scalars: [1], requiresGrad: true)
        let opt = SGD([("layer.weight", w), ("layer.quant.scale", s)], lr: 0.1, rules: [.pattern("*.scale", lrScale: 0.01)])
        w.grad = Tensor(shape: [1], scalars: [1]); s.grad = Tensor(shape: [1], scalars: [1])
        opt.lrFactor = 0.5
        opt.step()
        XCTAssertEqual(w.scalars[0], 1 - 0.05, accuracy: 1e-7)
        XCTAssertEqual(s.scalars[0], 1 - 0.0005, accuracy: 1e-7)
        XCTAssertEqual(opt.lr(group: 1), 0.0005, accuracy: 1e-9)
    }

    /// Adam and AdamW against a Double-precision transcription of PyTorch's update, with changing gradients.
    func testAdamAndAdamWBiasCorrection() {
        for decoupled in [false, true] {
            let (_, p) = param([1, -2])
            let opt = Adam([("p", p)], lr: 0.01, weightDecay: 0.1, decoupled: decoupled)
            var ref: [Double] = [1, -2], m: [Double] = [0, 0], v: [Double] = [0, 0]
            let grads: [[Float]] = [[0.5, -1], [0.1, 2], [-0.3, 0.2], [0.05, 0.05]]
            for (t, g) in grads.enumerated() {
                setGrad(p, g)
                opt.step()
                let step = Double(t + 1)
                for i in 0..<2 {
                    var gi = Double(g[i])
                    if decoupled { ref[i] *= 1 - 0.01 * 0.1 } else { gi += 0.1 * ref[i] }
                    m[i] = 0.9 * m[i] + 0.1 * gi
                    v[i] = 0.999 * v[i] + 0.001 * gi * gi
                    let mh = m[i] / (1 - pow(0.9, step)), denom = (v[i] / (1 - pow(0.999, step))).squareRoot() + 1e-8
                    ref[i] -= 0.01 * mh / denom
                }
                for i in 0..<2 { XCTAssertEqual(Double(p.scalars[i]), ref[i], accuracy: 1e-5, "decoupled \(decoupled) step \(t + 1)") }
            }
            XCTAssertEqual(opt.state["p"]!["step"]!.scalars[0], 4)
        }
    }

    func testParametersWithoutGradientAreSkipped() {
        let (_, p) = param([1])
        let opt = SGD([("p", p)], lr: 0.1, momentum: 0.9)
        opt.step()
        XCTAssertEqual(p.scalars[0], 1)
        XCTAssertNil(opt.state["p"])
    }

    func testLoadStateValidates() {
        let (_, p) = param([1, 2])
        let opt = SGD([("p", p)], lr: 0.1, momentum: 0.9)
        XCTAssertThrowsError(try opt.loadState(["q": ["momentum_buffer": Tensor.zeros([2])]], stepCount: 1)) { XCTAssertTrue("\($0)".contains("'q'")) }
        XCTAssertThrowsError(try opt.loadState(["p": ["momentum_buffer": Tensor.zeros([3])]], stepCount: 1)) { XCTAssertTrue("\($0)".contains("p/momentum_buffer")) }
        XCTAssertNoThrow(try opt.loadState(["p": ["momentum_buffer": Tensor.zeros([2])]], stepCount: 4))
        XCTAssertEqual(opt.stepCount, 4)
    }
}

final class ScheduleTests: XCTestCase {
    func testWarmupThenCosine() {
        let s = LRSchedule(.cosine(totalSteps: 110, minFactor: 0.1), warmupSteps: 10, warmupStartFactor: 0.1)
        XCTAssertEqual(s.factor(at: 0), 0.1, accuracy: 1e-6)
        XCTAssertEqual(s.factor(at: 5), 0.55, accuracy: 1e-6)
        XCTAssertEqual(s.factor(at: 10), 1, accuracy: 1e-6)            // first step after warmup
        XCTAssertEqual(s.factor(at: 60), 0.55, accuracy: 1e-6)          // half way: min + (1-min)/2
        XCTAssertEqual(s.factor(at: 110), 0.1, accuracy: 1e-6)
        XCTAssertEqual(s.factor(at: 500), 0.1, accuracy: 1e-6)          // clamps past the end
    }

    func testStepAndConstant() {
        let s = LRSchedule(.step(milestones: [3, 6], gamma: 0.1))
        XCTAssertEqual([0, 2, 3, 5, 6, 9].map { s.factor(at: $0) }, [1, 1, 0.1, 0.1, Float(0.1) * 0.1, Float(0.1) * 0.1])
        XCTAssertEqual(LRSchedule(.constant, warmupSteps: 4, warmupStartFactor: 0).factor(at: 2), 0.5)
        XCTAssertEqual(LRSchedule(.constant).factor(at: 1000), 1)
    }

    func testClipGradNorm() {
        let a = Tensor(shape: [2], scalars: [0, 0], requiresGrad: true), b = Tensor(shape: [1], scalars: [0], requiresGrad: true)
        a.grad = Tensor(shape: [2], scalars: [3, 0]); b.grad = Tensor(shape: [1], scalars: [4])
        XCTAssertEqual(clipGradNorm([a, b], maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(a.grad!.scalars[0], 3 / (5 + 1e-6), accuracy: 1e-6)
        XCTAssertEqual(b.grad!.scalars[0], 4 / (5 + 1e-6), accuracy: 1e-6)
        XCTAssertEqual(clipGradNorm([a, b], maxNorm: 10), 1, accuracy: 1e-5)  // below the limit: unchanged
        XCTAssertEqual(b.grad!.scalars[0], 4 / (5 + 1e-6), accuracy: 1e-6)
        // Gradients whose squares overflow Float: the norm stays finite and clipping still works.
        let c = Tensor(shape: [3], scalars: [0, 0, 0], requiresGrad: true)
        c.grad = Tensor(shape: [3], scalars: [3e25, -4e25, 0])
        XCTAssertEqual(clipGradNorm([c], maxNorm: 1), 5e25, accuracy: 1e19)
        XCTAssertEqual(c.grad!.scalars[0], 0.6, accuracy: 1e-6)
        XCTAssertEqual(c.grad!.scalars[1], -0.8, accuracy: 1e-6)
    }

    func testEMA() throws {
        var rng = RNG(seed: 0)
        let m = Sequential(try Linear(2, 1, rng: &rng), BatchNorm2d(1))
        let ema = ModelEMA(m, decay: 0.5)
        let w = (m[0] as! Linear).weight
        let before = w.scalars[0]
        w.pointer[0] = before + 2
        (m[1] as! BatchNorm2d).runningMean.pointer[0] = 7
        ema.update(m)
        let target = Sequential(try Linear(2, 1, rng: &rng), BatchNorm2d(1))
        ema.copy(into: target)
        XCTAssertEqual((target[0] as! Linear).weight.scalars[0], before + 1, accuracy: 1e-6)
        XCTAssertEqual((target[1] as! BatchNorm2d).runningMean.scalars[0], 7)
    }
}
