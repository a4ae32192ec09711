import XCTest
import Kernels
import Autodiff
import NN
@testable import Quant

final class QuantizerTests: XCTestCase {
    var rng = RNG(seed: 4)

    func testQParamsMatchPyTorchObserverFormula() {
        let s = QuantScheme(bits: 8)
        let (scale, zp) = s.qparams(min: -1, max: 3, eps: 1e-8)
        XCTAssertEqual(scale, 4 / 255, accuracy: 1e-9)
        XCTAssertEqual(zp, 64)                           // 0 - round(-1 / (4/255)) = round(63.75)
        let sym = QuantScheme(bits: 8, signed: true, symmetric: true)
        let (ss, sz) = sym.qparams(min: -2, max: 1, eps: 1e-8)
        XCTAssertEqual(ss, 2 / 127.5, accuracy: 1e-9); XCTAssertEqual(sz, 0)
        XCTAssertEqual(QuantScheme(bits: 4, signed: true, narrow: true).qmin, -7)
        XCTAssertEqual(QuantScheme(bits: 2).qmax, 3)
    }

    func testInvalidConfigurationsNameThePath() {
        for (scheme, needle) in [(QuantScheme(bits: 1), "bits 1"), (QuantScheme(bits: 9), "bits 9"), (QuantScheme(bits: 4, narrow: true), "narrow")] {
            XCTAssertThrowsError(try FakeQuantize(scheme: scheme, path: "layer.q")) { e in
                XCTAssertTrue("\(e)".contains("layer.q") && "\(e)".contains(needle), "\(e)")
            }
        }
        XCTAssertThrowsError(try FakeQuantize(scheme: QuantScheme(), dropout: QuantDropout(.constant(1.5)), path: "q")) {
            XCTAssertTrue("\($0)".contains("1.5"))
        }
        XCTAssertThrowsError(try FakeQuantize(scheme: QuantScheme(), channels: 3, path: "q"))
    }

    func testScaleNeverGoesNegativeOrNaN() throws {
        let q = try FakeQuantize(scheme: QuantScheme(bits: 4), eps: 1e-6)
        let x = Tensor.uniform([64], low: -1, high: 1, rng: &rng)
        _ = q(x)
        q.scale.pointer[0] = -3
        _ = q(x)
        XCTAssertEqual(q.scale.scalars[0], 1e-6)
        q.scale.pointer[0] = .nan
        let y = q(x)
        XCTAssertEqual(q.scale.scalars[0], 1e-6)
        XCTAssertTrue(y.scalars.allSatisfy { $0.isFinite })
        // Training with a huge learning rate pushes the scale down hard; it must stay >= eps and finite.
        for _ in 0..<20 {
            q.scale.grad = nil
            let loss = (q(x) - x * 3).square().sum()
            loss.backward()
            q.scale.pointer[0] -= 1000 * (q.scale.grad?.scalars[0] ?? 0)
            _ = q(x)
            XCTAssertGreaterThanOrEqual(q.scale.scalars[0], 1e-6)
            XCTAssertTrue(q.scale.scalars[0].isFinite)
        }
    }

    /// A learnable zero point pushed off the grid (a channel that stays clipped) is clamped back to
    /// [qmin, qmax] by the next forward (MQBench's rule): the output is unchanged, since the forward
    /// rounds and clamps it anyway, and the stored value stays one a checkpoint can hold.
    func testZeroPointStaysOnTheGrid() throws {
        let q = try FakeQuantize(scheme: QuantScheme(bits: 4), eps: 1e-6)
        let x = Tensor.uniform([64], low: -1, high: 1, rng: &rng)
        _ = q(x)
        q.zeroPoint.pointer[0] = 15
        let atEdge = q(x).scalars
        for (v, expected) in [(Float(3.7e7), Float(15)), (-2e9, 0), (.nan, 0), (15.4, 15)] {
            q.zeroPoint.pointer[0] = v
            let y = q(x).scalars
            XCTAssertEqual(q.zeroPoint.scalars[0], expected, "\(v)")
            if expected == 15 { XCTAssertEqual(y, atEdge, "\(v)") }
        }
    }

