import XCTest
import Kernels
import Autodiff
import NN
@testable import Quant

final class MixedPrecisionTests: XCTestCase {
    /// A diagonal Hessian (L = sum a_i w_i^2): one Rademacher vector gives the exact trace, 2 sum a_i.
    func testHutchinsonIsExactOnADiagonalQuadratic() {
        let a: [Float] = [0.5, 2, 3, 0.25, 1]
        let w = Tensor(shape: [5], scalars: [0.3, -1, 2, 0.5, -0.7], requiresGrad: true)
        let before = w.scalars
        let coef = Tensor(shape: [5], scalars: a)
        let t = MixedPrecision.hutchinsonTraces(params: [w], samples: 1, seed: 3) {
            w.grad = nil; (coef * w * w).sum().backward(); return [w.grad!]
        }
        XCTAssertEqual(t[0], 2 * Double(a.reduce(0, +)), accuracy: 1e-3)
        XCTAssertEqual(w.scalars, before, "parameters not restored")
    }

    /// Linear least squares L = mean((X W^T - Y)^2) over N x out elements: the Hessian of W is
    /// I_out (x) 2 X^T X / (N out), trace 2 ||X||_F^2 / N. Hutchinson's mean over 2000 samples is within
    /// 3%, and each layer's estimate sees only its own block (two layers at once).
    func testHutchinsonMatchesTheExactTraceOfLeastSquares() throws {
        var r = RNG(seed: 4)
        let n = 20
        let x = Tensor.randn([n, 6], rng: &r), y = Tensor.randn([n, 3], rng: &r)
        let x2 = Tensor.randn([n, 4], rng: &r), y2 = Tensor.randn([n, 2], rng: &r)
        let l1 = try Linear(6, 3, bias: false, rng: &r), l2 = try Linear(4, 2, bias: false, rng: &r)
        let t = MixedPrecision.hutchinsonTraces(params: [l1.weight, l2.weight], samples: 2000, seed: 5) {
            l1.weight.grad = nil; l2.weight.grad = nil
            let d1 = l1(x) - y, d2 = l2(x2) - y2
            ((d1 * d1).mean() + (d2 * d2).mean()).backward()
            return [l1.weight.grad!, l2.weight.grad!]
        }
        let exact1 = 2 * Double((x * x).sum().item) / Double(n), exact2 = 2 * Double((x2 * x2).sum().item) / Double(n)
        XCTAssertEqual(t[0], exact1, accuracy: 0.03 * exact1)
        XCTAssertEqual(t[1], exact2, accuracy: 0.03 * exact2)
    }

    func testQuantizationErrorFallsWithBits() {
        var r = RNG(seed: 6)
        let w = Tensor.randn([4, 3, 3, 3], rng: &r)
        let e = [2, 3, 4, 8].map { MixedPrecision.quantizationError(w, bits: $0) }
        XCTAssertEqual(e, e.sorted(by: >))
        XCTAssertGreaterThan(e[3], 0)
        // Against a direct per-channel min-max asymmetric 4-bit quantization (range holding 0).
        var ref = 0.0
        let inner = w.count / 4, p = w.scalars, qmax: Float = 15
        for c in 0..<4 {
            let ch = p[(c * inner)..<((c + 1) * inner)]
            let lo = min(ch.min()!, 0), hi = max(ch.max()!, 0)
            let s = (hi - lo) / qmax, z = min(max((-lo / s).rounded(.toNearestOrEven), 0), qmax)
            for v in ch { let q = (min(max((v * (1 / s)).rounded(.toNearestOrEven) + z, 0), qmax) - z) * s; ref += Double((q - v) * (q - v)) }
        }
        XCTAssertEqual(e[2], ref, accuracy: 1e-4 * ref)
    }

    /// Two equal-size layers, A 100x more sensitive than B. Budget 6 bits: B drops to 4. Budget 4: both at
    /// 4 (greedy lowering first drops B to 2 and A to 4, using 3 bits; the raising pass gives B its 4
    /// back). The lowest choice below the budget is refused.
    func testAllocationUnderABudget() throws {
        let errors = ["2": 16.0, "4": 1.0, "8": 0.004]
        let a = MixedPrecision.Layer(path: "a", weights: 100, trace: 1000, errors: errors)
        let b = MixedPrecision.Layer(path: "b", weights: 100, trace: 10, errors: errors)
        XCTAssertEqual(try MixedPrecision.allocate([a, b], choices: [2, 4, 8], averageBits: 8), [8, 8])
        XCTAssertEqual(try MixedPrecision.allocate([a, b], choices: [2, 4, 8], averageBits: 6), [8, 4])
        XCTAssertEqual(try MixedPrecision.allocate([a, b], choices: [2, 4, 8], averageBits: 4), [4, 4])
        XCTAssertEqual(try MixedPrecision.allocate([a, b], choices: [2, 4, 8], averageBits: 5), [8, 2])
        XCTAssertThrowsError(try MixedPrecision.allocate([a, b], choices: [2, 4, 8], averageBits: 1.5))
    }

