import XCTest
@testable import Detection

final class AnchorGeneratorTests: XCTestCase {
    func testAnchorsMatchTorchvisionValuesAndOrder() throws {
        let cases = try Golden.load().anchors
        XCTAssertEqual(cases.map(\.name), ["bench", "exact_scales", "per_level_ratios"])
        for c in cases {
            let gen: AnchorGenerator
            if let base = c.base_sizes, let truncate = c.truncate {
                // The RetinaNet layout: base sizes times 2^(k/3), truncated (torchvision) or exact.
                gen = try AnchorGenerator(baseSizes: base, aspectRatios: c.aspect_ratios[0], truncateScaledSizes: truncate)
                XCTAssertEqual(gen.sizes, c.sizes.map { $0.map(Float.init) }, c.name)
            } else {
                gen = try AnchorGenerator(sizes: c.sizes, aspectRatios: c.aspect_ratios)
            }
            let shapes = c.feature_shapes.map { (height: $0[0], width: $0[1]) }
            let a = gen.anchors(featureShapes: shapes, imageHeight: c.image_size[0], imageWidth: c.image_size[1])
            XCTAssertEqual(a.countsPerLevel, c.counts, c.name)
            XCTAssertEqual(a.boxes.coords, floats(c.anchors), "\(c.name): anchors differ from torchvision's")
            XCTAssertEqual(gen.anchorsPerLocation, zip(c.sizes, c.aspect_ratios).map { $0.count * $1.count }, c.name)
        }
    }

    func testBenchConfigurationCounts() throws {
        let gen = try AnchorGenerator(baseSizes: [16, 32, 64, 128, 256], truncateScaledSizes: true)
        XCTAssertEqual(gen.sizes[0], [16, 20, 25])
        let a = gen.anchors(featureShapes: [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)], imageHeight: 256, imageWidth: 256)
        XCTAssertEqual(a.countsPerLevel, [9216, 2304, 576, 144, 36])
        XCTAssertEqual(a.levelRanges.map(\.count), a.countsPerLevel)
        XCTAssertEqual(a.levelRanges[1], 9216..<11520)
        // Level 1 starts at location (0, 0) with stride 16: first cell anchor is ratio 0.5, size 32.
        XCTAssertEqual(a.level(1)[0].x1, a.boxes[9216].x1)
        XCTAssertEqual(a.level(4).count, 36)
        XCTAssertEqual(a.boxes.count, 12276)
    }

    func testCacheReturnsTheSameAnchorsAndSeparatesKeys() throws {
        let gen = try AnchorGenerator(baseSizes: [32], aspectRatios: [1])
        let a = gen.anchors(featureShapes: [(4, 4)], imageHeight: 64, imageWidth: 64)
        let again = gen.anchors(featureShapes: [(4, 4)], imageHeight: 64, imageWidth: 64)
        XCTAssertEqual(a, again)
        // Another image size with the same grid changes the stride, so it must not hit the cache.
        let wider = gen.anchors(featureShapes: [(4, 4)], imageHeight: 64, imageWidth: 128)
        // Three cell anchors (one ratio, three scales) per location: box 3 is the next location's first.
        XCTAssertEqual(wider.boxes[3].x1 - wider.boxes[0].x1, 32)
        XCTAssertEqual(a.boxes[3].x1 - a.boxes[0].x1, 16)
        // Concurrent use from several threads (the cache is behind a lock).
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            let r = gen.anchors(featureShapes: [(4 + i % 2, 4)], imageHeight: 64, imageWidth: 64)
            XCTAssertEqual(r.count, (4 + i % 2) * 4 * 3)
        }
    }

    func testBadConfigurationsAreTypedErrors() {
        XCTAssertThrowsError(try AnchorGenerator(sizes: [], aspectRatios: [[1]])) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "sizes") }
        XCTAssertThrowsError(try AnchorGenerator(sizes: [[32], [-1]], aspectRatios: [[1]])) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "sizes") }
        XCTAssertThrowsError(try AnchorGenerator(sizes: [[32], [64]], aspectRatios: [[1], [1], [2]])) {
            XCTAssertEqual(($0 as? DetectionConfigError)?.key, "aspect_ratios")
        }
        XCTAssertThrowsError(try AnchorGenerator(baseSizes: [32], aspectRatios: [0])) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "aspect_ratios") }
        XCTAssertThrowsError(try AnchorGenerator(baseSizes: [32], scales: [])) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "scales") }
    }
}
