import XCTest
import Foundation
import Kernels
@testable import Detection

/// mmdetection's ATSS assignment (scripts/golden/atss.py -> Fixtures/atss.json).
private struct ATSSGolden: Decodable {
    struct Case: Decodable {
        let name: String; let topk: Int; let counts: [Int]; let anchors: [Double]; let gt: [Double]
        /// null where torch's threshold is NaN (a single candidate; JSON has no NaN).
        let matches: [Int]; let quality: [Double]; let thresholds: [Double?]
    }
    let torch: String; let mmdet_atss_commit: String
    let cases: [Case]

    private static let loaded: Result<ATSSGolden, Error> = Result {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/atss.json")
        return try JSONDecoder().decode(ATSSGolden.self, from: Data(contentsOf: url))
    }
    static func load() throws -> ATSSGolden { try loaded.get() }
}

/// NaN-aware closeness (the single-candidate case's thresholds are NaN on both sides).
private func close(_ a: Float, _ b: Float, _ tolerance: Float) -> Bool { (a.isNaN && b.isNaN) || abs(a - b) <= tolerance }

final class ATSSAssignerTests: XCTestCase {
    private func anchors(_ c: ATSSGolden.Case) -> MultiLevelAnchors {
        MultiLevelAnchors(boxes: XYXYBoxes(coords: floats(c.anchors)), countsPerLevel: c.counts)
    }

    func testFixturesMatchMMDetection() throws {
        let golden = try ATSSGolden.load()
        XCTAssertGreaterThanOrEqual(golden.cases.count, 20)
        var positives = 0
        for c in golden.cases {
            let a = anchors(c), gt = XYXYBoxes(coords: floats(c.gt))
            let assigner = try ATSSAssigner(topk: c.topk)
            let (result, thresholds) = assigner.assignWithThresholds(anchors: a, gtBoxes: gt)
            if let j = result.matches.indices.first(where: { result.matches[$0] != c.matches[$0] }) {
                XCTFail("\(c.name): anchor \(j) assigned \(result.matches[j]), mmdetection \(c.matches[j])")
            }
            XCTAssertEqual(result.matches.count, c.matches.count, c.name)
            XCTAssertEqual(result.quality.count, c.quality.count, c.name)
            for (j, (q, e)) in zip(result.quality, floats(c.quality)).enumerated() where !close(q, e, 1e-6) {
                XCTFail("\(c.name): anchor \(j) quality \(q), mmdetection \(e)"); break
            }
            XCTAssertEqual(thresholds.count, c.thresholds.count, c.name)
            for (k, (t, e)) in zip(thresholds, c.thresholds.map { Float($0 ?? .nan) }).enumerated() where !close(t, e, 1e-6) {
                XCTFail("\(c.name): gt \(k) threshold \(t), mmdetection \(e)"); break
            }
            // The protocol entry point gives the same result when there are no ignore regions.
            let target = DetectionTarget(boxes: gt, labels: [Int](repeating: 0, count: gt.count))
            XCTAssertEqual(assigner.assign(anchors: a, target: target), result, c.name)
            positives += c.matches.filter { $0 >= 0 }.count
        }
        XCTAssertGreaterThan(positives, 500)
        // The single-candidate case: torch.std of one value is NaN, so nothing is positive.
        let single = golden.cases.first { $0.name == "single_candidate" }!
        XCTAssertTrue(single.matches.allSatisfy { $0 == Matcher.belowLowThreshold })
    }

    /// A 3 x 3 grid of 24 px anchors at stride 16 (centres 16, 32, 48) and a 40 px box centred on the
    /// middle one: every centre lies inside the box, so only the threshold decides. IoUs: middle
    /// 576/1600 = 0.36, sides 384/1792 = 0.214, corners 256/1920 = 0.133; mean + std = 0.269, so only
    /// the middle anchor is positive though all nine are candidates inside the box.
    private func grid3x3() -> MultiLevelAnchors {
        var c: [Float] = []
        for y in [16, 32, 48] as [Float] { for x in [16, 32, 48] as [Float] { c += [x - 12, y - 12, x + 12, y + 12] } }
        return MultiLevelAnchors(boxes: XYXYBoxes(coords: c), countsPerLevel: [9])
    }

