import XCTest
import Kernels
@testable import Detection

final class NMSTests: XCTestCase {
    func testNMSMatchesTorchvisionIncludingEqualScores() throws {
        let cases = try Golden.load().nms
        XCTAssertEqual(cases.count, 4)
        for (k, c) in cases.enumerated() {
            let keep = nms(XYXYBoxes(coords: floats(c.boxes)), scores: floats(c.scores), iouThreshold: c.threshold)
            XCTAssertEqual(keep, c.keep, "case \(k), threshold \(c.threshold)")
        }
    }

    func testBatchedNMSMatchesTorchvisionOnBothPaths() throws {
        let cases = try Golden.load().batched_nms
        XCTAssertEqual(cases.count, 4)
        for (k, c) in cases.enumerated() {
            let scores = floats(c.scores)
            let keep = batchedNMS(XYXYBoxes(coords: floats(c.boxes)), scores: scores, classes: c.classes, iouThreshold: c.threshold)
            if c.order_defined {
                XCTAssertEqual(keep, c.keep, "case \(k)")
            } else {
                // Per-class path with equal scores: torchvision's final unstable sort leaves the order
                // among ties open. Same kept set, same score sequence; ours breaks ties by index.
                XCTAssertEqual(Set(keep), Set(c.keep), "case \(k)")
                XCTAssertEqual(keep.map { scores[$0] }, c.keep.map { scores[$0] }, "case \(k)")
                for (a, b) in zip(keep, keep.dropFirst()) where scores[a] == scores[b] { XCTAssertLessThan(a, b) }
            }
        }
    }

    func testThresholdIsComparedAsADouble() {
        // Two boxes whose IoU is exactly Float(0.7) (> 0.7 as a Double? no: Float(0.7) < 0.7).
        XCTAssertEqual(suppressionBound(0.5), Float(0.5).nextUp)
        XCTAssertEqual(suppressionBound(0.7), Float(0.7).nextUp)      // Float(0.7) = 0.699999988 < 0.7
        XCTAssertEqual(suppressionBound(0.3), Float(0.3))             // Float(0.3) = 0.300000012 > 0.3
        // IoU 0.5 exactly is not suppressed at threshold 0.5 (strict >).
        let boxes = XYXYBoxes([[0, 0, 10, 10], [0, 0, 10, 5]])
        XCTAssertEqual(nms(boxes, scores: [1, 0.5], iouThreshold: 0.5), [0, 1])
        XCTAssertEqual(nms(boxes, scores: [1, 0.5], iouThreshold: 0.49), [0])
    }

    func testOrderingRules() {
        XCTAssertEqual(sortedByScore([0.5, .nan, 0.5, -0.0, 0.0, 2], indices: [0, 1, 2, 3, 4, 5]), [1, 5, 0, 2, 3, 4])
        XCTAssertEqual(nms(XYXYBoxes(), scores: [], iouThreshold: 0.5), [])
        XCTAssertEqual(batchedNMS(XYXYBoxes(), scores: [], classes: [], iouThreshold: 0.5), [])
    }

    /// The per-class path against a direct transcription of torchvision's kernel (suppressed flags,
    /// no compaction), on many random sets large enough to take that path.
    func testCompactingSuppressionEqualsReferenceLoop() {
        var rng = RNG(seed: 21)
        for trial in 0..<5 {
            let n = 1100 + 300 * trial
            let boxes = DetectionBench.boxes(n, rng: &rng, span: 150, minSide: 5, maxSide: 50)
            var s = [Float](repeating: 0, count: n)
            rng.fillUniform(&s, count: n)
            let scores = s.map { ($0 * 50).rounded() / 50 }         // many ties
            let classes = (0..<n).map { _ in rng.nextInt(below: 7) }
            var kept: [Int] = []
            for c in Set(classes) {
                let members = (0..<n).filter { classes[$0] == c }
                kept += referenceNMS(boxes.selecting(members), members.map { scores[$0] }, 0.5).map { members[$0] }
            }
            kept.sort { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            XCTAssertEqual(batchedNMS(boxes, scores: scores, classes: classes, iouThreshold: 0.5), kept, "trial \(trial)")
        }
    }

    func referenceNMS(_ boxes: XYXYBoxes, _ scores: [Float], _ t: Double) -> [Int] {
        let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        let areas = boxes.areas()
        var suppressed = [Bool](repeating: false, count: scores.count)
        var keep: [Int] = []
        for (oi, i) in order.enumerated() where !suppressed[i] {
            keep.append(i)
            let a = boxes[i]
            for j in order[(oi + 1)...] where !suppressed[j] {
                let b = boxes[j]
                let w = max(0, min(a.x2, b.x2) - max(a.x1, b.x1)), h = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
                let inter = w * h
                if Double(inter / (areas[i] + areas[j] - inter)) > t { suppressed[j] = true }
            }
        }
        return keep
    }
}
