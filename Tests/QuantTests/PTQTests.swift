import XCTest
import Kernels
import Autodiff
import NN
@testable import Quant

final class PTQTests: XCTestCase {
    func model(_ act: Activation.Kind, seed: UInt64 = 1) throws -> Sequential {
        var r = RNG(seed: seed)
        let m = Sequential(try Conv2d(3, 8, kernel: 3, rng: &r), BatchNorm2d(8), Activation(act),
                           try Conv2d(8, 6, kernel: 1, rng: &r), BatchNorm2d(6))
        var r2 = RNG(seed: seed + 7)
        for bn in m.layers.compactMap({ $0 as? BatchNorm2d }) {
            r2.fillUniform(bn.weight.pointer, count: bn.weight.count, low: 0.2, high: 3)
            r2.fillUniform(bn.runningVar.pointer, count: bn.weight.count, low: 0.3, high: 2)
            r2.fillUniform(bn.runningMean.pointer, count: bn.weight.count, low: -0.5, high: 0.5)
            r2.fillUniform(bn.bias.pointer, count: bn.weight.count, low: -0.5, high: 0.5)
        }
        // Very unequal channel ranges in the first conv, as CLE expects to fix.
        for o in 0..<8 { for j in 0..<27 { m.layers[0].localParameters()[0].1.pointer[o * 27 + j] *= Float(1 << (o % 4)) } }
        m.eval()
        return m
    }

    func testFoldingThenEqualizationKeepsOutputsAndEqualizesRanges() throws {
        var rng = RNG(seed: 3)
        let x = Tensor.randn([2, 3, 7, 7], rng: &rng)
        let m = try model(.relu)
        let ref = m(x).scalars
        XCTAssertEqual(PTQ.foldBatchNorms(m), ["1", "4"])
        let folded = m(x).scalars
        for i in 0..<ref.count { XCTAssertEqual(folded[i], ref[i], accuracy: 1e-4 * max(1, abs(ref[i]))) }
        let pairs = PTQ.equalizeCrossLayer(m)
        XCTAssertEqual(pairs.map(\.0), ["0"]); XCTAssertEqual(pairs.map(\.1), ["3"])
        let eq = m(x).scalars
        for i in 0..<ref.count { XCTAssertEqual(eq[i], ref[i], accuracy: 1e-4 * max(1, abs(ref[i]))) }
        let c1 = m[0] as! Conv2d, c2 = m[3] as! Conv2d
        for i in 0..<8 {
            let r1 = (0..<27).map { abs(c1.weight.pointer[i * 27 + $0]) }.max()!
            let r2 = (0..<6).map { abs(c2.weight.pointer[$0 * 8 + i]) }.max()!
            XCTAssertEqual(r1, r2, accuracy: 1e-5 * max(r1, 1), "channel \(i) ranges not equalized")
        }
    }

    func testReLU6ChainsAreSkippedUnlessReplaced() throws {
        let a = try model(.relu6)
        PTQ.foldBatchNorms(a)
        XCTAssertTrue(PTQ.equalizeCrossLayer(a).isEmpty)
        let b = try model(.relu6)
        PTQ.foldBatchNorms(b)
        XCTAssertEqual(PTQ.equalizeCrossLayer(b, relu6ToRelu: true).count, 1)
        XCTAssertEqual((b[2] as! Activation).kind, .relu)
    }

    /// Chains inside Sequentials nested in Sequentials (MobileNetV1's dw -> relu -> pw blocks) are
    /// reported by both; each is equalized once.
    func testNestedChainsAreEqualizedOnce() throws {
        var rng = RNG(seed: 2)
        let m = try MobileNetV1(width: 0.25, numClasses: nil, rng: &rng)
        m.eval()
        PTQ.foldBatchNorms(m)
        let pairs = PTQ.equalizeCrossLayer(m)
        XCTAssertEqual(pairs.map(\.0), (1...13).map { "features.\($0).0" })
        XCTAssertEqual(pairs.map(\.1), (1...13).map { "features.\($0).3" })
    }

    /// Bias correction cuts the mean output error of 3-bit weights on inputs with a non-zero mean.
    func testBiasCorrectionRemovesTheMeanOutputError() throws {
        var r = RNG(seed: 5)
        let conv = try Conv2d(4, 5, kernel: 3, padding: 0, rng: &r)
        let m = Sequential(conv)
        let float = Sequential(try Conv2d(4, 5, kernel: 3, padding: 0, rng: &r))
        let fc = float[0] as! Conv2d
        fc.weight.pointer.update(from: conv.weight.pointer, count: conv.weight.count)
        fc.bias!.pointer.update(from: conv.bias!.pointer, count: 5)
        var plan = QuantPlan.bits(weight: 3, activation: 8); plan.quantizeInputs = false; plan.quantizeResidualAdds = false
        plan.weight.mode = .fixed
        let h = try quantize(m, plan: plan)
        let batches = (0..<4).map { _ in Tensor.randn([4, 4, 9, 9], rng: &r) + 1.5 }
        h.calibrate(m, batches: batches) { m($0) }
        func meanError() -> [Double] {
            var e = [Double](repeating: 0, count: 5); var n = 0
            for b in batches {
                let d = noGrad { m(b) - float(b) }
                let hw = d.count / (4 * 5)
                for i in 0..<4 { for o in 0..<5 { e[o] += Double(Reduce.sum(d.pointer + (i * 5 + o) * hw, count: hw)) } }
                n += 4 * hw
            }
            return e.map { $0 / Double(n) }
        }
        let before = meanError()
        XCTAssertGreaterThan(before.map(abs).max()!, 1e-3)
        XCTAssertEqual(h.correctBias(m, batches: batches) { m($0) }, ["0"])
        let after = meanError()
        // The correction uses each channel's global input mean; each tap sees a slightly shifted window,
        // so a small residual remains: require a 20x reduction of the worst channel's mean error.
        XCTAssertLessThan(after.map(abs).max()! * 20, before.map(abs).max()!, "before \(before), after \(after)")
    }
}
