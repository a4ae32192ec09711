import XCTest
import Kernels
@testable import Autodiff

/// Every differentiable op is checked against central finite differences (see `gradcheck`).
final class GradcheckTests: XCTestCase {
    var rng = RNG(seed: 2026)

    func t(_ shape: [Int], low: Float = -1, high: Float = 1) -> Tensor {
        Tensor.uniform(shape, low: low, high: high, rng: &rng, requiresGrad: true)
    }

    /// Values kept at least `gap` away from every kink in `kinks`, so finite differences do not straddle one.
    func away(_ shape: [Int], from kinks: [Float], gap: Float = 0.05, low: Float = -2, high: Float = 2) -> Tensor {
        let x = t(shape, low: low, high: high)
        for i in 0..<x.count {
            for k in kinks where abs(x.pointer[i] - k) < gap { x.pointer[i] = k + (x.pointer[i] >= k ? gap : -gap) }
        }
        return x
    }

    func check(_ name: String, _ inputs: [Tensor], eps: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2,
               file: StaticString = #filePath, line: UInt = #line, _ f: @escaping ([Tensor]) -> Tensor) {
        let r = gradcheck(inputs, eps: eps, atol: atol, rtol: rtol, f)
        XCTAssertTrue(r.passed, "\(name): \(r)", file: file, line: line)
        XCTAssertGreaterThan(r.checked, 0, "\(name) checked nothing", file: file, line: line)
    }

    func testUnaryOps() {
        check("neg", [t([3, 4])]) { $0[0].neg() }
        check("exp", [t([3, 4])]) { $0[0].exp() }
        check("log", [t([3, 4], low: 0.5, high: 2)]) { $0[0].log() }
        check("sqrt", [t([3, 4], low: 0.5, high: 2)]) { $0[0].sqrt() }
        check("abs", [away([3, 4], from: [0])]) { $0[0].abs() }
        check("pow 3", [t([3, 4])]) { $0[0].pow(3) }
        check("pow -1.5", [t([5], low: 0.5, high: 2)]) { $0[0].pow(-1.5) }
        check("square", [t([7])]) { $0[0].square() }
        check("clamp", [away([4, 5], from: [-0.5, 0.7])]) { $0[0].clamp(-0.5, 0.7) }
        check("relu", [away([4, 5], from: [0])]) { $0[0].relu() }
        check("relu6", [away([4, 5], from: [0, 6], low: -2, high: 8)]) { $0[0].relu6() }
        check("leaky_relu", [away([4, 5], from: [0])]) { $0[0].leakyRelu(0.1) }
        check("sigmoid", [t([3, 4], low: -4, high: 4)]) { $0[0].sigmoid() }
        check("tanh", [t([3, 4], low: -2, high: 2)]) { $0[0].tanh() }
        check("hardswish", [away([4, 5], from: [-3, 3], low: -5, high: 5)]) { $0[0].hardswish() }
        check("hardsigmoid", [away([4, 5], from: [-3, 3], low: -5, high: 5)]) { $0[0].hardsigmoid() }
        check("silu", [t([3, 4], low: -4, high: 4)]) { $0[0].silu() }
        check("softplus", [t([3, 4], low: -4, high: 4)]) { $0[0].softplus() }
        check("scale/shift", [t([3])]) { ($0[0] * 3 + 2) / 4 - 1 }
        check("scalar minus tensor", [t([3])]) { 1 - $0[0] }
    }

    func testBinaryOpsWithBroadcasting() {
        check("add", [t([2, 3]), t([2, 3])]) { $0[0] + $0[1] }
        check("add bcast", [t([2, 3, 4]), t([3, 1])]) { $0[0] + $0[1] }
        check("sub bcast", [t([1, 3]), t([4, 1])]) { $0[0] - $0[1] }
        check("mul bcast", [t([2, 1, 4]), t([3, 1])]) { $0[0] * $0[1] }
        check("mul self", [t([5])]) { $0[0] * $0[0] }
        check("div bcast", [t([2, 3]), t([3], low: 0.5, high: 2)]) { $0[0] / $0[1] }
        check("div scalar tensor", [t([1]), t([2, 2], low: 0.5, high: 1.5)]) { $0[0] / $0[1] }
        check("channel bias NCHW", [t([2, 3, 2, 2]), t([1, 3, 1, 1])]) { $0[0] * $0[1] + $0[1] }
        check("broadcast_to", [t([3, 1])]) { $0[0].broadcast(to: [2, 3, 4]) }
    }

