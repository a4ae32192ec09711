import XCTest
import Kernels
import Autodiff
@testable import NN

final class LayerTests: XCTestCase {
    var rng = RNG(seed: 11)

    func testBatchNormTrainingNormalisesAndUpdatesRunningStats() {
        let bn = BatchNorm2d(2, momentum: 0.1)
        // channel 0: values 1..4, channel 1: constant 5 (one image, 2x2).
        let x = Tensor(shape: [1, 2, 2, 2], scalars: [1, 2, 3, 4, 5, 5, 5, 5])
        let y = bn(x)
        let mean0: Float = 2.5, var0: Float = 1.25
        for i in 0..<4 { XCTAssertEqual(y.scalars[i], (Float(i + 1) - mean0) / (var0 + 1e-5).squareRoot(), accuracy: 1e-5) }
        for i in 4..<8 { XCTAssertEqual(y.scalars[i], 0, accuracy: 1e-5) }
        // running stats: momentum 0.1 towards the batch mean and the unbiased variance (5/3 for 1..4).
        XCTAssertEqual(bn.runningMean.scalars[0], 0.25, accuracy: 1e-6)
        XCTAssertEqual(bn.runningVar.scalars[0], 0.9 + 0.1 * 5.0 / 3.0, accuracy: 1e-6)
        XCTAssertEqual(bn.runningMean.scalars[1], 0.5, accuracy: 1e-6)
        bn.eval()
        let ye = bn(x)
        XCTAssertEqual(ye.scalars[0], (1 - 0.25) / (bn.runningVar.scalars[0] + 1e-5).squareRoot(), accuracy: 1e-5)
        XCTAssertEqual(bn.runningMean.scalars[0], 0.25, accuracy: 1e-7, "eval must not update running stats")
    }

    func testBatchNormGradients() {
        let x = Tensor.uniform([3, 2, 3, 2], low: -2, high: 2, rng: &rng, requiresGrad: true)
        let w = Tensor.uniform([2], low: 0.5, high: 1.5, rng: &rng, requiresGrad: true)
        let b = Tensor.uniform([2], rng: &rng, requiresGrad: true)
        let r = gradcheck([x, w, b], eps: 1e-2, atol: 3e-3, rtol: 3e-2) { t in
            t[0].batchNorm(weight: t[1], bias: t[2], runningMean: nil, runningVar: nil, training: true)
        }
        XCTAssertTrue(r.passed, "\(r)")
        let rm = Tensor.uniform([2], rng: &rng), rv = Tensor.uniform([2], low: 0.5, high: 2, rng: &rng)
        let re = gradcheck([x, w, b]) { t in t[0].batchNorm(weight: t[1], bias: t[2], runningMean: rm, runningVar: rv, training: false) }
        XCTAssertTrue(re.passed, "eval: \(re)")
        let x2 = Tensor.uniform([4, 3], rng: &rng, requiresGrad: true)
        let r2 = gradcheck([x2]) { t in t[0].batchNorm(weight: nil, bias: nil, runningMean: nil, runningVar: nil, training: true) }
        XCTAssertTrue(r2.passed, "NC input: \(r2)")
    }

    func testGroupNormMatchesDefinitionAndGradients() throws {
        let gn = try GroupNorm(groups: 2, channels: 4)
        let x = Tensor.uniform([2, 4, 3, 3], rng: &rng, requiresGrad: true)
        let y = gn(x)
        // Each (image, group) block of 2 channels x 9 pixels has mean 0 and variance ~1 after norm.
        let v = y.scalars
        for blk in 0..<4 {
            let s = Array(v[(blk * 18)..<(blk * 18 + 18)])
            let m = s.reduce(0, +) / 18
            XCTAssertEqual(m, 0, accuracy: 1e-5)
            XCTAssertEqual(s.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 18, 1, accuracy: 1e-3)
        }
        let r = gradcheck([x, gn.weight, gn.bias], atol: 3e-3, rtol: 3e-2) { _ in gn(x) }
        XCTAssertTrue(r.passed, "\(r)")
        XCTAssertThrowsError(try GroupNorm(groups: 3, channels: 4))
    }