    func testDropoutEndpointsAndDeterminism() throws {
        let x = Tensor.uniform([4, 3, 5, 5], low: -2, high: 2, rng: &rng)
        func make(_ p: Float, _ g: QuantDropout.Granularity = .element, seed: UInt64 = 1) throws -> FakeQuantize {
            let q = try FakeQuantize(scheme: QuantScheme(bits: 4), dropout: QuantDropout(.constant(p), granularity: g), seed: seed)
            q.observe(x)
            return q
        }
        let plain = try FakeQuantize(scheme: QuantScheme(bits: 4)); plain.observe(x)
        let fq = plain(x).scalars
        XCTAssertEqual(try make(0)(x).scalars, x.scalars, "p = 0 must be the float path exactly")
        XCTAssertEqual(try make(1)(x).scalars, fq, "p = 1 must be plain fake quantization exactly")
        let half = try make(0.5)(x).scalars
        let quantized = zip(half, fq).filter { $0 == $1 }.count, kept = zip(half, x.scalars).filter { $0 == $1 }.count
        XCTAssertEqual(Float(quantized) / Float(x.count), 0.5, accuracy: 0.12)
        XCTAssertEqual(quantized + kept >= x.count, true)
        XCTAssertEqual(try make(0.5)(x).scalars, half, "same seed, same mask")
        XCTAssertNotEqual(try make(0.5, seed: 2)(x).scalars, half)
        // Channel granularity on a per-tensor activation quantizer drops whole feature channels.
        let ch = try make(0.5, .channel)(x).scalars
        for n in 0..<4 { for c in 0..<3 {
            let idx = (0..<25).map { (n * 3 + c) * 25 + $0 }
            let allQ = idx.allSatisfy { ch[$0] == fq[$0] }, allF = idx.allSatisfy { ch[$0] == x.scalars[$0] }
            XCTAssertTrue(allQ || allF, "channel \(c) of image \(n) is mixed")
        }}
        // Evaluation always quantizes everything.
        let q = try make(0.5); q.eval()
        XCTAssertEqual(q(x).scalars, fq)
        // Kept elements pass the gradient unchanged and do not contribute to the scale gradient.
        let q0 = try make(0)
        let xg = x.copy(); xg.requiresGrad = true
        q0(xg).sum().backward()
        XCTAssertEqual(xg.grad!.scalars, [Float](repeating: 1, count: x.count))
        XCTAssertNil(q0.scale.grad)
        // Linear schedule
        let d = QuantDropout(.linear(start: 0.2, end: 1, steps: 100))
        XCTAssertEqual(d.probability(at: 0), 0.2, accuracy: 1e-6)
        XCTAssertEqual(d.probability(at: 50), 0.6, accuracy: 1e-6)
        XCTAssertEqual(d.probability(at: 500), 1, accuracy: 1e-6)
    }

    func testRangeInitialisationMethods() throws {
        let v: [Float] = (0..<1000).map { Float($0) / 999 * 2 - 1 }    // uniform ramp on [-1, 1]
        let x = Tensor(shape: [1000], scalars: v)
        func scale(_ m: RangeMethod, _ s: QuantScheme = QuantScheme(bits: 8)) throws -> Float {
            let q = try FakeQuantize(scheme: s, rangeMethod: m); q.observe(x); return q.scale.scalars[0]
        }
        XCTAssertEqual(try scale(.minMax), 2 / 255, accuracy: 1e-7)
        let meanAbs = v.reduce(0) { $0 + abs($1) } / 1000
        XCTAssertEqual(try scale(.lsq), 2 * meanAbs / Float(255).squareRoot(), accuracy: 1e-6)
        let sd = (v.reduce(0) { $0 + $1 * $1 } / 1000).squareRoot()
        XCTAssertEqual(try scale(.lsqPlus), 3 * sd / 128, accuracy: 1e-4)
        XCTAssertLessThan(try scale(.percentile(99)), 2 / 255)
        // A percentile range clips about 2% of a uniform ramp (1% each side); min-max clips nothing.
        let pq = try FakeQuantize(scheme: QuantScheme(bits: 8), rangeMethod: .percentile(99)); pq.observe(x)
        XCTAssertEqual(pq.clippedFraction.item, 0.02, accuracy: 0.01)
        let mq = try FakeQuantize(scheme: QuantScheme(bits: 8), rangeMethod: .minMax); mq.observe(x)
        XCTAssertEqual(mq.clippedFraction.item, 0)
        XCTAssertGreaterThan(try scale(.percentile(99)), 1.9 / 255)
        // MSE never picks a range whose error exceeds min-max's.
        XCTAssertLessThanOrEqual(try scale(.mse, QuantScheme(bits: 3)), 2 / 7 + 1e-6)
        // Moving average: second batch moves the range by momentum.
        let q = try FakeQuantize(scheme: QuantScheme(bits: 8), rangeMethod: .movingAverageMinMax(momentum: 0.5))
        q.observe(x); q.observe(x * 3)
        XCTAssertEqual(q.scale.scalars[0], 4 / 255, accuracy: 1e-6)   // range [-2, 2]
    }

    func testObservedModeFollowsDataWithoutGradients() throws {
        let q = try FakeQuantize(scheme: QuantScheme(bits: 8), mode: .observed)
        let x = Tensor.uniform([100], low: -1, high: 1, rng: &rng)
        x.requiresGrad = true
        q(x).sum().backward()
        XCTAssertNil(q.scale.grad)
        XCTAssertFalse(q.scale.requiresGrad)
        _ = q(x.detached() * 4)
        XCTAssertGreaterThan(q.scale.scalars[0], 3.5 * 2 / 255)
    }