    func testReductions() {
        check("sum all", [t([3, 4])]) { $0[0].sum() }
        check("sum axis 1", [t([2, 3, 4])]) { $0[0].sum(axes: [1]) }
        check("sum axes 0,2 keep", [t([2, 3, 4])]) { $0[0].sum(axes: [0, 2], keepDims: true) }
        check("mean -1", [t([2, 3, 4])]) { $0[0].mean(axes: [-1]) }
        check("mean all", [t([5, 2])]) { $0[0].mean() }
        // Distinct values so the max is unique and finite differences do not flip it.
        let x = Tensor(shape: [3, 4], scalars: (0..<12).map { Float(($0 * 5) % 12) * 0.3 }, requiresGrad: true)
        check("max axis 1", [x]) { $0[0].max(axes: [1]) }
        check("max axis 0 keep", [x]) { $0[0].max(axes: [0], keepDims: true) }
        check("max all", [x]) { $0[0].max() }
    }

    func testMatmul() {
        check("matmul", [t([3, 4]), t([4, 5])]) { $0[0].matmul($0[1]) }
        check("matmul batched", [t([2, 3, 2]), t([2, 2, 4])]) { $0[0].matmul($0[1]) }
        check("matmul 1x1", [t([1, 1]), t([1, 1])]) { $0[0].matmul($0[1]) }
    }

    func testConv2d() {
        // (input, weight, stride, padding, dilation, groups)
        let cases: [([Int], [Int], (Int, Int), (Int, Int), (Int, Int), Int)] = [
            ([2, 3, 5, 4], [4, 3, 3, 3], (1, 1), (1, 1), (1, 1), 1),
            ([1, 1, 6, 5], [1, 1, 3, 3], (2, 2), (1, 1), (1, 1), 1),     // batch 1, channel 1, stride 2 odd size
            ([1, 4, 5, 7], [6, 2, 3, 3], (2, 2), (1, 1), (1, 1), 2),     // groups 2, non-square
            ([2, 3, 5, 5], [3, 1, 3, 3], (1, 1), (1, 1), (1, 1), 3),     // depthwise
            ([1, 3, 7, 6], [3, 1, 3, 3], (2, 2), (1, 1), (1, 1), 3),     // depthwise stride 2 odd size
            ([1, 2, 6, 6], [2, 1, 3, 3], (1, 1), (2, 2), (2, 2), 2),     // depthwise dilated
            ([2, 4, 3, 3], [5, 4, 1, 1], (1, 1), (0, 0), (1, 1), 1),     // pointwise
            ([1, 2, 5, 6], [3, 2, 2, 3], (1, 2), (0, 1), (2, 1), 1),     // mixed
        ]
        for (xs, ws, s, p, d, g) in cases {
            let x = t(xs), w = t(ws), b = t([ws[0]])
            check("conv2d \(xs) \(ws) s\(s) p\(p) d\(d) g\(g)", [x, w, b]) { $0[0].conv2d($0[1], bias: $0[2], stride: s, padding: p, dilation: d, groups: g) }
        }
        let x = t([1, 2, 4, 4]), w = t([3, 2, 3, 3])
        check("conv2d no bias", [x, w]) { $0[0].conv2d($0[1], padding: (1, 1)) }
    }

    func testPoolingAndUpsampling() {
        // Distinct, well-separated values keep max-pool winners stable under the perturbation.
        var vals = (0..<(2 * 2 * 5 * 6)).map { Float($0) * 0.1 }
        var r = RNG(seed: 3)
        for i in stride(from: vals.count - 1, to: 0, by: -1) { vals.swapAt(i, r.nextInt(below: i + 1)) }
        let x = Tensor(shape: [2, 2, 5, 6], scalars: vals, requiresGrad: true)
        check("max_pool2d 2x2", [x]) { $0[0].maxPool2d(kernel: (2, 2)) }
        check("max_pool2d 3x3 s2 p1", [x]) { $0[0].maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        check("avg_pool2d 2x2", [t([2, 2, 5, 6])]) { $0[0].avgPool2d(kernel: (2, 2)) }
        check("avg_pool2d 3x3 s2 p1", [t([1, 2, 5, 5])]) { $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        check("avg_pool2d exclude pad", [t([1, 2, 5, 5])]) { $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1), countIncludePad: false) }
        check("global_avg_pool2d", [t([2, 3, 3, 4])]) { $0[0].globalAvgPool2d() }
        check("upsample 2x", [t([1, 2, 3, 2])]) { $0[0].upsampleNearest() }
        check("upsample 3x1", [t([2, 1, 2, 3])]) { $0[0].upsampleNearest(scale: (3, 1)) }
    }