    /// Weights and inputs under a BitOps budget: two layers of equal size and MACs, weights insensitive,
    /// layer a's input 1000x more sensitive than b's. At uniform W4A4's BitOps (16 per MAC) the greedy
    /// keeps a's input at 8 bits and pays for it with a's weights at 2 (2 x 8 = 16), b at W4A4; the summed
    /// Omega is far below uniform W4A4's. A size budget is held at the same time; choices whose lowest
    /// product exceeds the BitOps budget, or rows that do not match the layers, are refused.
    func testJointAllocationTradesWeightBitsForInputBits() throws {
        let errors = ["2": 16.0, "4": 1.0, "8": 0.004]
        let w = ["a", "b"].map { MixedPrecision.Layer(path: $0, weights: 100, trace: 1, errors: errors) }
        let x = [MixedPrecision.Layer(path: "a.input", weights: 100, trace: 1000, errors: errors),
                 MixedPrecision.Layer(path: "b.input", weights: 100, trace: 1, errors: errors)]
        let r = try MixedPrecision.allocate(weights: w, weightChoices: [2, 4, 8], averageBits: 8,
                                            activations: x, activationChoices: [2, 4, 8], macs: [1000, 1000], averageBitOps: 16)
        XCTAssertEqual(r.weights, [2, 4])
        XCTAssertEqual(r.activations, [8, 4])
        func omega(_ wb: [Int], _ ab: [Int]) -> Double { zip(w, wb).map { $0.omega($1) }.reduce(0, +) + zip(x, ab).map { $0.omega($1) }.reduce(0, +) }
        XCTAssertLessThan(omega(r.weights, r.activations), omega([4, 4], [4, 4]) / 10)
        // Size at most 3 average bits as well: both budgets hold, a's input still at 8.
        let s = try MixedPrecision.allocate(weights: w, weightChoices: [2, 4, 8], averageBits: 3,
                                            activations: x, activationChoices: [2, 4, 8], macs: [1000, 1000], averageBitOps: 16)
        XCTAssertLessThanOrEqual(Double(s.weights.reduce(0, +)) / 2, 3)
        XCTAssertLessThanOrEqual(Double(zip(s.weights, s.activations).map { $0 * $1 }.reduce(0, +)) / 2, 16)
        XCTAssertEqual(s.activations[0], 8)
        // Without inputs the joint form is the weights-only one.
        XCTAssertEqual(try MixedPrecision.allocate(weights: w, weightChoices: [2, 4, 8], averageBits: 5).weights,
                       try MixedPrecision.allocate(w, choices: [2, 4, 8], averageBits: 5))
        XCTAssertThrowsError(try MixedPrecision.allocate(weights: w, weightChoices: [2, 4, 8], averageBits: 8, activations: x,
                                                         activationChoices: [2, 4, 8], macs: [1000, 1000], averageBitOps: 3)) {
            XCTAssertTrue("\($0)".contains("BitOps"), "\($0)")
        }
        XCTAssertThrowsError(try MixedPrecision.allocate(weights: w, weightChoices: [2, 4, 8], averageBits: 8, activations: [x[0]],
                                                         activationChoices: [2, 4, 8], macs: [1000, 1000], averageBitOps: 16))
    }

    /// The probe passes its input through unchanged, measures Q_b(x)'s error as a FakeQuantize of the same
    /// range method does, and its zero tensor receives the loss gradient with respect to the input.
    func testActivationProbeMeasuresErrorsAndTakesTheInputGradient() throws {
        var r = RNG(seed: 9)
        let x = Tensor.randn([4, 3, 5, 5], rng: &r)
        let probe = try ActivationProbe(bits: [2, 4], rangeMethod: .minMax, path: "p")
        probe.phase = .calibrate; XCTAssertEqual(probe(x).scalars, x.scalars)
        probe.phase = .measure; XCTAssertEqual(probe(x).scalars, x.scalars)
        XCTAssertEqual(probe.elements, x.count)
        for (k, b) in [2, 4].enumerated() {
            let q = try FakeQuantize(scheme: QuantScheme(bits: b), mode: .fixed)
            let ref = noGrad { () -> Double in
                q.calibrating = true; _ = q(x); q.calibrating = false
                let d = q(x) - x
                return Double((d * d).sum().item)
            }
            XCTAssertEqual(probe.errors[k], ref, accuracy: 1e-6 * ref)
        }
        XCTAssertGreaterThan(probe.errors[0], probe.errors[1])
        probe.phase = .probe
        let xg = Tensor(shape: x.shape, scalars: x.scalars, requiresGrad: true)
        let coef = Tensor.randn(x.shape, rng: &r)
        (coef * probe(xg) * probe(xg)).sum().backward()
        let d = try XCTUnwrap(probe.deltas[0]?.grad)
        XCTAssertEqual(d.scalars, xg.grad!.scalars)
        XCTAssertTrue(probe.deltas[0]!.scalars.allSatisfy { $0 == 0 })
    }
}