    func testOnlyCandidatesAtOrAboveMeanPlusStdArePositive() throws {
        let a = grid3x3(), gt = XYXYBoxes([[12, 12, 52, 52]])
        let (r, thresholds) = try ATSSAssigner().assignWithThresholds(anchors: a, gtBoxes: gt)
        XCTAssertEqual(r.matches, [-1, -1, -1, -1, 0, -1, -1, -1, -1])
        XCTAssertEqual(r.quality[4], 0.36, accuracy: 1e-7)
        XCTAssertEqual(r.quality.enumerated().filter { $0.offset != 4 }.map { $0.element }, [Float](repeating: 0, count: 8))
        let iou = boxIoU(gt, a.boxes)
        let sorted = iou.sorted(by: >)
        XCTAssertTrue(sorted[1] < thresholds[0] && thresholds[0] <= sorted[0], "threshold \(thresholds[0]) between \(sorted[1]) and \(sorted[0])")
        // The formula by hand: mean + unbiased std of the nine IoUs.
        let mean = iou.reduce(0, +) / 9
        let std = (iou.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 8).squareRoot()
        XCTAssertEqual(thresholds[0], mean + std, accuracy: 1e-6)
        XCTAssertEqual(thresholds[0], 0.2686, accuracy: 1e-3)
    }

