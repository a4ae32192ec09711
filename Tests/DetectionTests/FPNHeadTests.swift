import XCTest
import Kernels
import Autodiff
import NN
@testable import Detection

final class FPNHeadTests: XCTestCase {
    func testPyramidShapesAndPaths() throws {
        var rng = RNG(seed: 1)
        let fpn = try FPN(inChannels: [8, 12, 16], channels: 16, levels: [3, 4, 5, 6, 7], rng: &rng)
        let c = [Tensor.randn([2, 8, 16, 16], rng: &rng), Tensor.randn([2, 12, 8, 8], rng: &rng), Tensor.randn([2, 16, 4, 4], rng: &rng)]
        let p = fpn.pyramid(c)
        XCTAssertEqual(p.map(\.shape), [[2, 16, 16, 16], [2, 16, 8, 8], [2, 16, 4, 4], [2, 16, 2, 2], [2, 16, 1, 1]])
        let names = Set(fpn.namedParameters().map(\.0))
        XCTAssertTrue(names.isSuperset(of: ["lateral.0.weight", "lateral.2.bias", "output.1.weight", "p6.weight", "p7.bias"]), "\(names.sorted())")
        // torchvision's init: kaiming-uniform a = 1 (bound sqrt(3 / fan_in)), zero bias.
        let w = fpn.output[0].weight
        let bound = (3 / Float(16 * 9)).squareRoot()
        XCTAssertLessThanOrEqual(w.scalars.map(abs).max()!, bound)
        XCTAssertGreaterThan(w.scalars.map(abs).max()!, 0.9 * bound)
        XCTAssertEqual(fpn.lateral[1].bias!.scalars, [Float](repeating: 0, count: 16))
        XCTAssertNil(try FPN(inChannels: [8, 12, 16], channels: 16, levels: [3, 4, 5], rng: &rng).p6)
        XCTAssertThrowsError(try FPN(inChannels: [8, 12, 16], channels: 16, levels: [3, 5], rng: &rng))
        XCTAssertThrowsError(try FPN(inChannels: [8, 12, 16], channels: 16, levels: [4, 5, 6], rng: &rng))
    }

    /// The top-down path: P4's lateral plus P5's inner map upsampled, against a hand computation.
    func testTopDownMergeValues() throws {
        let m = TopDownMerge()
        let lateral = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        let coarser = Tensor(shape: [1, 1, 1, 1], scalars: [10])
        XCTAssertEqual(m.merge(lateral: lateral, coarser: coarser).scalars, [11, 12, 13, 14])
    }

    func testFPNGradcheck() throws {
        var rng = RNG(seed: 2)
        let fpn = try FPN(inChannels: [2, 3, 4], channels: 3, levels: [3, 4, 5, 6], rng: &rng)
        let c = [Tensor.randn([1, 2, 8, 8], rng: &rng), Tensor.randn([1, 3, 4, 4], rng: &rng), Tensor.randn([1, 4, 2, 2], rng: &rng)]
        for t in c { t.requiresGrad = true }
        let r = gradcheck(c + fpn.parameters()) { _ in
            fpn.pyramid(c).enumerated().map { $0.element.sum() * Float($0.offset + 1) }.reduce(Tensor.zeros([]), +)
        }
        XCTAssertTrue(r.passed, "\(r)")
    }

    func testHeadLayoutInitAndGroupNorm() throws {
        var rng = RNG(seed: 3)
        let head = try RetinaHeadBranch(channels: 8, anchorsPerLocation: 9, outputsPerAnchor: 5, convs: 4, groupNorm: false,
                                        priorProbability: 0.01, rng: &rng)
        XCTAssertEqual(head.tower.count, 8)   // 4 x (conv, relu)
        let bias = head.predictor.bias!.scalars
        XCTAssertEqual(bias[0], -Float(log(99.0)), accuracy: 1e-5)
        let std = head.predictor.weight.scalars.map { $0 * $0 }.reduce(0, +) / Float(head.predictor.weight.count)
        XCTAssertEqual(std.squareRoot(), 0.01, accuracy: 0.002)
        let levels = [Tensor.randn([2, 8, 4, 4], rng: &rng), Tensor.randn([2, 8, 2, 2], rng: &rng)]
        let out = head.predict(levels)
        XCTAssertEqual(out.shape, [2, (16 + 4) * 9, 5])
        // Row order: location-major, then anchor; column = output of that anchor (NCHW channel a*5+c).
        let raw = head.predictor(head.tower(levels[0]))
        let (loc, anchor, cls) = (5, 7, 3)
        let y = loc / 4, x = loc % 4
        XCTAssertEqual(out.scalars[((0 * 180) + loc * 9 + anchor) * 5 + cls], raw.scalars[((anchor * 5 + cls) * 4 + y) * 4 + x])
        let gn = try RetinaHeadBranch(channels: 8, anchorsPerLocation: 1, outputsPerAnchor: 4, convs: 2, groupNorm: true,
                                      priorProbability: nil, rng: &rng)
        XCTAssertEqual(gn.tower.count, 6)
        XCTAssertNil((gn.tower[0] as! Conv2d).bias)
        XCTAssertEqual(gn.predictor.bias!.scalars, [0, 0, 0, 0])
    }
}
