import XCTest
@testable import Evaluation

/// Properties of the COCO evaluation that hold whatever the numbers (the numbers themselves are
/// GoldenTests' job).
final class COCOEvalTests: XCTestCase {
    /// Precision is tp / (tp + fp + eps) as in pycocotools, so "1" is 1 - 1ulp.
    func assertClose(_ a: [Double], _ b: [Double], _ what: String = "", file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-12, "\(what): \(a) vs \(b)", file: file, line: line) }
    }

    func box(_ x: Double, _ y: Double, _ w: Double, _ h: Double) -> COCOBox { COCOBox(x: x, y: y, width: w, height: h) }

    func testPerfectDetectionsScoreOneEverywhereDefined() throws {
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 20, 20)),
                   GroundTruth(imageId: 1, categoryId: 2, box: box(50, 50, 60, 60)),
                   GroundTruth(imageId: 2, categoryId: 1, box: box(10, 10, 200, 100))]
        let dets = gts.enumerated().map { DetectionResult(imageId: $1.imageId, categoryId: $1.categoryId, box: $1.box, score: 0.9 - 0.1 * Double($0)) }
        let r = try COCOEval.evaluate(imageIds: [1, 2], categoryIds: [1, 2], groundTruth: gts, detections: dets)
        // AP, AP50, AP75, APs, APm, APl; AR1 is 1 too (one object per image and class).
        assertClose(r.stats, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
        XCTAssertEqual(r.perClass.map(\.categoryId), [1, 2])
        assertClose(r.perClass.flatMap { [$0.ap!, $0.ap50!] }, [1, 1, 1, 1])
        XCTAssertEqual(r.precision.count, 10 * 101 * 2 * 4 * 3)
        XCTAssertEqual(r.recall.count, 10 * 2 * 4 * 3)
    }

    func testDetectionOrderDoesNotMatterWhenScoresDiffer() throws {
        var rng = SystemRandomNumberGenerator()
        var gts: [GroundTruth] = [], dets: [DetectionResult] = []
        for img in 1...6 {
            for n in 0..<5 {
                let b = box(Double(n) * 40, Double(img) * 7, 30 + Double(n), 25)
                gts.append(GroundTruth(imageId: img, categoryId: 1 + n % 2, box: b))
                dets.append(DetectionResult(imageId: img, categoryId: 1 + (n + img) % 2, box: box(b.x + 2, b.y + 1, b.width, b.height + 3),
                                            score: Double(img * 10 + n) / 100))
            }
        }
        let a = try COCOEval.evaluate(imageIds: Array(1...6), categoryIds: [1, 2], groundTruth: gts, detections: dets)
        let b = try COCOEval.evaluate(imageIds: Array((1...6).reversed()), categoryIds: [2, 1], groundTruth: gts, detections: dets.shuffled(using: &rng))
        XCTAssertEqual(a.precision, b.precision)
        XCTAssertEqual(a.recall, b.recall)
        XCTAssertEqual(a.stats, b.stats)
        XCTAssertGreaterThan(a.stats[0], 0)
        XCTAssertLessThan(a.stats[0], 1)
    }

    func testClassWithoutGroundTruthIsLeftOutOfTheMeans() throws {
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 20, 20))]
        let dets = [DetectionResult(imageId: 1, categoryId: 1, box: box(0, 0, 20, 20), score: 0.5),
                    DetectionResult(imageId: 1, categoryId: 2, box: box(40, 40, 20, 20), score: 0.9)]
        let r = try COCOEval.evaluate(imageIds: [1], categoryIds: [1, 2], groundTruth: gts, detections: dets)
        XCTAssertEqual(r.stats[0], 1, accuracy: 1e-12)
        XCTAssertEqual(r.perClass[1], .init(categoryId: 2, ap: nil, ap50: nil))
        XCTAssertNil(r.precisionRecallCurve(category: 1))
        XCTAssertEqual(r.stats[5], -1, "no large object: -1, as pycocotools")
    }

    func testCrowdRegionAbsorbsDetectionsWithoutFalsePositives() throws {
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 100, 100), isCrowd: true),
                   GroundTruth(imageId: 1, categoryId: 1, box: box(200, 200, 20, 20))]
        // Three detections inside the crowd region (IoU against it = fraction inside = 1) score
        // above the true one; they are ignored, not false positives.
        let dets = [DetectionResult(imageId: 1, categoryId: 1, box: box(10, 10, 10, 10), score: 0.9),
                    DetectionResult(imageId: 1, categoryId: 1, box: box(30, 30, 10, 10), score: 0.8),
                    DetectionResult(imageId: 1, categoryId: 1, box: box(50, 50, 10, 10), score: 0.7),
                    DetectionResult(imageId: 1, categoryId: 1, box: box(200, 200, 20, 20), score: 0.6)]
        let r = try COCOEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: gts, detections: dets)
        XCTAssertEqual(r.stats[0], 1, accuracy: 1e-12)
        XCTAssertEqual(BoxIoU.coco(box(10, 10, 10, 10), box(0, 0, 100, 100), crowd: true), 1)
        XCTAssertEqual(BoxIoU.coco(box(10, 10, 10, 10), box(0, 0, 100, 100), crowd: false), 0.01)
        // Without the crowd flag the three are false positives ahead of the true one.
        var plain = gts
        plain[0].isCrowd = false
        let p = try COCOEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: plain, detections: dets)
        XCTAssertLessThan(p.stats[1], 0.5)
    }

    func testAreaRangeReadsTheAreaFieldAndIncludesBothBorders() throws {
        // A 40x40 box whose `area` field says 1024: small and medium both, never large.
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 40, 40), area: 1024)]
        let dets = [DetectionResult(imageId: 1, categoryId: 1, box: box(0, 0, 40, 40), score: 1)]
        let r = try COCOEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: gts, detections: dets)
        XCTAssertEqual(r.stats[3], 1, accuracy: 1e-12, "small")
        XCTAssertEqual(r.stats[4], 1, accuracy: 1e-12, "medium")
        XCTAssertEqual(r.stats[5], -1, "large")
    }

    func testClassAgnosticModeForgivesTheWrongType() throws {
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 50, 50)),
                   GroundTruth(imageId: 1, categoryId: 2, box: box(100, 100, 50, 50))]
        let swapped = [DetectionResult(imageId: 1, categoryId: 2, box: box(0, 0, 50, 50), score: 0.9),
                       DetectionResult(imageId: 1, categoryId: 1, box: box(100, 100, 50, 50), score: 0.8)]
        let perClass = try COCOEval.evaluate(imageIds: [1], categoryIds: [1, 2], groundTruth: gts, detections: swapped)
        XCTAssertEqual(perClass.stats[0], 0)
        let agnostic = try COCOEval.evaluate(imageIds: [1], categoryIds: [1, 2], groundTruth: gts, detections: swapped, classAgnostic: true)
        XCTAssertEqual(agnostic.stats[0], 1, accuracy: 1e-12)
        XCTAssertTrue(agnostic.isClassAgnostic)
        XCTAssertEqual(agnostic.perClass.map(\.categoryId), [COCOEvalResult.allCategories])
        XCTAssertEqual(try XCTUnwrap(agnostic.perClass[0].ap50), 1, accuracy: 1e-12)
    }

    func testPrecisionRecallCurveIsTheEnvelopeAtTheRecallPoints() throws {
        // Scores: TP, FP, TP over two objects: precision 1, 1/2, 2/3; envelope 1 up to recall 0.5,
        // then 2/3 up to recall 1.
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10)), GroundTruth(imageId: 1, categoryId: 1, box: box(50, 0, 10, 10))]
        let dets = [DetectionResult(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10), score: 0.9),
                    DetectionResult(imageId: 1, categoryId: 1, box: box(90, 90, 10, 10), score: 0.8),
                    DetectionResult(imageId: 1, categoryId: 1, box: box(50, 0, 10, 10), score: 0.7)]
        let r = try COCOEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: gts, detections: dets)
        let curve = try XCTUnwrap(r.precisionRecallCurve(category: 0))
        for (rc, p) in zip(curve.recall, curve.precision) {
            XCTAssertEqual(p, rc <= 0.5 ? 1 : 2.0 / 3, accuracy: 1e-12, "recall \(rc)")
        }
        XCTAssertEqual(r.recall(iou: 0, category: 0, area: 0, maxDets: 2), 1)
        XCTAssertEqual(r.recall(iou: 0, category: 0, area: 0, maxDets: 0), 0.5, "maxDets 1: one detection per image")
        XCTAssertEqual(r.scores[0], 0.9, "recall point 0 is read at the first detection")
    }

    func testMaxDetsKeepsTheTopScoresPerImage() throws {
        // 120 objects in one image, detected perfectly, with the lowest scores on the first 20: at
        // maxDets 100 those 20 are cut, so recall is 100/120.
        var gts: [GroundTruth] = [], dets: [DetectionResult] = []
        for n in 0..<120 {
            let b = box(Double(n % 12) * 30, Double(n / 12) * 30, 20, 20)
            gts.append(GroundTruth(imageId: 1, categoryId: 1, box: b))
            dets.append(DetectionResult(imageId: 1, categoryId: 1, box: b, score: Double(n) / 1000))
        }
        let r = try COCOEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: gts, detections: dets)
        XCTAssertEqual(r.stats[8], 100.0 / 120, accuracy: 1e-12)
        XCTAssertEqual(r.stats[7], 10.0 / 120, accuracy: 1e-12)
    }

    func testNoDetectionsGivesZeroAndNoImagesGivesUndefined() throws {
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10))]
        let r = try COCOEval.evaluate(imageIds: [1, 2], categoryIds: [1], groundTruth: gts, detections: [])
        XCTAssertEqual(r.stats[0], 0)
        XCTAssertEqual(r.perClass[0].ap, 0)
        let empty = try COCOEval.evaluate(imageIds: [], categoryIds: [1], groundTruth: [], detections: [])
        XCTAssertEqual(empty.stats, [Double](repeating: -1, count: 12))
    }

    func testInputsOutsideTheEvaluatedSetAreNamedErrors() {
        let g = GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10))
        func message(_ gts: [GroundTruth], _ dets: [DetectionResult]) -> String {
            do { _ = try COCOEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: gts, detections: dets); return "no error" }
            catch { return "\(error)" }
        }
        let d = DetectionResult(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10), score: 0.5)
        var unknownImage = d; unknownImage.imageId = 7
        var unknownCategory = d; unknownCategory.categoryId = 3
        var nanScore = d; nanScore.score = .nan
        var negative = d; negative.box.width = -1
        var badGT = g; badGT.imageId = 9
        XCTAssertTrue(message([g], [d, unknownImage]).contains("detections[1]: image id 7"))
        XCTAssertTrue(message([g], [unknownCategory]).contains("detections[0]: category id 3"))
        XCTAssertTrue(message([g], [nanScore]).contains("detections[0]: score nan"))
        XCTAssertTrue(message([g], [negative]).contains("non-negative width"))
        XCTAssertTrue(message([g, badGT], [d]).contains("groundTruth[1]: image id 9"))
        XCTAssertEqual(message([g], [d]), "no error")
    }

    func testSummaryHasPycocotoolsLayout() throws {
        let r = try COCOEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: [], detections: [])
        let lines = r.summary().split(separator: "\n")
        XCTAssertEqual(lines.count, 12)
        XCTAssertEqual(lines[0], " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = -1.000")
        XCTAssertEqual(lines[6], " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = -1.000")
    }
}