    func testAnchorClaimedByTwoBoxesGoesToTheHigherIoUAndTheFirstOnEqualIoU() throws {
        let a = grid3x3(), atss = try ATSSAssigner()
        let large: [Float] = [12, 12, 52, 52]   // IoU 0.36 with the middle anchor, which is its only positive
        let exact: [Float] = [20, 20, 44, 44]   // the middle anchor itself: IoU 1, also its only positive
        let one = atss.assign(anchors: a, gtBoxes: XYXYBoxes([large, exact]))
        XCTAssertEqual(one.matches[4], 1)
        XCTAssertEqual(one.quality[4], 1)
        XCTAssertEqual(one.matches.filter { $0 >= 0 }.count, 1)
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: XYXYBoxes([exact, large])).matches[4], 0)
        // Identical boxes: equal IoUs, the first wins (torch's max over ground truths).
        let twins = atss.assign(anchors: a, gtBoxes: XYXYBoxes([large, large]))
        XCTAssertEqual(twins.matches[4], 0)
        XCTAssertEqual(twins.quality[4], 0.36, accuracy: 1e-7)
    }

    /// mmdetection's centre test is `min(l, t, r, b) > 0.01` in Float32: a centre exactly 0.01 px
    /// (Float32) inside the left or right side is not inside; one ulp further it is. Anchor 0 is
    /// centred at the origin; the three far anchors have IoU 0, which holds the threshold at
    /// 0.75 x anchor 0's IoU (mean v/4 + std v/2), so the centre test alone decides.
    func testCentreMustBeMoreThanOneHundredthOfAPixelInside() throws {
        let a = MultiLevelAnchors(boxes: XYXYBoxes([[-8, -8, 8, 8], [200, 200, 216, 216], [300, 0, 316, 16], [0, 300, 16, 316]]),
                                  countsPerLevel: [4])
        let atss = try ATSSAssigner()
        let m: Float = 0.01
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: XYXYBoxes([[-m, -10, 10, 10]])).matches, [-1, -1, -1, -1])
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: XYXYBoxes([[(-m).nextDown, -10, 10, 10]])).matches, [0, -1, -1, -1])
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: XYXYBoxes([[-10, -10, m, 10]])).matches, [-1, -1, -1, -1])
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: XYXYBoxes([[-10, -10, m.nextUp, 10]])).matches, [0, -1, -1, -1])
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: XYXYBoxes([[-10, -m, 10, 10]])).matches, [-1, -1, -1, -1])
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: XYXYBoxes([[-10, -10, 10, m]])).matches, [-1, -1, -1, -1])
    }

    /// With one candidate in all, torch's unbiased std is 0/0 = NaN: even a perfect anchor is negative.
    func testASingleCandidateGivesNoPositive() throws {
        let a = MultiLevelAnchors(boxes: XYXYBoxes([[0, 0, 16, 16], [100, 100, 116, 116]]), countsPerLevel: [2])
        let (r, thresholds) = try ATSSAssigner(topk: 1).assignWithThresholds(anchors: a, gtBoxes: XYXYBoxes([[0, 0, 16, 16]]))
        XCTAssertEqual(r.matches, [-1, -1])
        XCTAssertTrue(thresholds[0].isNaN)
        // Two candidates (two levels): IoUs 1 and 0 give 0.5 + 0.707 > 1, still nothing; with two more
        // far anchors in one four-anchor level, IoUs 1, 0, 0, 0 give 0.25 + 0.5 and it is positive.
        let two = MultiLevelAnchors(boxes: a.boxes, countsPerLevel: [1, 1])
        XCTAssertEqual(try ATSSAssigner(topk: 1).assign(anchors: two, gtBoxes: XYXYBoxes([[0, 0, 16, 16]])).matches, [-1, -1])
        let three = MultiLevelAnchors(boxes: a.boxes + XYXYBoxes([[200, 0, 216, 16], [0, 200, 16, 216]]), countsPerLevel: [4])
        XCTAssertEqual(try ATSSAssigner().assign(anchors: three, gtBoxes: XYXYBoxes([[0, 0, 16, 16]])).matches, [0, -1, -1, -1])
    }

    func testEqualDistancesKeepTheLowerIndex() {
        // Two levels of two anchors, each pair equally distant from (10, 10): with k 1 the lower index of
        // each pair is kept (mmdetection's torch.topk leaves the choice undefined).
        var d = [Float](repeating: 0, count: 1), idx = [Int](repeating: 0, count: 1)
        let centres: [Float] = [20, 0, 10, 10], centresY: [Float] = [10, 10, 20, 0]
        centres.withUnsafeBufferPointer { cx in
            centresY.withUnsafeBufferPointer { cy in
                ATSSAssigner.nearest(1, in: 0..<2, cx: cx.baseAddress!, cy: cy.baseAddress!, x: 10, y: 10, dist: &d, index: &idx)
                XCTAssertEqual(idx, [0])
                ATSSAssigner.nearest(1, in: 2..<4, cx: cx.baseAddress!, cy: cy.baseAddress!, x: 10, y: 10, dist: &d, index: &idx)
                XCTAssertEqual(idx, [2])
            }
        }
    }

    /// The partial selection against a full sort by (squared distance, index), over level sizes that
    /// exercise the eight-wide loop and its scalar tail, with many exact ties (integer centres).
    func testNearestEqualsAStableFullSort() {
        var rng = RNG(seed: 7)
        for n in [1, 5, 8, 9, 17, 64, 333, 1000] {
            let cx = (0..<n).map { _ in Float(rng.nextInt(below: 20)) }, cy = (0..<n).map { _ in Float(rng.nextInt(below: 20)) }
            for k in Set([1, 3, 9, n].filter { $0 <= n }) {
                let x = Float(rng.nextInt(below: 40)) / 2, y = Float(rng.nextInt(below: 40)) / 2
                var d = [Float](repeating: 0, count: k), idx = [Int](repeating: 0, count: k)
                cx.withUnsafeBufferPointer { px in
                    cy.withUnsafeBufferPointer { py in
                        ATSSAssigner.nearest(k, in: 0..<n, cx: px.baseAddress!, cy: py.baseAddress!, x: x, y: y, dist: &d, index: &idx)
                    }
                }
                let squared = (0..<n).map { j -> Float in let dx = cx[j] - x, dy = cy[j] - y; return dx * dx + dy * dy }
                let expected = (0..<n).sorted { (squared[$0], $0) < (squared[$1], $1) }.prefix(k)
                XCTAssertEqual(idx, Array(expected), "n \(n), k \(k)")
                XCTAssertEqual(d, expected.map { squared[$0] }, "n \(n), k \(k)")
            }
        }
    }

    func testNoGroundTruthIsAllNegativeExceptIgnoreRegions() throws {
        let a = grid3x3(), atss = try ATSSAssigner()
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: XYXYBoxes()), .allNegative(9))
        // The region covers the left column fully and the middle column by a third (IoF 1/3 < 0.5).
        let r = atss.assign(anchors: a, gtBoxes: XYXYBoxes(), ignoreRegions: XYXYBoxes([[0, 0, 28, 64]]))
        XCTAssertEqual(r.matches, [-2, -1, -1, -2, -1, -1, -2, -1, -1])
        XCTAssertEqual(r.quality, [Float](repeating: 0, count: 9))
        let empty = MultiLevelAnchors(boxes: XYXYBoxes(), countsPerLevel: [0])
        XCTAssertEqual(atss.assign(anchors: empty, gtBoxes: XYXYBoxes([[0, 0, 10, 10]])), .allNegative(0))
    }

    /// Ignore regions act after the assignment, with the Matcher's rule: positives stay, non-positive
    /// anchors with IoF >= ignoreIoF become betweenThresholds, and candidates and thresholds do not see
    /// the regions (mmdetection's ATSS drops ignored anchors from the candidates instead).
    func testIgnoreRegionsTurnOnlyNonPositivesIntoIgnored() throws {
        let a = grid3x3(), gt = XYXYBoxes([[12, 12, 52, 52]])
        let region = XYXYBoxes([[0, 0, 64, 28]])   // the top row fully, the middle row by 1/3 (IoF 0.33)
        let atss = try ATSSAssigner()
        let r = atss.assign(anchors: a, gtBoxes: gt, ignoreRegions: region)
        XCTAssertEqual(r.matches, [-2, -2, -2, -1, 0, -1, -1, -1, -1])
        XCTAssertEqual(r.quality[4], 0.36, accuracy: 1e-7)
        // A region over the positive anchor leaves it positive.
        let over = atss.assign(anchors: a, gtBoxes: gt, ignoreRegions: XYXYBoxes([[0, 0, 64, 64]]))
        XCTAssertEqual(over.matches, [-2, -2, -2, -2, 0, -2, -2, -2, -2])
        // IoF exactly 0.5 is inside with the default (>=), not with ignoreIoF 0.6.
        let half = XYXYBoxes([[0, 48, 64, 64]])   // the bottom row spans y 36-60: exactly half inside
        XCTAssertEqual(atss.assign(anchors: a, gtBoxes: gt, ignoreRegions: half).matches, [-1, -1, -1, -1, 0, -1, -2, -2, -2])
        XCTAssertEqual(try ATSSAssigner(ignoreIoF: 0.6).assign(anchors: a, gtBoxes: gt, ignoreRegions: half).matches,
                       [-1, -1, -1, -1, 0, -1, -1, -1, -1])
    }

    /// On every fixture case with random ignore regions: the assignment equals the one without regions
    /// followed by `Matcher.applyIgnoreRegions` (same rule as RetinaNet's matcher).
    func testIgnoreRegionsEqualTheMatchersRuleOnFixtures() throws {
        let golden = try ATSSGolden.load()
        var rng = RNG(seed: 3)
        var ignored = 0
        for c in golden.cases {
            let a = anchors(c), gt = XYXYBoxes(coords: floats(c.gt))
            let regions = DetectionBench.boxes(3, rng: &rng, span: 200, minSide: 20, maxSide: 90)
            let atss = try ATSSAssigner(topk: c.topk)
            let r = atss.assign(anchors: a, target: DetectionTarget(boxes: gt, labels: [Int](repeating: 0, count: gt.count), ignoreRegions: regions))
            var expected = c.matches
            try Matcher().applyIgnoreRegions(&expected, anchors: a.boxes, regions: regions)
            XCTAssertEqual(r.matches, expected, c.name)
            XCTAssertEqual(zip(r.matches, c.matches).filter { $0.1 >= 0 }.map { $0.0 }, c.matches.filter { $0 >= 0 }, "\(c.name): positives kept")
            ignored += r.matches.filter { $0 == Matcher.betweenThresholds }.count
        }
        XCTAssertGreaterThan(ignored, 100)
    }

    func testBadSettingsAreTypedErrors() {
        XCTAssertThrowsError(try ATSSAssigner(topk: 0)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "topk") }
        XCTAssertThrowsError(try ATSSAssigner(topk: -3)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "topk") }
        XCTAssertThrowsError(try ATSSAssigner(ignoreIoF: 0)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "ignore_iof") }
        XCTAssertThrowsError(try ATSSAssigner(ignoreIoF: 1.5)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "ignore_iof") }
        XCTAssertEqual(try ATSSAssigner().topk, 9)
        XCTAssertEqual(try ATSSAssigner(ignoreIoF: 0.7).ignoreIoF, 0.7)
    }

    /// topk larger than a level takes the whole level (mmdetection's min(topk, level size)).
    func testTopkLargerThanALevelTakesTheWholeLevel() throws {
        let a = grid3x3()
        let (r9, t9) = try ATSSAssigner(topk: 9).assignWithThresholds(anchors: a, gtBoxes: XYXYBoxes([[12, 12, 52, 52]]))
        let (r50, t50) = try ATSSAssigner(topk: 50).assignWithThresholds(anchors: a, gtBoxes: XYXYBoxes([[12, 12, 52, 52]]))
        XCTAssertEqual(r9, r50)
        XCTAssertEqual(t9, t50)
        // topk 5 keeps the middle anchor and its four side neighbours (distance 16; corners are 22.6):
        // IoUs 0.36 and 4 x 0.214 give mean + std 0.309, and the middle anchor stays the only positive.
        let (r5, t5) = try ATSSAssigner(topk: 5).assignWithThresholds(anchors: a, gtBoxes: XYXYBoxes([[12, 12, 52, 52]]))
        XCTAssertEqual(r5.matches, r9.matches)
        XCTAssertEqual(t5[0], 0.309, accuracy: 2e-3)
    }
}
