import XCTest
import Kernels
import Autodiff
import NN
@testable import Quant

final class PlanTests: XCTestCase {
    func testQuantizeInstallsQuantizersEverywhereAndTrains() throws {
        var rng = RNG(seed: 0)
        let m = try MobileNetV2(width: 0.25, numClasses: 4, rng: &rng)
        let convs = m.namedModules().filter { $0.1 is Conv2d || $0.1 is Linear }.count
        let h = try quantize(m, plan: QuantPlan())
        XCTAssertEqual(h.quantizedLayers.count, convs)
        let adds = m.namedModules().filter { ($0.1 as? InvertedResidual)?.useResidual == true }.count
        XCTAssertEqual(h.quantizers.count, 2 * convs + adds)
        let paths = Set(m.namedParameters().map(\.0))
        XCTAssertTrue(paths.contains("features.0.0.weightQuantizer.scale"))
        XCTAssertTrue(paths.contains("features.3.addQuantizer.zeroPoint"))
        let wq = m.namedModules().first { $0.0 == "features.1.conv.0.0.weightQuantizer" }!.1 as! FakeQuantize
        XCTAssertEqual(wq.channels, 8)     // depthwise conv of width 0.25: per output channel
        XCTAssertEqual(wq.scheme.axis, 0)
        let x = Tensor.randn([2, 3, 32, 32], rng: &rng)
        Loss.crossEntropy(m(x), targets: [0, 3]).backward()
        XCTAssertNotNil(wq.scale.grad); XCTAssertNotNil(wq.zeroPoint.grad)
        XCTAssertTrue(h.quantizers.allSatisfy { $0.1.isInitialized })
    }

    /// Per-channel activations: inputs get one scale per channel, residual adds stay per tensor (a per-channel
    /// add quantizer of one channel once overflowed its buffers in -Ounchecked builds); weights-only and
    /// activations-only plans install only those quantizers.
    func testPerChannelActivationsAndWeightsOrActivationsOnly() throws {
        var rng = RNG(seed: 0)
        let m = try MobileNetV2(width: 0.25, numClasses: 4, rng: &rng)
        var plan = QuantPlan.bits(weight: 4, activation: 4)
        plan.activation.perChannel = true
        let h = try quantize(m, plan: plan)
        let q = Dictionary(uniqueKeysWithValues: h.quantizers)
        XCTAssertEqual(q["features.3.addQuantizer"]?.channels, 1)
        XCTAssertNil(q["features.3.addQuantizer"]?.scheme.axis)
        XCTAssertEqual(q["features.1.conv.0.0.inputQuantizer"]?.channels, 8)
        let x = Tensor.randn([2, 3, 32, 32], rng: &rng)
        Loss.crossEntropy(m(x), targets: [0, 3]).backward()
        XCTAssertTrue(h.quantizers.allSatisfy { $0.1.isInitialized })

        for weightsOnly in [true, false] {
            let n = try MobileNetV2(width: 0.25, numClasses: 4, rng: &rng)
            var p = QuantPlan.bits(weight: 4, activation: 4)
            if weightsOnly { p.quantizeInputs = false; p.quantizeResidualAdds = false } else { p.quantizeWeights = false }
            let hq = try quantize(n, plan: p)
            let names = hq.quantizers.map(\.0)
            XCTAssertFalse(names.isEmpty)
            XCTAssertTrue(names.allSatisfy { weightsOnly ? $0.hasSuffix("weightQuantizer") : !$0.hasSuffix("weightQuantizer") }, "\(names.prefix(3))")
            XCTAssertEqual(hq.quantizedLayers.count, n.namedModules().filter { $0.1 is Conv2d || $0.1 is Linear }.count)
            Loss.crossEntropy(n(x), targets: [1, 2]).backward()
        }
    }

    func testOverridesSkipAndBitsAndUnmatchedPatternErrors() throws {
        var rng = RNG(seed: 0)
        let m = try MobileNetV2(width: 0.25, numClasses: 4, rng: &rng)
        var plan = QuantPlan.bits(weight: 4, activation: 4)
        plan.overrides = [.init("features.0.*", weightBits: 8, inputBits: 8), .init("classifier.*", skip: true)]
        let h = try quantize(m, plan: plan)
        let q = Dictionary(uniqueKeysWithValues: h.quantizers)
        XCTAssertEqual(q["features.0.0.weightQuantizer"]?.scheme.bits, 8)
        XCTAssertEqual(q["features.0.0.inputQuantizer"]?.scheme.bits, 8)
        XCTAssertEqual(q["features.1.conv.0.0.weightQuantizer"]?.scheme.bits, 4)
        XCTAssertNil(q["classifier.1.weightQuantizer"])
        var bad = QuantPlan()
        bad.overrides = [.init("backbone.*", weightBits: 2)]
        XCTAssertThrowsError(try quantize(try MobileNetV2(width: 0.25, numClasses: 4, rng: &rng), plan: bad)) { e in
            XCTAssertTrue("\(e)".contains("backbone.*") && "\(e)".contains("matches no"), "\(e)")
        }
        var badBits = QuantPlan(); badBits.weight.bits = 12
        XCTAssertThrowsError(try quantize(try MobileNetV2(width: 0.25, numClasses: 4, rng: &rng), plan: badBits)) { e in
            XCTAssertTrue("\(e)".contains("bits 12") && "\(e)".contains("weightQuantizer"), "\(e)")
        }
    }

