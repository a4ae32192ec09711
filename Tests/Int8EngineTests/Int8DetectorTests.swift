import XCTest
import Kernels
import Autodiff
import NN
import Quant
import Detection
@testable import Int8Engine

/// RetinaNet on the int8 engine: backbone C3-C5, FPN (laterals, upsampling, quantized top-down adds,
/// P6/P7), both head branches on every level (their quantizers run once per level), dense rows.
final class Int8DetectorTests: XCTestCase {
    func retinaNet(levels: [Int], groupNorm: Bool, seed: UInt64) throws -> RetinaNet {
        var rng = RNG(seed: seed)
        let backbone = try MobileNetV2(width: 0.25, numClasses: nil, rng: &rng)
        var c = RetinaNetConfig(numClasses: 3)
        c.fpnChannels = 32; c.levels = levels; c.headConvs = 2; c.groupNorm = groupNorm
        c.anchorSizes = Array([16, 32, 64, 128, 256].prefix(levels.count))
        return try RetinaNet(backbone: backbone, config: c, rng: &rng)
    }

    func testRetinaNetCodesAndDetectionsAgree() throws {
        for (levels, gn) in [([3, 4, 5], false), ([3, 4, 5, 6, 7], true)] {
            let m = try retinaNet(levels: levels, groupNorm: gn, seed: 21)
            _ = try preparedModel(m, plan: .bits(weight: 8, activation: 8), inputs: [randomBatch(2, 64, seed: 1)])
            let program = try Int8Engine.compile(m)
            let x = randomBatch(2, 64, seed: 7)
            let (dense, c) = Int8Comparison.measure(program, reference: m, input: x)
            let fake = noGrad { m(x) }
            XCTAssertEqual(dense.shape, fake.shape)
            XCTAssertTrue(c.layerwise.unmatched.isEmpty, "\(c.layerwise.unmatched)")
            // Each head quantizer ran once per level in both.
            XCTAssertGreaterThanOrEqual(c.layerwise.fraction, 0.999, "levels \(levels): \(c.layerwise.perDifference)")
            XCTAssertLessThanOrEqual(c.layerwise.maxDifference, 1)
            let range = fake.scalars.max()! - fake.scalars.min()!
            XCTAssertLessThan(zip(dense.scalars, fake.scalars).map { abs($0 - $1) }.max()!, 0.05 * range)
            // The dense path gives the detector's own detections from the same outputs.
            XCTAssertEqual(m.detections(dense: fake, imageHeight: 64, imageWidth: 64, imageSizes: nil), m.detect(x), "levels \(levels)")
            let d = try Int8Engine.module(for: m)
            XCTAssertEqual((d as? any Detector)?.detect(x).count, 2)
        }
    }

    func testDecoupledHeadIsNamedAsUnsupported() throws {
        var rng = RNG(seed: 3)
        let backbone = try MobileNetV2(width: 0.25, numClasses: nil, rng: &rng)
        var c = RetinaNetConfig(numClasses: 3)
        c.fpnChannels = 16; c.levels = [3, 4, 5]; c.headConvs = 1; c.anchorSizes = [16, 32, 64]
        let m = try DecoupledRetinaNet(backbone: backbone, config: DecoupledConfig(base: c), rng: &rng)
        _ = try preparedModel(m, plan: .bits(weight: 8, activation: 8), inputs: [randomBatch(2, 64, seed: 1)])
        XCTAssertThrowsError(try Int8Engine.compile(m)) { e in XCTAssertTrue("\(e)".contains("DecoupledRetinaNet has no int8 lowering"), "\(e)") }
    }
}
