import XCTest
import Kernels
@testable import Autodiff
import NN
@testable import Quant

/// relu/relu6/hardswish followed by fake quantization, fused (the activation is applied inside the
/// quantizer's kernels) against the plain sequence: same values, same gradients.
final class ActivationFusionTests: XCTestCase {
    /// Values across each activation's kinks, some exactly on them (0 and 6; -3 and 3 for hardswish).
    func input(_ shape: [Int], rng: inout RNG, _ act: FakeQuant.PreActivation = .relu) -> Tensor {
        if act == .hardswish {
            let a = Tensor.uniform(shape, low: -5, high: 5, rng: &rng)
            for i in stride(from: 0, to: a.count, by: 11) { a.pointer[i] = -3 }
            for i in stride(from: 5, to: a.count, by: 13) { a.pointer[i] = 3 }
            return a
        }
        let a = Tensor.uniform(shape, low: -2, high: 8, rng: &rng)
        for i in stride(from: 0, to: a.count, by: 11) { a.pointer[i] = 0 }
        for i in stride(from: 5, to: a.count, by: 13) { a.pointer[i] = 6 }
        return a
    }

    func testFusedOpEqualsActivationThenFakeQuant() {
        var rng = RNG(seed: 3)
        let shape = [2, 3, 7, 50]   // rows of 350: SIMD body and scalar tails
        for act in [FakeQuant.PreActivation.relu, .relu6, .hardswish] {
            for axis in [nil, 1] as [Int?] {
                for mask in ["none", "element", "channel"] {
                    for ste in STE.allCases {
                        let channels = axis == nil ? 1 : shape[1]
                        let s0 = Tensor.uniform([channels], low: 0.02, high: 0.05, rng: &rng)
                        let z0 = Tensor.uniform([channels], low: 0, high: 40, rng: &rng)
                        let a = input(shape, rng: &rng, act)
                        let g = Tensor.uniform(shape, low: -1, high: 1, rng: &rng)
                        var em: Tensor? = nil, cm: Tensor? = nil
                        if mask == "element" { em = Tensor.zeros(shape); rng.fillBernoulli(em!.pointer, count: em!.count, p: 0.5) }
                        if mask == "channel" { cm = Tensor.zeros([channels]); cm!.pointer[0] = 0; for c in 1..<channels { cm!.pointer[c] = 1 } }
                        func run(_ fused: Bool) -> (y: [Float], da: [Float], ds: [Float], dz: [Float]) {
                            let x = Tensor(shape: shape, scalars: a.scalars, requiresGrad: true)
                            let s = Tensor(shape: [channels], scalars: s0.scalars, requiresGrad: true)
                            let z = Tensor(shape: [channels], scalars: z0.scalars, requiresGrad: true)
                            let y = fused
                                ? x.fakeQuantize(scale: s, zeroPoint: z, qmin: 0, qmax: 63, axis: axis, ste: ste, elementMask: em, channelMask: cm, preActivation: act)
                                : x.activated(act).fakeQuantize(scale: s, zeroPoint: z, qmin: 0, qmax: 63, axis: axis, ste: ste, elementMask: em, channelMask: cm)
                            y.backward(g)
                            return (y.scalars, x.grad!.scalars, s.grad!.scalars, z.grad!.scalars)
                        }
                        let u = run(false), f = run(true)
                        let what = "\(act) axis \(String(describing: axis)) mask \(mask) \(ste)"
                        XCTAssertEqual(u.y, f.y, what)
                        XCTAssertEqual(u.da, f.da, what)
                        for (p, q) in zip(u.ds, f.ds) { XCTAssertEqual(p, q, accuracy: 1e-6 * max(1, abs(p)), what) }
                        for (p, q) in zip(u.dz, f.dz) { XCTAssertEqual(p, q, accuracy: 1e-6 * max(1, abs(p)), what) }
                    }
                }
            }
        }
    }

    func testFusedDepthwiseEqualsActivationThenQuantizedConv() throws {
        var rng = RNG(seed: 4)
        for act in [FakeQuant.PreActivation.relu, .relu6, .hardswish] {
            for (stride, pad) in [(1, 1), (2, 1)] {
                let w0 = Tensor.uniform([5, 1, 3, 3], low: -1, high: 1, rng: &rng)
                let a0 = input([2, 5, 9, 10], rng: &rng, act)
                let g = Tensor.uniform([2, 5, (9 + 2 * pad - 3) / stride + 1, (10 + 2 * pad - 3) / stride + 1], low: -1, high: 1, rng: &rng)
                func run(_ fused: Bool) -> [[Float]] {
                    let a = Tensor(shape: a0.shape, scalars: a0.scalars, requiresGrad: true)
                    let w = Tensor(shape: w0.shape, scalars: w0.scalars, requiresGrad: true)
                    let s = Tensor(shape: [1], scalars: [0.05], requiresGrad: true), z = Tensor(shape: [1], scalars: [3], requiresGrad: true)
                    let y = (fused ? a : a.activated(act)).depthwiseConv2dQuantizedInput(
                        w, bias: nil, stride: (stride, stride), padding: (pad, pad), dilation: (1, 1),
                        scale: s, zeroPoint: z, qmin: 0, qmax: 127, gradFactor: 1, ste: .clipped, preActivation: fused ? act : nil)
                    y.backward(g)
                    return [y.scalars, a.grad!.scalars, w.grad!.scalars, s.grad!.scalars, z.grad!.scalars]
                }
                let u = run(false), f = run(true)
                XCTAssertEqual(u[0], f[0]); XCTAssertEqual(u[1], f[1]); XCTAssertEqual(u[2], f[2])
                XCTAssertEqual(u[3][0], f[3][0], accuracy: 1e-6 * max(1, abs(u[3][0])))
                XCTAssertEqual(u[4][0], f[4][0], accuracy: 1e-6 * max(1, abs(u[4][0])))
            }
        }
    }

