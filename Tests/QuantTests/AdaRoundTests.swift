import XCTest
import Kernels
import Autodiff
import NN
@testable import Quant

final class AdaRoundTests: XCTestCase {
    /// A 6 -> 8 3x3 conv with a calibrated 3-bit per-channel weight quantizer, three input batches and
    /// the conv's float outputs on them.
    func threeBitConv(_ r: inout RNG) throws -> (Conv2d, FakeQuantize, AdaRound.LayerOp, [Tensor], [Tensor]) {
        let conv = try Conv2d(6, 8, kernel: 3, padding: 1, bias: false, rng: &r)
        let q = try FakeQuantize(scheme: QuantScheme(bits: 3, axis: 0), channels: 8, mode: .fixed)
        q.calibrating = true; _ = noGrad { q(conv.weight) }; q.calibrating = false
        let op = AdaRound.LayerOp(conv)!
        let inputs = (0..<3).map { _ in Tensor.randn([8, 6, 6, 6], rng: &r) }
        return (conv, q, op, inputs, noGrad { inputs.map { op.apply($0, conv.weight) } })
    }

    /// One 3-bit per-channel conv layer: the objective decreases, every weight ends rounded down or up
    /// (never elsewhere) on the quantizer's grid, so the unchanged fake quantizer reproduces it
    /// exactly, and the learned rounding reconstructs the float output better than round-to-nearest.
    func testObjectiveDecreasesAndRoundingIsFloorOrCeil() throws {
        var r = RNG(seed: 11)
        let (conv, q, op, inputs, targets) = try threeBitConv(&r)
        var cfg = AdaRound.Config(); cfg.iterations = 400
        let (rounded, res) = AdaRound.round(weight: conv.weight, quantizer: q, op: op.apply, inputs: inputs, targets: targets, config: cfg, path: "conv")
        XCTAssertLessThan(res.objectiveEnd, res.objectiveStart)
        XCTAssertLessThan(res.adaRoundError, res.nearestError, "\(res)")
        XCTAssertGreaterThan(res.flipped, 0)
        let w = conv.weight.scalars, out = rounded.scalars
        let inner = w.count / 8
        for i in w.indices {
            let c = i / inner, s = q.scale.scalars[c]
            let z = FakeQuant.roundedZeroPoint(q.zeroPoint.scalars[c], qmin: q.scheme.qmin, qmax: q.scheme.qmax)
            let k = out[i] / s + z
            XCTAssertEqual(k, k.rounded(), accuracy: 1e-3, "not on the grid")
            let f = (w[i] * (1 / s)).rounded(.down) + z
            let lo = Float(q.scheme.qmin), hi = Float(q.scheme.qmax)
            XCTAssertTrue([min(max(f, lo), hi), min(max(f + 1, lo), hi)].contains(k.rounded()), "weight \(i): \(w[i]) -> code \(k), floor code \(f)")
        }
        XCTAssertEqual(noGrad { q(rounded) }.scalars, out)
    }

    /// A small PTQ model: every conv and linear layer is rounded, in order; the model's float-output error
    /// with the learned rounding is below round-to-nearest's.
    func testRunRoundsEveryLayerAndLowersTheOutputError() throws {
        var r = RNG(seed: 12)
        func make(_ r: inout RNG) throws -> Sequential {
            Sequential(try Conv2d(3, 8, kernel: 3, padding: 1, rng: &r), Activation(.relu), try Conv2d(8, 8, kernel: 3, padding: 1, groups: 8, rng: &r),
                       Activation(.relu), try Conv2d(8, 4, kernel: 1, rng: &r))
        }
        var r2 = r
        let m = try make(&r), nearest = try make(&r2), float = try make(&r2)
        for (a, b) in [(m, nearest), (m, float)] {
            for ((_, p), (_, p2)) in zip(a.namedParameters(), b.namedParameters()) { p2.pointer.update(from: p.pointer, count: p.count) }
        }
        var plan = QuantPlan.bits(weight: 3, activation: 8); plan.quantizeResidualAdds = false
        plan.weight.mode = .fixed; plan.activation.mode = .fixed
        let batches = (0..<4).map { _ in Tensor.randn([4, 3, 8, 8], rng: &r) }
        let h = try quantize(m, plan: plan), hn = try quantize(nearest, plan: plan)
        h.calibrate(m, batches: batches) { m($0) }; hn.calibrate(nearest, batches: batches) { nearest($0) }
        var cfg = AdaRound.Config(); cfg.iterations = 300
        let res = AdaRound.run(m, handle: h, batches: batches, config: cfg, forward: { m($0) })
        XCTAssertEqual(res.map(\.path), ["0", "2", "4"])
        func error(_ model: Module) -> Double {
            batches.reduce(0.0) { acc, b in
                let d = noGrad { model(b) - float(b) }
                return acc + Double(noGrad { (d * d).sum() }.item)
            }
        }
        XCTAssertLessThan(error(m), error(nearest))
        XCTAssertTrue(h.quantizers.allSatisfy { $0.1.enabled })
    }

    /// Held-out batches: where round-to-nearest reconstructs them exactly (their targets are its outputs),
    /// the learned rounding cannot beat it there, so round-to-nearest is kept and returned; checked on the
    /// learning batches themselves, the learned rounding (better there) is kept.
    func testHeldOutBatchesKeepRoundToNearestUnlessTheLearnedRoundingGeneralises() throws {
        var r = RNG(seed: 13)
        let (conv, q, op, inputs, targets) = try threeBitConv(&r)
        let nearest = noGrad { q(conv.weight) }
        let other = (0..<2).map { _ in Tensor.randn([8, 6, 6, 6], rng: &r) }
        let exact = noGrad { other.map { (input: $0, target: op.apply($0, nearest)) } }
        var cfg = AdaRound.Config(); cfg.iterations = 400
        let (kept, res) = AdaRound.round(weight: conv.weight, quantizer: q, op: op.apply, inputs: inputs, targets: targets,
                                         heldOut: exact, config: cfg, path: "conv")
        XCTAssertLessThan(res.adaRoundError, res.nearestError)
        XCTAssertEqual(try XCTUnwrap(res.heldOutNearestError), 0, accuracy: 1e-9)
        XCTAssertTrue(res.keptNearest)
        XCTAssertEqual(kept.scalars, nearest.scalars)
        let same = Array(zip(inputs, targets)).map { (input: $0.0, target: $0.1) }
        let (learned, res2) = AdaRound.round(weight: conv.weight, quantizer: q, op: op.apply, inputs: inputs, targets: targets,
                                             heldOut: same, config: cfg, path: "conv")
        XCTAssertFalse(res2.keptNearest)
        XCTAssertLessThan(try XCTUnwrap(res2.heldOutAdaRoundError), try XCTUnwrap(res2.heldOutNearestError))
        XCTAssertNotEqual(learned.scalars, nearest.scalars)
    }
}
