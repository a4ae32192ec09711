import XCTest
import Kernels
import Autodiff
import NN
@testable import Quant

/// QAT ranges calibrated with BatchNorm's batch statistics (`QATHandle.calibrate(statistics: .batch)`):
/// the activations a training-mode forward produces, whatever the running statistics hold.
final class CalibrationStatisticsTests: XCTestCase {
    func build(seed: UInt64 = 4) throws -> Sequential {
        var r = RNG(seed: seed)
        return Sequential(try Conv2d(3, 6, kernel: 3, rng: &r), BatchNorm2d(6), Activation(.relu),
                          try Conv2d(6, 5, kernel: 1, rng: &r), BatchNorm2d(5))
    }

    /// Running statistics of a barely trained network: far from its batch statistics (variance 100x).
    func makeStale(_ m: Sequential) {
        for i in [1, 4] {
            let bn = m[i] as! BatchNorm2d
            for c in 0..<bn.runningMean.count { bn.runningMean.pointer[c] = 0.5; bn.runningVar.pointer[c] = 100 }
        }
    }

    func inputQuantizer(_ m: Sequential) -> FakeQuantize { (m[3] as! Conv2d).inputQuantizer as! FakeQuantize }

    /// The input of the second conv in a training-mode forward (the BN normalising with batch statistics).
    func trainingActivation(_ m: Sequential, _ x: Tensor) -> Tensor {
        let bn = m[1] as! BatchNorm2d
        let saved = (bn.runningMean.scalars, bn.runningVar.scalars)
        m.train()
        let a = noGrad { m[2](m[1](m[0](x))) }
        bn.runningMean.pointer.update(from: saved.0, count: saved.0.count); bn.runningVar.pointer.update(from: saved.1, count: saved.1.count)
        return a
    }

    func testBatchStatisticsFitTheTrainingForwardAndKeepRunningStatistics() throws {
        var rng = RNG(seed: 7)
        let x = Tensor.randn([4, 3, 8, 8], rng: &rng)
        var plan = QuantPlan(); plan.weight.bits = 4; plan.activation.bits = 4

        let m = try build(); makeStale(m)
        let h = try quantize(m, plan: plan)
        let before = [1, 4].map { ((m[$0] as! BatchNorm2d).runningMean.scalars, (m[$0] as! BatchNorm2d).runningVar.scalars) }
        m.train()
        (m[0] as! Conv2d).eval()    // a mixed state, restored module by module
        h.calibrate(m, batches: [x], statistics: .batch) { m($0) }
        XCTAssertTrue(m.isTraining); XCTAssertFalse(m[0].isTraining); XCTAssertTrue(m[1].isTraining)
        for (k, i) in [1, 4].enumerated() {
            let bn = m[i] as! BatchNorm2d
            XCTAssertEqual(bn.runningMean.scalars, before[k].0, "running mean of BN \(i) unchanged")
            XCTAssertEqual(bn.runningVar.scalars, before[k].1, "running variance of BN \(i) unchanged")
            XCTAssertFalse(bn.frozenStatistics)
        }
        // min-max over the one batch: the range ends within a step of the training activations' max,
        // and nothing clips.
        let q = inputQuantizer(m)
        let a = trainingActivation(m, x)
        let s = q.scale.scalars[0], z = FakeQuant.roundedZeroPoint(q.zeroPoint.scalars[0], qmin: q.scheme.qmin, qmax: q.scheme.qmax)
        let hi = (Float(q.scheme.qmax) - z) * s
        XCTAssertEqual(hi, a.scalars.max()!, accuracy: s)
        XCTAssertEqual(q.clippedShare(a), 0)

        // The same network calibrated with its (stale) running statistics clips the training activations.
        let r = try build(); makeStale(r)
        let hr = try quantize(r, plan: plan)
        hr.calibrate(r, batches: [x], statistics: .running) { r($0) }
        let share = inputQuantizer(r).clippedShare(trainingActivation(r, x))
        XCTAssertGreaterThan(share, 0.2, "running-statistics ranges clip \(share) of the training activations")
        XCTAssertLessThan(inputQuantizer(r).scale.scalars[0], s / 3)
    }

    /// A folded BN frozen from step 0 normalises with its running statistics in the QAT forward, so
    /// calibration keeps them: the same ranges as running-statistics calibration. Not frozen: they differ.
    func testFoldedBatchNormFrozenFromTheStartKeepsRunningStatistics() throws {
        var rng = RNG(seed: 9)
        let x = Tensor.randn([4, 3, 8, 8], rng: &rng)
        func ranges(freezeAfter: Int?, _ statistics: QATHandle.CalibrationStatistics) throws -> [[Float]] {
            let m = try build(); makeStale(m)
            var plan = QuantPlan(); plan.foldBN = true; plan.freezeBNAfter = freezeAfter; plan.quantizeResidualAdds = false
            let h = try quantize(m, plan: plan)
            h.calibrate(m, batches: [x], statistics: statistics) { m($0) }
            XCTAssertEqual((m[4] as! BatchNorm2d).runningVar.scalars, [Float](repeating: 100, count: 5))
            return h.quantizers.map { $0.1.scale.scalars }
        }
        XCTAssertEqual(try ranges(freezeAfter: 0, .batch), try ranges(freezeAfter: 0, .running))
        XCTAssertNotEqual(try ranges(freezeAfter: nil, .batch), try ranges(freezeAfter: nil, .running))
    }
}
