import XCTest
import Foundation
import Dispatch
import Kernels
import Autodiff
import Detection

/// torchvision's RoIAlign, MultiScaleRoIAlign and LevelMapper (scripts/golden/roi_align.py ->
/// Fixtures/roi_align.json).
struct RoIAlignGolden: Decodable {
    struct Single: Decodable {
        let aligned: Bool; let sampling_ratio: Int; let output_size: [Int]; let spatial_scale: Double; let shape: [Int]
        let features: [Double]; let rois: [Double]; let upstream: [Double]; let output: [Double]; let grad_features: [Double]
    }
    struct MultiScale: Decodable {
        let levels: [Int]; let image_size: [Int]; let image_shapes: [[Int]]; let output_size: [Int]; let sampling_ratio: Int
        let canonical_scale: Double; let canonical_level: Int; let shapes: [[Int]]; let features: [[Double]]
        let boxes: [[Double]]; let scales: [Double]; let upstream: [Double]; let output: [Double]; let grad_features: [[Double]?]
    }
    struct Mapper: Decodable {
        let k_min: Int; let k_max: Int; let canonical_scale: Double; let canonical_level: Int; let boxes: [Double]; let levels: [Int]
    }
    let torch: String; let torchvision: String
    let roi_align: [Single]; let multiscale: [MultiScale]; let level_mapper: [Mapper]

    private static let loaded: Result<RoIAlignGolden, Error> = Result {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/roi_align.json")
        return try JSONDecoder().decode(RoIAlignGolden.self, from: Data(contentsOf: url))
    }

    static func load() throws -> RoIAlignGolden { try loaded.get() }
}

/// Outputs and feature gradients are held to `goldenTolerance` (1e-5) relative error, the denominator
/// floored at 1% of the case's largest magnitude (`relativeError`): the kernel repeats torchvision's
/// Float32 operations in its order, so agreement is expected to the bit, and anything looser than a
/// few ulps would be a formula slip (a 0.5 shift, a wrong clamp, a divisor without the out-of-map
/// samples) which is orders of magnitude larger.
final class RoIAlignTests: XCTestCase {
    private var savedThreads = Parallel.threads
    override func setUp() { savedThreads = Parallel.threads }
    override func tearDown() { Parallel.setThreads(savedThreads) }

    func testSingleLevelMatchesTorchvisionForwardAndFeatureGradient() throws {
        let golden = try RoIAlignGolden.load()
        XCTAssertGreaterThanOrEqual(golden.roi_align.count, 24)
        var worst: Float = 0, exact = 0, total = 0
        for (i, c) in golden.roi_align.enumerated() {
            let x = Tensor(shape: c.shape, scalars: floats(c.features), requiresGrad: true)
            let y = x.roiAlign(rois: floats(c.rois), outputSize: (c.output_size[0], c.output_size[1]),
                               spatialScale: Float(c.spatial_scale), samplingRatio: c.sampling_ratio, aligned: c.aligned)
            let label = "case \(i) (aligned \(c.aligned), sampling \(c.sampling_ratio), output \(c.output_size), scale \(c.spatial_scale))"
            XCTAssertEqual(y.shape, [c.rois.count / 5, c.shape[1], c.output_size[0], c.output_size[1]], label)
            let want = floats(c.output)
            let e = relativeError(y.scalars, want)
            XCTAssertLessThanOrEqual(e, goldenTolerance, "\(label): forward")
            y.backward(Tensor(shape: y.shape, scalars: floats(c.upstream)))
            let wantGrad = floats(c.grad_features)
            let eg = relativeError(x.grad?.scalars ?? [], wantGrad)
            XCTAssertLessThanOrEqual(eg, goldenTolerance, "\(label): feature gradient")
            worst = max(worst, e, eg)
            exact += zip(y.scalars, want).filter { $0 == $1 }.count + zip(x.grad!.scalars, wantGrad).filter { $0 == $1 }.count
            total += want.count + wantGrad.count
        }
        print("RoIAlign vs torchvision \(golden.torchvision): \(golden.roi_align.count) cases, worst relative error \(worst), \(exact)/\(total) values bit-identical")
    }