    func testShapeOps() {
        check("reshape", [t([2, 6])]) { $0[0].reshaped([3, -1]) * $0[0].reshaped([3, 4]) }
        check("flatten", [t([2, 3, 2])]) { $0[0].flattened() }
        check("permute", [t([2, 3, 4])]) { $0[0].permuted([2, 0, 1]) }
        check("transpose", [t([3, 5])]) { $0[0].transposed() }
        check("concat", [t([2, 3]), t([2, 1]), t([2, 2])]) { Tensor.concat($0, axis: 1) }
        check("concat axis 0", [t([1, 3]), t([2, 3])]) { Tensor.concat($0, axis: 0) }
        check("slice", [t([4, 5])]) { $0[0].slice(axis: 1, start: 1, end: 4) }
        check("split", [t([3, 5])]) { let p = $0[0].split(axis: 1, sizes: [2, 3]); return p[0].sum(axes: [1]) * p[1].mean(axes: [1]) }
        check("pad", [t([2, 3])]) { $0[0].padded([(1, 0), (2, 1)], value: 0.5) }
        check("index_select repeats", [t([4, 3])]) { $0[0].indexSelect(axis: 0, indices: [3, 0, 3, 1]) }
        check("index_select axis 1", [t([2, 5, 2])]) { $0[0].indexSelect(axis: 1, indices: [4, 4, 2]) }
        check("unsqueeze/squeeze", [t([3])]) { $0[0].unsqueezed(0).unsqueezed(-1).squeezed(0) }
        let cond = Tensor(shape: [2, 3], scalars: [1, 0, 1, 0, 0, 1])
        check("where", [t([2, 3]), t([2, 3])]) { Tensor.select(cond, $0[0], $0[1]) }
    }

    func testCompositeLosses() {
        check("softmax", [t([3, 5], low: -3, high: 3)]) { $0[0].softmax(axis: 1) }
        check("softmax axis 0", [t([3, 2])]) { $0[0].softmax(axis: 0) }
        check("log_softmax", [t([3, 5], low: -3, high: 3)]) { $0[0].logSoftmax() }
        check("cross_entropy", [t([4, 5], low: -3, high: 3)]) { Loss.crossEntropy($0[0], targets: [1, 0, 4, 1]) }
        let y = Tensor(shape: [2, 3], scalars: [0, 1, 0.5, 1, 0, 0.2])
        check("bce_with_logits", [t([2, 3], low: -5, high: 5)]) { Loss.bceWithLogits($0[0], targets: y) }
        let target = Tensor(shape: [2, 4], scalars: [0, 0, 0, 0, 0, 0, 0, 0])
        check("smooth_l1", [away([2, 4], from: [-0.5, 0, 0.5])]) { Loss.smoothL1($0[0], target, beta: 0.5) }
        check("smooth_l1 sum", [away([2, 4], from: [-1, 0, 1])]) { Loss.smoothL1($0[0], target, reduction: .sum) }
        let teacher = Tensor(shape: [3, 4], scalars: [2, 0, -1, 0.5, -0.5, 1.5, 0.25, 0, 1, 1, -2, 3])
        check("distillation T=2", [t([3, 4], low: -3, high: 3)]) { Loss.distillation(student: $0[0], teacher: teacher, temperature: 2) }
        check("distillation T=1", [t([3, 4], low: -3, high: 3)]) { Loss.distillation(student: $0[0], teacher: teacher) }
    }

    /// PyTorch 2.15: s = [[1,-2,0.5],[0.3,0.2,-1.5]] (requires_grad), t = [[2,0,-1],[-0.5,1.5,0.25]], T = 2;
    /// F.kl_div(F.log_softmax(s/T, 1), F.softmax(t/T, 1), reduction="batchmean") * T * T, then backward.
    func testDistillationMatchesPyTorch() {
        let s = Tensor(shape: [2, 3], scalars: [1, -2, 0.5, 0.3, 0.2, -1.5], requiresGrad: true)
        let t = Tensor(shape: [2, 3], scalars: [2, 0, -1, -0.5, 1.5, 0.25])
        let l = Loss.distillation(student: s, teacher: t, temperature: 2)
        XCTAssertEqual(l.item, 0.5891765356063843, accuracy: 1e-6)
        l.backward()
        let expected: [Float] = [-0.12901398539543152, -0.11976644396781921, 0.24878038465976715,
                                 0.23082317411899567, -0.1220075935125351, -0.10881552845239639]
        for (g, e) in zip(s.grad!.scalars, expected) { XCTAssertEqual(g, e, accuracy: 1e-6) }
        // Equal distributions: zero loss and zero gradient.
        let same = Tensor(shape: [2, 3], scalars: [2, 0, -1, -0.5, 1.5, 0.25], requiresGrad: true)
        let z = Loss.distillation(student: same, teacher: t, temperature: 3)
        XCTAssertEqual(z.item, 0, accuracy: 1e-6)
    }

    func testDeepGraphDoesNotOverflowStack() {
        let x = Tensor(shape: [1], scalars: [0.5], requiresGrad: true)
        var y = x
        for _ in 0..<50_000 { y = y * 1.0 + 0 }
        y.sum().backward()
        XCTAssertEqual(x.grad!.item, 1, accuracy: 1e-5)
    }
}
