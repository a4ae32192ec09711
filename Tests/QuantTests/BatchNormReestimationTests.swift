import XCTest
import Kernels
import Autodiff
import NN
@testable import Quant

final class BatchNormReestimationTests: XCTestCase {
    func build(seed: UInt64 = 4) throws -> Sequential {
        var r = RNG(seed: seed)
        let m = Sequential(try Conv2d(3, 6, kernel: 3, rng: &r), BatchNorm2d(6), Activation(.relu),
                           try Conv2d(6, 5, kernel: 1, rng: &r), BatchNorm2d(5))
        return m
    }

    /// Per-channel mean and unbiased variance of an NCHW tensor (Double sums).
    func stats(_ t: Tensor) -> (mean: [Double], variance: [Double]) {
        let n = t.shape[0], c = t.shape[1], hw = t.shape[2] * t.shape[3], v = t.scalars
        var mean = [Double](repeating: 0, count: c), variance = mean
        let count = Double(n * hw)
        for ch in 0..<c {
            var s = 0.0
            for b in 0..<n { for i in 0..<hw { s += Double(v[(b * c + ch) * hw + i]) } }
            let mu = s / count
            var q = 0.0
            for b in 0..<n { for i in 0..<hw { let d = Double(v[(b * c + ch) * hw + i]) - mu; q += d * d } }
            mean[ch] = mu; variance[ch] = q / (count - 1)
        }
        return (mean, variance)
    }

    /// x normalised per channel with its own (biased) batch statistics, then gamma and beta: what a
    /// training-mode BN passes on during re-estimation.
    func normalized(_ t: Tensor, _ bn: BatchNorm2d) -> Tensor {
        let n = t.shape[0], c = t.shape[1], hw = t.shape[2] * t.shape[3]
        let (mean, unbiased) = stats(t)
        let count = Double(n * hw)
        var out = t.scalars
        for ch in 0..<c {
            let v = unbiased[ch] * (count - 1) / count
            let k = Double(bn.weight.scalars[ch]) / (v + Double(bn.eps)).squareRoot()
            for b in 0..<n { for i in 0..<hw {
                let j = (b * c + ch) * hw + i
                out[j] = Float((Double(out[j]) - mean[ch]) * k + Double(bn.bias.scalars[ch]))
            } }
        }
        return Tensor(shape: t.shape, scalars: out)
    }

