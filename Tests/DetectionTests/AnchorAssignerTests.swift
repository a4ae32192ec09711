import XCTest
import Kernels
@testable import Detection

/// The `AnchorAssigner` protocol: the Matcher conformance reproduces `Matcher.match` exactly, and the
/// two assigners are interchangeable behind the protocol.
final class AnchorAssignerTests: XCTestCase {
    /// Random anchors (one to three levels) and ground truths, with and without ignore regions and
    /// low-quality matches: matches equal `match(anchors:gtBoxes:ignoreRegions:)`, quality is the IoU
    /// with the matched box (from `boxIoU`) for positives and 0 elsewhere.
    func testMatcherConformanceEqualsMatchOnRandomCases() throws {
        var rng = RNG(seed: 11)
        var positives = 0, ignored = 0, lowQualityOnly = 0
        for trial in 0..<40 {
            let levels = 1 + rng.nextInt(below: 3)
            let counts = (0..<levels).map { _ in rng.nextInt(below: 400) }
            let total = counts.reduce(0, +)
            let anchors = MultiLevelAnchors(boxes: DetectionBench.boxes(total, rng: &rng, span: 200, minSide: 4, maxSide: 80), countsPerLevel: counts)
            let g = trial % 10 == 0 ? 0 : 1 + rng.nextInt(below: 30)
            let gt = DetectionBench.boxes(g, rng: &rng, span: 200, minSide: 4, maxSide: 120)
            let regions = trial % 3 == 0 ? DetectionBench.boxes(1 + rng.nextInt(below: 3), rng: &rng, span: 200, minSide: 10, maxSide: 60) : XYXYBoxes()
            let matcher = try Matcher(highThreshold: 0.5, lowThreshold: 0.4, allowLowQualityMatches: trial % 2 == 0)
            let target = DetectionTarget(boxes: gt, labels: [Int](repeating: 0, count: g), ignoreRegions: regions)
            let result = matcher.assign(anchors: anchors, target: target)
            let expected = matcher.match(anchors: anchors.boxes, gtBoxes: gt, ignoreRegions: regions)
            XCTAssertEqual(result.matches, expected, "trial \(trial)")
            let iou = boxIoU(gt, anchors.boxes)
            for j in 0..<total {
                let m = expected[j]
                if m >= 0 {
                    XCTAssertEqual(result.quality[j], iou[m * total + j], "trial \(trial), anchor \(j)")
                    if iou[m * total + j] < 0.5 { lowQualityOnly += 1 }
                } else {
                    XCTAssertEqual(result.quality[j], 0, "trial \(trial), anchor \(j)")
                }
            }
            positives += expected.filter { $0 >= 0 }.count
            ignored += expected.filter { $0 == Matcher.betweenThresholds }.count
        }
        // The cases reach every branch: positives, ignored anchors, low-quality matches below 0.5.
        XCTAssertGreaterThan(positives, 100)
        XCTAssertGreaterThan(ignored, 100)
        XCTAssertGreaterThan(lowQualityOnly, 0)
    }

    func testMatcherConformanceWithoutGroundTruthHonoursIgnoreRegions() throws {
        let anchors = MultiLevelAnchors(boxes: XYXYBoxes([[0, 0, 10, 10], [20, 20, 30, 30]]), countsPerLevel: [2])
        let target = DetectionTarget(boxes: XYXYBoxes(), labels: [], ignoreRegions: XYXYBoxes([[18, 18, 40, 40]]))
        XCTAssertEqual(try Matcher().assign(anchors: anchors, target: target),
                       AnchorAssignment(matches: [-1, Matcher.betweenThresholds], quality: [0, 0]))
    }

    /// Both assigners behind `any AnchorAssigner` on the RetinaNet bench anchors: each gives one entry
    /// per anchor, positives only for real boxes with quality in (0, 1], and the ATSS positives are
    /// the ones its own entry point gives.
    func testAssignersAreInterchangeableBehindTheProtocol() throws {
        let generator = try AnchorGenerator(baseSizes: [16, 32, 64, 128, 256], truncateScaledSizes: true)
        let anchors = generator.anchors(featureShapes: [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)], imageHeight: 256, imageWidth: 256)
        XCTAssertEqual(anchors.count, 12_276)
        let target = DetectionTarget(boxes: XYXYBoxes([[30, 40, 62, 60], [100, 100, 164, 150], [200, 10, 216, 26]]), labels: [0, 1, 0])
        let assigners: [any AnchorAssigner] = [try Matcher(), try ATSSAssigner()]
        for assigner in assigners {
            let r = assigner.assign(anchors: anchors, target: target)
            XCTAssertEqual(r.matches.count, anchors.count)
            XCTAssertEqual(Set(r.matches.filter { $0 >= 0 }), [0, 1, 2], "\(type(of: assigner)): every box gets anchors")
            for (m, q) in zip(r.matches, r.quality) {
                if m >= 0 { XCTAssertTrue(q > 0 && q <= 1) } else { XCTAssertEqual(q, 0) }
            }
        }
        let atss = try ATSSAssigner()
        XCTAssertEqual(assigners[1].assign(anchors: anchors, target: target), atss.assign(anchors: anchors, gtBoxes: target.boxes))
    }
}
