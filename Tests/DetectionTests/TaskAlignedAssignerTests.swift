import XCTest
import Foundation
import Kernels
@testable import Detection

/// mmdetection's task-aligned assignment and TOOD's target normalisation
/// (scripts/golden/task_aligned.py -> Fixtures/task_aligned.json).
private struct TaskAlignedGolden: Decodable {
    struct Case: Decodable {
        let name: String; let topk: Int; let alpha: Double; let beta: Double; let counts: [Int]
        let anchors: [Double]; let predicted: [Double]; let scores: [Double]; let gt: [Double]
        let matches: [Int]; let metrics: [Double]; let ious: [Double]; let quality: [Double]
    }
    let torch: String
    let cases: [Case]

    static func load() throws -> TaskAlignedGolden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/task_aligned.json")
        return try JSONDecoder().decode(TaskAlignedGolden.self, from: Data(contentsOf: url))
    }
}

final class TaskAlignedAssignerTests: XCTestCase {
    func testFixturesMatchMMDetection() throws {
        let golden = try TaskAlignedGolden.load()
        XCTAssertGreaterThanOrEqual(golden.cases.count, 10)
        var positives = 0
        for c in golden.cases {
            let anchors = MultiLevelAnchors(boxes: XYXYBoxes(coords: floats(c.anchors)), countsPerLevel: c.counts)
            let gt = XYXYBoxes(coords: floats(c.gt)), predicted = XYXYBoxes(coords: floats(c.predicted)), scores = floats(c.scores)
            let assigner = try TaskAlignedAssigner(topk: c.topk, alpha: Float(c.alpha), beta: Float(c.beta))
            let raw = assigner.assignRaw(anchors: anchors, gtBoxes: gt, scores: scores, predicted: predicted)
            if let j = raw.matches.indices.first(where: { raw.matches[$0] != c.matches[$0] }) {
                XCTFail("\(c.name): anchor \(j) assigned \(raw.matches[j]), mmdetection \(c.matches[j])")
            }
            XCTAssertEqual(raw.matches.count, c.matches.count, c.name)
            for (j, (v, e)) in zip(raw.ious, floats(c.ious)).enumerated() where abs(v - e) > 1e-6 {
                XCTFail("\(c.name): anchor \(j) IoU \(v), mmdetection \(e)"); break
            }
            for (j, (v, e)) in zip(raw.metrics, floats(c.metrics)).enumerated() where abs(v - e) > 1e-6 * max(1e-3, e) {
                XCTFail("\(c.name): anchor \(j) metric \(v), mmdetection \(e)"); break
            }
            let target = DetectionTarget(boxes: gt, labels: [Int](repeating: 0, count: gt.count))
            let assigned = assigner.assign(anchors: anchors, target: target, scores: scores, predicted: predicted)
            XCTAssertEqual(assigned.matches, raw.matches, c.name)
            for (j, (v, e)) in zip(assigned.quality, floats(c.quality)).enumerated() where abs(v - e) > 2e-6 {
                XCTFail("\(c.name): anchor \(j) target \(v), TOOD \(e)"); break
            }
            positives += c.matches.filter { $0 >= 0 }.count
        }
        XCTAssertGreaterThan(positives, 400)
    }