    /// The running statistics become the mean over batches of each batch's statistics, computed on the
    /// quantized model (each quantized layer in eval mode, the BNs before it normalising with batch
    /// statistics), whatever they held before; quantizers, modes and momenta are left as they were.
    func testRunningStatisticsBecomeTheAverageOfQuantizedBatchStatistics() throws {
        let m = try build()
        var plan = QuantPlan(); plan.weight.bits = 4; plan.activation.bits = 4
        let h = try quantize(m, plan: plan)
        var rng = RNG(seed: 11)
        let calib = (0..<2).map { _ in Tensor.randn([4, 3, 8, 8], rng: &rng) }
        h.calibrate(m, batches: calib) { m($0) }
        let bn1 = m[1] as! BatchNorm2d, bn2 = m[4] as! BatchNorm2d
        for bn in [bn1, bn2] {   // stale statistics the re-estimation must forget
            for i in 0..<bn.runningMean.count { bn.runningMean.pointer[i] = 5; bn.runningVar.pointer[i] = 9 }
            rng.fillUniform(bn.weight.pointer, count: bn.weight.count, low: 0.5, high: 2)
            rng.fillUniform(bn.bias.pointer, count: bn.bias.count, low: -0.5, high: 0.5)
        }
        let quantizerState = h.quantizers.map { ($0.1.scale.scalars, $0.1.zeroPoint.scalars) }
        m.train()
        let batches = (0..<3).map { _ in Tensor.randn([4, 3, 8, 8], rng: &rng) * 1.5 + 0.3 }

        // Expected, layer by layer with the quantized convs in eval mode.
        m.eval()
        var e1 = [[Double]](), v1 = [[Double]](), e2 = [[Double]](), v2 = [[Double]]()
        for x in batches {
            let h1 = m[0](x)
            let s1 = stats(h1); e1.append(s1.mean); v1.append(s1.variance)
            let h2 = m[3](m[2](normalized(h1, bn1)))
            let s2 = stats(h2); e2.append(s2.mean); v2.append(s2.variance)
        }
        m.train()

        let paths = BatchNormReestimation.run(m, batches: batches) { m($0) }
        XCTAssertEqual(paths, ["1", "4"])
        func average(_ rows: [[Double]]) -> [Double] { (0..<rows[0].count).map { c in rows.map { $0[c] }.reduce(0, +) / Double(rows.count) } }
        for (bn, e, v) in [(bn1, e1, v1), (bn2, e2, v2)] {
            let em = average(e), ev = average(v)
            for c in 0..<em.count {
                XCTAssertEqual(Double(bn.runningMean.scalars[c]), em[c], accuracy: 1e-4 * max(1, abs(em[c])), "mean \(c)")
                XCTAssertEqual(Double(bn.runningVar.scalars[c]), ev[c], accuracy: 1e-4 * max(1, ev[c]), "variance \(c)")
            }
            XCTAssertEqual(bn.momentum, 0.1)
            XCTAssertFalse(bn.frozenStatistics)
        }
        XCTAssertTrue(m.namedModules().allSatisfy { $0.1.isTraining }, "training mode restored")
        for ((_, q), (s, z)) in zip(h.quantizers, quantizerState) {
            XCTAssertEqual(q.scale.scalars, s); XCTAssertEqual(q.zeroPoint.scalars, z)
        }
        // Re-estimating again on the same batches gives the same statistics (nothing of the old ones stays).
        let once = bn2.runningVar.scalars
        m.eval()
        BatchNormReestimation.run(m, batches: batches) { m($0) }
        XCTAssertEqual(bn2.runningVar.scalars, once)
        XCTAssertTrue(m.namedModules().allSatisfy { !$0.1.isTraining }, "eval mode restored")
    }

    /// BN folded into its conv (torch.ao ConvBn2d) and frozen: re-estimated all the same, to what the
    /// unfolded model gets with quantization off, and left frozen.
    func testFoldedAndFrozenBatchNormIsReestimated() throws {
        let plainModel = try build(), folded = try build()
        var plan = QuantPlan(); plan.foldBN = true; plan.freezeBNAfter = 0; plan.quantizeResidualAdds = false
        let h = try quantize(folded, plan: plan)
        XCTAssertEqual(h.foldedBN.map(\.0), ["1", "4"])
        h.setStep(3)
        h.setEnabled(false)
        var rng = RNG(seed: 2)
        let batches = (0..<2).map { _ in Tensor.randn([3, 3, 7, 7], rng: &rng) }
        BatchNormReestimation.run(plainModel, batches: batches) { plainModel($0) }
        BatchNormReestimation.run(folded, batches: batches) { folded($0) }
        for i in [1, 4] {
            let a = plainModel[i] as! BatchNorm2d, b = folded[i] as! BatchNorm2d
            XCTAssertTrue(b.frozenStatistics)
            for c in 0..<a.runningMean.count {
                XCTAssertEqual(a.runningMean.scalars[c], b.runningMean.scalars[c], accuracy: 1e-4)
                XCTAssertEqual(a.runningVar.scalars[c], b.runningVar.scalars[c], accuracy: 1e-4 * max(1, a.runningVar.scalars[c]))
            }
            XCTAssertNotEqual(a.runningVar.scalars, [Float](repeating: 1, count: a.runningVar.count), "statistics were not updated")
        }
    }

    func testAModelWithoutBatchNormIsLeftAlone() throws {
        var r = RNG(seed: 1)
        let m = Sequential(try Conv2d(3, 4, kernel: 3, rng: &r), Activation(.relu))
        XCTAssertEqual(BatchNormReestimation.run(m, batches: [Tensor.randn([1, 3, 5, 5], rng: &r)]) { m($0) }, [])
    }
}