    func testGradFactors() throws {
        let x = Tensor.uniform([2, 6], low: -1, high: 1, rng: &rng)
        var grads: [FakeQuantize.GradFactor: Float] = [:]
        for g in FakeQuantize.GradFactor.allCases {
            let q = try FakeQuantize(scheme: QuantScheme(bits: 4, axis: 0), channels: 2, gradFactor: g)
            q.observe(x)
            q(x).square().sum().backward()
            grads[g] = q.scale.grad!.scalars[0]
        }
        XCTAssertEqual(grads[.lsqPyTorch]!, grads[.one]! / (12 * 15 as Float).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(grads[.lsqMQBench]!, grads[.one]! / (6 * 15 as Float).squareRoot(), accuracy: 1e-6)
    }
}

final class KernelPathTests: XCTestCase {
    /// The SIMD rows (magic-number rounding) agree bit for bit with a scalar rint reference, on long
    /// rows with exact ties, huge magnitudes and values right at the grid edges.
    func testSIMDRowsMatchScalarReference() {
        var rng = RNG(seed: 8)
        let n = 10_003
        let x = Tensor.uniform([n], low: -3, high: 5, rng: &rng)
        let s: Float = 0.03125, z: Float = 37, qmin = 0, qmax = 255
        for i in stride(from: 0, to: n, by: 7) { x.pointer[i] = (Float(Int(x.pointer[i] / s)) + 0.5) * s }   // ties
        x.pointer[1] = 1e7; x.pointer[2] = -1e9; x.pointer[3] = (Float(qmax) - z) * s; x.pointer[4] = (Float(qmin) - z) * s
        x.requiresGrad = true
        let scale = Tensor(shape: [1], scalars: [s], requiresGrad: true), zp = Tensor(shape: [1], scalars: [z], requiresGrad: true)
        let g = Tensor.uniform([n], low: -1, high: 1, rng: &rng)
        let y = x.fakeQuantize(scale: scale, zeroPoint: zp, qmin: qmin, qmax: qmax)
        y.backward(g)
        var dS: Double = 0, dZ: Double = 0
        for i in 0..<n {
            let v = x.pointer[i], gi = g.pointer[i]
            let q = min(max((v * (1 / s)).rounded(.toNearestOrEven) + z, Float(qmin)), Float(qmax))
            XCTAssertEqual(y.pointer[i], (q - z) * s, "forward at \(i) for \(v)")
            let xq = (z + v * (1 / s)).rounded(.toNearestOrEven)
            let inRange = xq >= Float(qmin) && xq <= Float(qmax)
            XCTAssertEqual(x.grad!.pointer[i], inRange ? gi : 0, "dx at \(i)")
            if inRange { dS += Double(gi * ((xq - z) * s - v) * (1 / s)) } else { dS += Double(gi * ((xq < Float(qmin) ? Float(qmin) : Float(qmax)) - z)); dZ -= Double(gi * s) }
        }
        XCTAssertEqual(Double(scale.grad!.item), dS, accuracy: 1e-6 * Double(n))
        XCTAssertEqual(Double(zp.grad!.item), dZ, accuracy: 1e-6 * Double(n))
    }

    /// The masked SIMD rows (quantization dropout) against a scalar reference: quantized elements get
    /// fake quant and the three-region gradients, the others pass through and add nothing to the sums.
    func testMaskedRowsMatchScalarReference() {
        var rng = RNG(seed: 9)
        let n = 10_003
        let x = Tensor.uniform([n], low: -3, high: 5, rng: &rng, requiresGrad: true)
        let mask = Tensor.zeros([n]); rng.fillBernoulli(mask.pointer, count: n, p: 0.5)
        let s: Float = 0.05, z: Float = 20, qmin = 0, qmax = 127
        let scale = Tensor(shape: [1], scalars: [s], requiresGrad: true), zp = Tensor(shape: [1], scalars: [z], requiresGrad: true)
        let g = Tensor.uniform([n], low: -1, high: 1, rng: &rng)
        let y = x.fakeQuantize(scale: scale, zeroPoint: zp, qmin: qmin, qmax: qmax, elementMask: mask)
        y.backward(g)
        var dS: Double = 0, dZ: Double = 0, quantized = 0
        for i in 0..<n {
            let v = x.pointer[i], gi = g.pointer[i]
            guard mask.pointer[i] != 0 else {
                XCTAssertEqual(y.pointer[i], v); XCTAssertEqual(x.grad!.pointer[i], gi); continue
            }
            quantized += 1
            let q = min(max((v * (1 / s)).rounded(.toNearestOrEven) + z, Float(qmin)), Float(qmax))
            XCTAssertEqual(y.pointer[i], (q - z) * s, "forward at \(i)")
            let xq = (z + v * (1 / s)).rounded(.toNearestOrEven)
            let inRange = xq >= Float(qmin) && xq <= Float(qmax)
            XCTAssertEqual(x.grad!.pointer[i], inRange ? gi : 0, "dx at \(i)")
            if inRange { dS += Double(gi * ((xq - z) * s - v) * (1 / s)) } else { dS += Double(gi * ((xq < Float(qmin) ? Float(qmin) : Float(qmax)) - z)); dZ -= Double(gi * s) }
        }
        XCTAssertGreaterThan(quantized, n / 3); XCTAssertLessThan(quantized, 2 * n / 3)
        XCTAssertEqual(Double(scale.grad!.item), dS, accuracy: 1e-6 * Double(n))
        XCTAssertEqual(Double(zp.grad!.item), dZ, accuracy: 1e-6 * Double(n))
    }
}