    /// Four anchors of 20 px at stride 16 in one row, a box over the first two: the metric s * u^6 ranks
    /// a confident, well-placed prediction first, so the best-aligned anchor is not the best-IoU one
    /// once its score is low; candidates whose anchor centre is outside the box never become positive.
    func testMetricRanksScoreTimesIoUPowerAndCentreMustBeInside() throws {
        let anchors = MultiLevelAnchors(boxes: XYXYBoxes([[-2, -2, 18, 18], [14, -2, 34, 18], [30, -2, 50, 18], [46, -2, 66, 18]]),
                                        countsPerLevel: [4])
        let gt = XYXYBoxes([[0, 0, 32, 16]])
        // Anchor 0 predicts the box exactly (u = 1) with score 0.2; anchor 1 predicts it half (u = 0.5)
        // with score 0.9; anchor 2's centre (40) is outside though it predicts the box exactly.
        let predicted = XYXYBoxes([[0, 0, 32, 16], [0, 0, 16, 16], [0, 0, 32, 16], [60, 0, 64, 4]])
        let scores: [Float] = [0.2, 0.9, 0.9, 0.9]
        let a = try TaskAlignedAssigner(topk: 3)
        let raw = a.assignRaw(anchors: anchors, gtBoxes: gt, scores: scores, predicted: predicted)
        XCTAssertEqual(raw.matches, [0, 0, -1, -1])
        XCTAssertEqual(raw.metrics[0], 0.2, accuracy: 1e-7)
        XCTAssertEqual(raw.metrics[1], 0.9 * powf(0.5, 6), accuracy: 1e-7)
        // Targets: anchor 0 gets max IoU (1) x 0.2 / 0.2; anchor 1 gets 0.9/64 / 0.2 x 1.
        let t = a.normalised(raw)
        XCTAssertEqual(t.quality[0], 1, accuracy: 1e-5)
        XCTAssertEqual(t.quality[1], 0.9 / 64 / 0.2, accuracy: 1e-5)
        XCTAssertEqual(t.quality[2], 0); XCTAssertEqual(t.quality[3], 0)
        // Candidates are chosen before the centre rule (as mmdetection): with topk 1 the only candidate
        // is anchor 2 (metric 0.9), whose centre is outside, so the box gets no positive; with topk 2
        // anchor 0 is the second candidate.
        XCTAssertEqual(try TaskAlignedAssigner(topk: 1).assignRaw(anchors: anchors, gtBoxes: gt, scores: scores, predicted: predicted).matches,
                       [-1, -1, -1, -1])
        XCTAssertEqual(try TaskAlignedAssigner(topk: 2).assignRaw(anchors: anchors, gtBoxes: gt, scores: scores, predicted: predicted).matches,
                       [0, -1, -1, -1])
        // A score of 0 makes the metric 0: never positive.
        XCTAssertEqual(a.assignRaw(anchors: anchors, gtBoxes: gt, scores: [0, 0, 0, 0], predicted: predicted).matches, [-1, -1, -1, -1])
    }

    func testAnAnchorClaimedByTwoBoxesGoesToTheHigherIoUThenTheFirst() throws {
        let anchors = MultiLevelAnchors(boxes: XYXYBoxes([[0, 0, 20, 20]]), countsPerLevel: [1])
        let predicted = XYXYBoxes([[0, 0, 20, 20]])
        let r = try TaskAlignedAssigner().assignRaw(anchors: anchors, gtBoxes: XYXYBoxes([[0, 0, 30, 30], [0, 0, 22, 22]]), scores: [0.5], predicted: predicted)
        XCTAssertEqual(r.matches, [1])
        let twins = try TaskAlignedAssigner().assignRaw(anchors: anchors, gtBoxes: XYXYBoxes([[0, 0, 22, 22], [0, 0, 22, 22]]), scores: [0.5], predicted: predicted)
        XCTAssertEqual(twins.matches, [0])
    }

    func testIgnoreRegionsAndNoBoxes() throws {
        let anchors = MultiLevelAnchors(boxes: XYXYBoxes([[0, 0, 20, 20], [40, 40, 60, 60]]), countsPerLevel: [2])
        let predicted = anchors.boxes
        let a = try TaskAlignedAssigner()
        let target = DetectionTarget(boxes: XYXYBoxes([[0, 0, 20, 20]]), labels: [3], ignoreRegions: XYXYBoxes([[38, 38, 62, 62]]))
        let r = a.assign(anchors: anchors, target: target, scores: [0.5, 0.5], predicted: predicted)
        XCTAssertEqual(r.matches, [0, Matcher.betweenThresholds])
        XCTAssertEqual(r.quality[0], 1, accuracy: 1e-5)
        let empty = a.assign(anchors: anchors, target: DetectionTarget(boxes: XYXYBoxes(), labels: []), scores: [0.5, 0.5], predicted: predicted)
        XCTAssertEqual(empty.matches, [-1, -1])
    }

    func testBadSettingsNameTheirKey() {
        XCTAssertThrowsError(try TaskAlignedAssigner(topk: 0)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "topk") }
        XCTAssertThrowsError(try TaskAlignedAssigner(alpha: -1)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "alpha") }
        XCTAssertThrowsError(try TaskAlignedAssigner(beta: .nan)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "beta") }
    }
}