    /// Ops reachable from `root` in the tape, by name.
    func tapeOps(_ root: Tensor) -> [String: Int] {
        var seen = Set<ObjectIdentifier>(), stack = [root], counts: [String: Int] = [:]
        while let t = stack.popLast() {
            guard seen.insert(ObjectIdentifier(t)).inserted, let n = t.node else { continue }
            counts[n.op, default: 0] += 1
            stack.append(contentsOf: n.inputs)
        }
        return counts
    }

    /// Two training steps of a quantized model with and without activation fusion (step 0 initialises
    /// the ranges, step 1 fuses): the same loss and gradients; returns the fused run's and the unfused
    /// run's tape op counts.
    func compareFusion(seed: UInt64, make: (inout RNG) throws -> Module, plan: QuantPlan) throws -> (fused: [String: Int], unfused: [String: Int]) {
        func run(_ fuse: Bool) throws -> (loss: Float, grads: [(String, [Float])], ops: [String: Int]) {
            var rng = RNG(seed: seed)
            let m = try make(&rng)
            let h = try quantize(m, plan: plan)
            for (_, q) in h.quantizers { q.fuseActivation = fuse }
            m.train()
            let x = Tensor.uniform([2, 3, 32, 32], low: -1, high: 1, rng: &rng)
            var last: (Float, [(String, [Float])], [String: Int]) = (0, [], [:])
            for step in 0..<2 {
                h.setStep(step)
                m.zeroGrad()
                let loss = Loss.crossEntropy(m(x), targets: [0, 2])
                let ops = tapeOps(loss)
                loss.backward()
                last = (loss.item, m.namedParameters().map { ($0.0, $0.1.grad?.scalars ?? []) }, ops)
            }
            return last
        }
        let u = try run(false), f = try run(true)
        XCTAssertEqual(u.loss, f.loss)
        for ((name, p), (_, q)) in zip(u.grads, f.grads) {
            XCTAssertEqual(p.count, q.count, name)
            for (a, b) in zip(p, q) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(a)), name) }
        }
        return (f.ops, u.ops)
    }

    /// A whole quantized MobileNetV2 (with activation dropout, so masks go through the fused kernels)
    /// trains identically with and without the fusion; with it, no relu6 that feeds only a quantized conv stays on the tape.
    func testQuantizedModelIsIdenticalWithAndWithoutFusion() throws {
        var plan = QuantPlan.bits(weight: 4, activation: 4)
        plan.activation.dropout = QuantDropout(.constant(0.5))
        let (f, u) = try compareFusion(seed: 9, make: { try MobileNetV2(width: 0.25, numClasses: 3, rng: &$0) }, plan: plan)
        XCTAssertGreaterThan(u["relu6", default: 0], 0)
        // Every relu6 output that feeds only a quantized conv is fused. Two remain: the stem's (at width
        // 0.25 the first block has 8 -> 8 channels, so a residual also reads it) and the last one
        // (global pooling and the classifier read it).
        XCTAssertEqual(f["relu6", default: 0], 2)
        XCTAssertGreaterThan(f["fused_activation_fake_quantize", default: 0], 0)
    }

    /// A quantized MobileNetV3-small (hardswish in its stem and later blocks) trains identically with and
    /// without the fusion; with it, hardswish outputs that feed only a quantized conv leave the tape.
    func testQuantizedMobileNetV3IsIdenticalWithAndWithoutFusion() throws {
        let (f, u) = try compareFusion(seed: 10, make: { try MobileNetV3(.small, width: 0.5, numClasses: 3, rng: &$0) },
                                       plan: QuantPlan.bits(weight: 4, activation: 4))
        XCTAssertLessThan(f["hardswish", default: 0], u["hardswish", default: 0])
        XCTAssertGreaterThan(f["fused_activation_fake_quantize", default: 0] + f["depthwise_conv2d_quantized_input", default: 0], 0)
    }
}