    func testMultiScaleMatchesTorchvisionForwardAndLevelGradients() throws {
        let golden = try RoIAlignGolden.load()
        XCTAssertGreaterThanOrEqual(golden.multiscale.count, 6)
        var worst: Float = 0
        for (i, c) in golden.multiscale.enumerated() {
            let label = "multiscale case \(i) (levels \(c.levels), canonical \(c.canonical_scale)/\(c.canonical_level))"
            let features = zip(c.shapes, c.features).map { Tensor(shape: $0, scalars: floats($1), requiresGrad: true) }
            let boxes = c.boxes.map { XYXYBoxes(coords: floats($0)) }
            let pooler = try MultiScaleRoIAlign(outputSize: (c.output_size[0], c.output_size[1]), samplingRatio: c.sampling_ratio,
                                                canonicalScale: Float(c.canonical_scale), canonicalLevel: c.canonical_level)
            let imageSize = (c.image_shapes.map { $0[0] }.max()!, c.image_shapes.map { $0[1] }.max()!)
            let (scales, mapper) = try pooler.levels(featureHeights: c.shapes.map { $0[2] }, imageHeight: imageSize.0)
            XCTAssertEqual(scales, c.scales.map { Float($0) }, label)
            XCTAssertEqual(mapper.kMin, c.levels.first, label)
            XCTAssertEqual(mapper.kMax, c.levels.last, label)
            let used = Set(boxes.flatMap { mapper.levelIndices($0) }).subtracting([RoILevelMapper.noLevel])
            if c.canonical_scale == 224 && c.canonical_level == 4 && c.levels[0] >= 3 {
                XCTAssertEqual(used, [0], "\(label): torchvision's defaults send every box under 224 px to P3")
            } else {
                XCTAssertGreaterThanOrEqual(used.count, 2, "\(label): the case should spread boxes over levels")
            }

            let y = try pooler(features, boxes: boxes, imageSize: imageSize)
            XCTAssertEqual(y.shape, [boxes.reduce(0) { $0 + $1.count }, c.shapes[0][1], c.output_size[0], c.output_size[1]], label)
            let e = relativeError(y.scalars, floats(c.output))
            XCTAssertLessThanOrEqual(e, goldenTolerance, "\(label): forward")
            y.backward(Tensor(shape: y.shape, scalars: floats(c.upstream)))
            for (l, (x, want)) in zip(features, c.grad_features).enumerated() {
                if let want {
                    let eg = relativeError(x.grad?.scalars ?? [Float](repeating: 0, count: x.count), floats(want))
                    XCTAssertLessThanOrEqual(eg, goldenTolerance, "\(label): gradient of level \(c.levels[l])")
                    worst = max(worst, eg)
                } else {
                    XCTAssertTrue(x.grad == nil || x.grad!.scalars.allSatisfy { $0 == 0 }, "\(label): level \(c.levels[l]) pooled nothing")
                }
            }
            worst = max(worst, e)
        }
        print("MultiScaleRoIAlign vs torchvision: \(golden.multiscale.count) cases, worst relative error \(worst)")
    }