    func testLinearAndConvModules() throws {
        let lin = try Linear(3, 2, rng: &rng)
        let x = Tensor.uniform([4, 3], rng: &rng)
        let y = lin(x)
        for n in 0..<4 { for o in 0..<2 {
            var s = lin.bias!.scalars[o]
            for i in 0..<3 { s += x.scalars[n * 3 + i] * lin.weight.scalars[o * 3 + i] }
            XCTAssertEqual(y.scalars[n * 2 + o], s, accuracy: 1e-5)
        }}
        let r = gradcheck([x.detached().copy(), lin.weight, lin.bias!]) { t in lin(t[0]) }
        XCTAssertTrue(r.passed, "\(r)")
        // PyTorch default init bound: 1/sqrt(fan_in)
        let conv = try Conv2d(4, 8, kernel: 3, rng: &rng)
        let bound = 1 / Float(4 * 9).squareRoot()
        XCTAssertTrue(conv.weight.scalars.allSatisfy { abs($0) <= bound })
        XCTAssertTrue(conv.bias!.scalars.allSatisfy { abs($0) <= bound })
        XCTAssertEqual(conv(Tensor.zeros([1, 4, 5, 5])).shape, [1, 8, 5, 5])
        XCTAssertThrowsError(try Conv2d(3, 4, kernel: 3, groups: 2, rng: &rng))
        XCTAssertThrowsError(try Conv2d(3, 4, kernel: 0, rng: &rng))
    }

    func testDropoutTrainEvalAndDeterminism() {
        let d1 = Dropout(p: 0.5, seed: 3), d2 = Dropout(p: 0.5, seed: 3)
        let x = Tensor.ones([1000])
        let a = d1(x).scalars, b = d2(x).scalars
        XCTAssertEqual(a, b)
        XCTAssertTrue(a.allSatisfy { $0 == 0 || $0 == 2 })
        XCTAssertEqual(Float(a.filter { $0 == 0 }.count) / 1000, 0.5, accuracy: 0.06)
        d1.eval()
        XCTAssertEqual(d1(x).scalars, x.scalars)
    }

    func testInitializers() {
        let w = Tensor.zeros([64, 32, 3, 3])
        Init.kaimingNormal(w, mode: .fanOut, rng: &rng)
        let v = w.scalars
        let std = (v.map { $0 * $0 }.reduce(0, +) / Float(v.count)).squareRoot()
        XCTAssertEqual(std, (2 / Float(64 * 9)).squareRoot(), accuracy: 0.003)
        let b = Tensor.zeros([3])
        Init.priorProbabilityBias(b, pi: 0.01)
        XCTAssertEqual(b.scalars[0], -Float(log(99.0)), accuracy: 1e-5)
        XCTAssertEqual(1 / (1 + exp(-b.scalars[0])), 0.01, accuracy: 1e-6)
    }

    func testSequentialPathsFreezeAndGlob() throws {
        let m = Sequential(try Conv2d(3, 4, kernel: 3, bias: false, rng: &rng), BatchNorm2d(4), Activation(.relu))
        XCTAssertEqual(m.namedParameters().map(\.0), ["0.weight", "1.weight", "1.bias"])
        XCTAssertEqual(m.namedBuffers().map(\.0), ["1.runningMean", "1.runningVar"])
        XCTAssertEqual(m.freeze(matching: "1.*"), 2)
        XCTAssertFalse((m[1] as! BatchNorm2d).weight.requiresGrad)
        XCTAssertTrue((m[0] as! Conv2d).weight.requiresGrad)
        XCTAssertEqual(m.unfreeze(), 3)
        XCTAssertTrue(Glob.matches("features.*.weight", "features.3.conv.1.weight"))
        XCTAssertFalse(Glob.matches("features.*.bias", "features.3.conv.1.weight"))
        XCTAssertTrue(Glob.matches("*", ""))
        XCTAssertTrue(Glob.matches("layer?.0.*", "layer2.0.conv1.weight"))
        m.eval()
        XCTAssertFalse(m.namedModules().contains { $0.1.isTraining })
    }
}