    /// With quantization off, a folded conv+BN computes exactly what conv then BN compute, in training
    /// (batch statistics) and in eval (running statistics), and updates the running statistics the same.
    func testBNFoldingMatchesUnfolded() throws {
        func build() throws -> Sequential {
            var r = RNG(seed: 9)
            let s = Sequential(try Conv2d(3, 6, kernel: 3, stride: 2, rng: &r), BatchNorm2d(6), Activation(.relu))
            let bn = s[1] as! BatchNorm2d
            var r2 = RNG(seed: 10)
            r2.fillUniform(bn.weight.pointer, count: 6, low: 0.5, high: 1.5)
            r2.fillUniform(bn.runningVar.pointer, count: 6, low: 0.5, high: 2)
            r2.fillUniform(bn.runningMean.pointer, count: 6, low: -0.2, high: 0.2)
            return s
        }
        let plainModel = try build(), folded = try build()
        var plan = QuantPlan(); plan.foldBN = true; plan.quantizeResidualAdds = false
        let h = try quantize(folded, plan: plan)
        XCTAssertEqual(h.foldedBN.map(\.0), ["1"])
        h.setEnabled(false)
        var rng = RNG(seed: 3)
        let x = Tensor.randn([4, 3, 9, 9], rng: &rng)
        for training in [true, false] {
            plainModel.train(training); folded.train(training)
            let a = plainModel(x).scalars, b = folded(x).scalars
            for i in 0..<a.count { XCTAssertEqual(a[i], b[i], accuracy: 1e-4, "training \(training) at \(i)") }
        }
        let bnA = plainModel[1] as! BatchNorm2d, bnB = folded[1] as! BatchNorm2d
        for i in 0..<6 { XCTAssertEqual(bnA.runningMean.scalars[i], bnB.runningMean.scalars[i], accuracy: 1e-5) }
        // Freezing: after the configured step the folded BN uses running statistics while training.
        var p2 = QuantPlan(); p2.foldBN = true; p2.freezeBNAfter = 5
        let f2 = try build(); let h2 = try quantize(f2, plan: p2)
        h2.setStep(4); XCTAssertFalse((f2[1] as! BatchNorm2d).frozenStatistics)
        h2.setStep(5); XCTAssertTrue((f2[1] as! BatchNorm2d).frozenStatistics)
        // With quantization on, the weight quantizer sees the folded weight: gradients reach gamma.
        h.setEnabled(true); folded.train()
        folded(x).square().mean().backward()
        XCTAssertNotNil(bnB.weight.grad)
        XCTAssertNotNil((folded[0] as! Conv2d).weight.grad)
    }

    func testCalibrationForPTQ() throws {
        var rng = RNG(seed: 5)
        let m = Sequential(try Conv2d(3, 4, kernel: 3, rng: &rng), Activation(.relu))
        var plan = QuantPlan(); plan.weight.mode = .fixed; plan.activation.mode = .fixed
        plan.activation.rangeMethod = .percentile(99.9)
        let h = try quantize(m, plan: plan)
        let batches = (0..<3).map { _ in Tensor.randn([2, 3, 8, 8], rng: &rng) }
        h.calibrate(m, batches: batches) { m($0) }
        let iq = h.quantizers.first { $0.0 == "0.inputQuantizer" }!.1
        XCTAssertTrue(iq.isInitialized)
        let s = iq.scale.scalars[0]
        // Fixed quantizers do not move in training.
        m.train()
        _ = m(Tensor.randn([2, 3, 8, 8], std: 10, rng: &rng))
        XCTAssertEqual(iq.scale.scalars[0], s)
    }
}

final class FusedDepthwiseTests: XCTestCase {
    /// The fused depthwise conv with a quantized input gives the same output and gradients as
    /// fake quantization followed by the conv (bit for bit except the summed scale/zero-point gradients).
    func testFusedEqualsUnfused() throws {
        for (stride, pad, dil) in [(1, 1, 1), (2, 1, 1), (1, 2, 2)] {
            var rng = RNG(seed: 21)
            let conv = try Conv2d(6, 6, kernel: 3, stride: stride, padding: pad, dilation: dil, groups: 6, rng: &rng)
            let q = try FakeQuantize(scheme: QuantScheme(bits: 4), gradFactor: .lsqPyTorch, path: "q")
            conv.inputQuantizer = q
            let x = Tensor.uniform([2, 6, 9, 11], low: -1, high: 2, rng: &rng, requiresGrad: true)
            func run(_ fused: Bool) -> ([Float], [Float], [Float], [Float], Float, Float) {
                conv.fuseInputQuantizer = fused
                x.grad = nil; conv.weight.grad = nil; conv.bias!.grad = nil; q.scale.grad = nil; q.zeroPoint.grad = nil
                let y = conv(x)
                var r = RNG(seed: 5)
                y.backward(Tensor.uniform(y.shape, low: -1, high: 1, rng: &r))
                return (y.scalars, x.grad!.scalars, conv.weight.grad!.scalars, conv.bias!.grad!.scalars, q.scale.grad!.item, q.zeroPoint.grad!.item)
            }
            let a = run(false), b = run(true)
            XCTAssertEqual(a.0, b.0, "forward, stride \(stride)")
            XCTAssertEqual(a.1, b.1, "dx, stride \(stride)")
            for (u, v) in zip(a.2, b.2) { XCTAssertEqual(u, v, accuracy: 1e-5 * max(1, abs(u))) }
            XCTAssertEqual(a.3, b.3)
            XCTAssertEqual(a.4, b.4, accuracy: 1e-5 * max(1, abs(a.4)))
            XCTAssertEqual(a.5, b.5, accuracy: 1e-5 * max(1, abs(a.5)))
        }
    }
}