    /// torchvision leaves the row of a box with negative area (NaN level) zero; the fixture's last
    /// multiscale case has one, and its gradient must not reach any level.
    func testInvertedBoxGetsAZeroRowAsInTorchvision() throws {
        let mapper = try RoILevelMapper(kMin: 3, kMax: 5)
        XCTAssertEqual(mapper.levelIndex(x1: 60, y1: 50, x2: 40, y2: 90), RoILevelMapper.noLevel)
        XCTAssertEqual(mapper.levelIndex(x1: 60, y1: 90, x2: 40, y2: 50), 0, "both sides negative: positive area")
        XCTAssertEqual(mapper.levelIndex(x1: 5, y1: 5, x2: 5, y2: 40), 0, "zero area: log2(0) = -inf, clamped to kMin")
        var rng = RNG(seed: 5)
        let features = [32, 16, 8].map { Tensor.randn([1, 2, $0, $0], rng: &rng, requiresGrad: true) }
        let boxes = [XYXYBoxes([[60, 50, 40, 90], [10, 10, 50, 60]])]
        let y = try MultiScaleRoIAlign(outputSize: (2, 2), samplingRatio: 2)(features, boxes: boxes, imageSize: (256, 256))
        XCTAssertEqual(Array(y.scalars[0..<8]), [Float](repeating: 0, count: 8))
        XCTAssertTrue(y.scalars[8...].contains { $0 != 0 })
    }

    func testLevelMapperMatchesTorchvision() throws {
        let golden = try RoIAlignGolden.load()
        for c in golden.level_mapper {
            let mapper = try RoILevelMapper(kMin: c.k_min, kMax: c.k_max, canonicalScale: Float(c.canonical_scale), canonicalLevel: c.canonical_level)
            XCTAssertEqual(mapper.levelIndices(XYXYBoxes(coords: floats(c.boxes))), c.levels,
                           "LevelMapper(\(c.k_min), \(c.k_max), \(c.canonical_scale), \(c.canonical_level))")
        }
        // The canonical box goes to the canonical level, and the eps keeps exact powers of two on theirs.
        let m = try RoILevelMapper(kMin: 2, kMax: 6)
        XCTAssertEqual(m.levelIndex(x1: 0, y1: 0, x2: 224, y2: 224), 4 - 2)
        XCTAssertEqual(m.levelIndex(x1: 0, y1: 0, x2: 112, y2: 112), 3 - 2)
        XCTAssertEqual(m.levelIndex(x1: 0, y1: 0, x2: 111.9, y2: 111.9), 2 - 2)
        XCTAssertEqual(m.levelIndex(x1: 0, y1: 0, x2: 5000, y2: 5000), 6 - 2)
    }

    func testScaleInferenceAsTorchvision() {
        XCTAssertEqual(MultiScaleRoIAlign.inferScale(featureSide: 32, imageSide: 256), 0.125)
        XCTAssertEqual(MultiScaleRoIAlign.inferScale(featureSide: 25, imageSide: 200), 0.125)
        // 100 / 800 -> 1/8; 13 / 100 rounds log2(0.13) = -2.94 to -3.
        XCTAssertEqual(MultiScaleRoIAlign.inferScale(featureSide: 13, imageSide: 100), 0.125)
        XCTAssertEqual(MultiScaleRoIAlign.inferScale(featureSide: 7, imageSide: 100), 0.0625)
    }