/// Inference fusion (conv -> BatchNorm2d -> relu/relu6 in one pass, `InferenceFusable`): the same outputs
/// as the layers one by one, only at inference, never with quantizers.
final class InferenceFusionTests: XCTestCase {
    override func tearDown() { Sequential.inferenceFusion = true }

    func outputs(_ m: Module, _ x: Tensor) -> (fused: [Float], unfused: [Float]) {
        Sequential.inferenceFusion = true
        let a = noGrad { m(x) }.scalars
        Sequential.inferenceFusion = false
        let b = noGrad { m(x) }.scalars
        Sequential.inferenceFusion = true
        return (a, b)
    }

    func testBackboneAndConvBNActMatchUnfusedInEvalMode() throws {
        var rng = RNG(seed: 3)
        let x = Tensor.randn([2, 3, 64, 64], rng: &rng)
        for name in ["mobilenet_v2", "mobilenet_v3_small"] {   // relu6; hardswish (conv + BN fused, then hardswish)
        let bb = try Backbones.make(name, width: 0.25, rng: &rng)
        // Non-trivial running statistics and affine parameters, so the fold really rescales.
        for (_, m) in bb.namedModules() {
            guard let bn = m as? BatchNorm2d else { continue }
            let c = bn.weight.count
            rng.fillUniform(bn.runningMean.pointer, count: c, low: -0.5, high: 0.5)
            rng.fillUniform(bn.runningVar.pointer, count: c, low: 0.5, high: 2)
            rng.fillUniform(bn.weight.pointer, count: c, low: 0.5, high: 1.5)
            rng.fillUniform(bn.bias.pointer, count: c, low: -0.2, high: 0.2)
        }
        bb.eval()
        let (f, u) = outputs(bb, x)
        XCTAssertEqual(f.count, u.count)
        let scale = u.map(abs).max()!
        for i in f.indices { XCTAssertEqual(f[i], u[i], accuracy: 1e-4 * max(1, scale), "\(name) index \(i)") }
        }

        // conv -> relu6 without BN, and conv -> BN without activation.
        let c1 = try Conv2d(3, 8, kernel: 3, rng: &rng), bn = BatchNorm2d(8)
        rng.fillUniform(bn.runningVar.pointer, count: 8, low: 0.5, high: 2)
        for seq in [Sequential(c1, Activation(.relu6)), Sequential(c1, bn), Sequential(c1, bn, Activation(.relu))] {
            seq.eval()
            let (a, b) = outputs(seq, x)
            for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-5) }
        }
    }

    func testNotInTrainingNorWithGradientNorWithQuantizers() throws {
        var rng = RNG(seed: 4)
        let conv = try Conv2d(3, 4, kernel: 3, rng: &rng)
        let bn = BatchNorm2d(4)
        XCTAssertNil(noGrad { conv.inferenceForward(Tensor.randn([1, 3, 8, 8], rng: &rng), batchNorm: bn, activation: .relu) },
                     "BN in training mode: its batch statistics cannot be folded")
        bn.eval()
        XCTAssertNotNil(noGrad { conv.inferenceForward(Tensor.randn([1, 3, 8, 8], rng: &rng), batchNorm: bn, activation: .relu) })
        XCTAssertNil(conv.inferenceForward(Tensor.randn([1, 3, 8, 8], rng: &rng), batchNorm: bn, activation: .relu),
                     "gradient recording: the fused op has no backward")
        conv.weightQuantizer = Identity()
        XCTAssertNil(noGrad { conv.inferenceForward(Tensor.randn([1, 3, 8, 8], rng: &rng), batchNorm: bn, activation: .relu) })
    }
}