    func testBadConfigurationThrowsNamedErrors() throws {
        func key(_ body: () throws -> Any) -> String? {
            do { _ = try body(); return nil } catch let e as DetectionConfigError { return e.key } catch { return "\(error)" }
        }
        XCTAssertEqual(key { try MultiScaleRoIAlign(outputSize: (0, 7), samplingRatio: 2) }, "output_size")
        XCTAssertEqual(key { try MultiScaleRoIAlign(outputSize: (7, -1), samplingRatio: 2) }, "output_size")
        XCTAssertEqual(key { try MultiScaleRoIAlign(outputSize: (7, 7), samplingRatio: 2, canonicalScale: 0) }, "canonical_scale")
        XCTAssertEqual(key { try MultiScaleRoIAlign(outputSize: (7, 7), samplingRatio: 2, canonicalScale: -32) }, "canonical_scale")
        XCTAssertEqual(key { try MultiScaleRoIAlign(outputSize: (7, 7), samplingRatio: 2, canonicalScale: .nan) }, "canonical_scale")
        XCTAssertEqual(key { try RoILevelMapper(kMin: 5, kMax: 3) }, "levels")
        XCTAssertEqual(key { try RoILevelMapper(kMin: 3, kMax: 5, eps: -1) }, "eps")
        XCTAssertNil(key { try MultiScaleRoIAlign(outputSize: (7, 7), samplingRatio: 0, canonicalScale: 32, canonicalLevel: 3) })
        let pooler = try MultiScaleRoIAlign(outputSize: (7, 7), samplingRatio: 2)
        // P3 and P5 without P4: torchvision would pool P4's boxes as zeros.
        XCTAssertEqual(key { try pooler.levels(featureHeights: [32, 8], imageHeight: 256) }, "levels")
        XCTAssertEqual(key { try pooler.levels(featureHeights: [8, 16], imageHeight: 256) }, "levels")
        XCTAssertEqual(key { try pooler.levels(featureHeights: [], imageHeight: 256) }, "levels")
        XCTAssertEqual(key { try pooler.levels(featureHeights: [32], imageHeight: 0) }, "image_size")
        XCTAssertEqual(key { try pooler([], boxes: [], imageSize: (256, 256)) }, "levels")
        let lv = try pooler.levels(featureHeights: [32, 16, 8], imageHeight: 256)
        XCTAssertEqual(lv.scales, [0.125, 0.0625, 0.03125])
        XCTAssertEqual([lv.mapper.kMin, lv.mapper.kMax], [3, 5])
    }

    func testNoRoIsGiveAnEmptyBatch() throws {
        var rng = RNG(seed: 3)
        let x = Tensor.randn([2, 3, 8, 8], rng: &rng, requiresGrad: true)
        let y = x.roiAlign(rois: [], outputSize: (7, 5), spatialScale: 0.5, samplingRatio: 0, aligned: true)
        XCTAssertEqual(y.shape, [0, 3, 7, 5])
        y.backward(Tensor.zeros([0, 3, 7, 5]))
        XCTAssertEqual(x.grad?.scalars, [Float](repeating: 0, count: x.count))
        let features = [16, 8].map { Tensor.randn([2, 3, $0, $0], rng: &rng) }
        let pooled = try MultiScaleRoIAlign(outputSize: (7, 7), samplingRatio: 2)(features, boxes: [XYXYBoxes(), XYXYBoxes()], imageSize: (128, 128))
        XCTAssertEqual(pooled.shape, [0, 3, 7, 7])
    }

    /// Forward blocks of (RoI, channel) pairs and backward blocks of channels split differently over
    /// threads; neither may change a bit.
    func testSameBitsOnOneAndTwoThreads() {
        var rng = RNG(seed: 11)
        let x0 = Tensor.randn([3, 16, 20, 24], rng: &rng)
        var rois: [Float] = []
        for r in 0..<37 {
            var u = [Float](repeating: 0, count: 4)
            rng.fillUniform(&u, count: 4)
            let x1 = u[0] * 180 - 20, y1 = u[1] * 150 - 20
            rois += [Float(r % 3), x1, y1, x1 + 4 + u[2] * 120, y1 + 4 + u[3] * 100]
        }
        let g = Tensor.randn([37, 16, 7, 7], rng: &rng)
        var runs: [([Float], [Float])] = []
        for t in [1, 2] {
            Parallel.setThreads(t)
            for sampling in [0, 2] {
                let x = Tensor(shape: x0.shape, scalars: x0.scalars, requiresGrad: true)
                let y = x.roiAlign(rois: rois, outputSize: (7, 7), spatialScale: 0.125, samplingRatio: sampling, aligned: sampling == 0)
                y.backward(g)
                runs.append((y.scalars, x.grad!.scalars))
            }
        }
        XCTAssertEqual(runs[0].0, runs[2].0); XCTAssertEqual(runs[0].1, runs[2].1)
        XCTAssertEqual(runs[1].0, runs[3].0); XCTAssertEqual(runs[1].1, runs[3].1)
    }
}
