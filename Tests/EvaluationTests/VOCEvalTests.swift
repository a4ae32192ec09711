import XCTest
@testable import Evaluation

final class VOCEvalTests: XCTestCase {
    func box(_ x: Double, _ y: Double, _ w: Double, _ h: Double) -> COCOBox { COCOBox(x: x, y: y, width: w, height: h) }

    /// Worked by hand: a TP, a duplicate (FP), a detection on a difficult box (neither), one at IoU
    /// exactly 0.5 (FP: VOC needs more than the threshold), a TP.
    func testDevkitRulesOnAHandWorkedCase() throws {
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10)),
                   GroundTruth(imageId: 1, categoryId: 1, box: box(100, 100, 10, 10), ignore: true),
                   GroundTruth(imageId: 2, categoryId: 1, box: box(0, 0, 10, 10))]
        let dets = [DetectionResult(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10), score: 0.9),
                    DetectionResult(imageId: 1, categoryId: 1, box: box(1, 0, 10, 10), score: 0.8),
                    DetectionResult(imageId: 1, categoryId: 1, box: box(100, 100, 10, 10), score: 0.7),
                    DetectionResult(imageId: 2, categoryId: 1, box: box(0, 0, 10, 5), score: 0.6),
                    DetectionResult(imageId: 2, categoryId: 1, box: box(0, 0, 10, 9), score: 0.5)]
        let all = try VOCEval.evaluate(imageIds: [1, 2], categoryIds: [1], groundTruth: gts, detections: dets)
        let c = all.classes[0]
        XCTAssertEqual(c.positives, 2)
        XCTAssertEqual(c.recall, [0.5, 0.5, 0.5, 0.5, 1])
        XCTAssertEqual(c.precision, [1, 0.5, 0.5, 1.0 / 3, 0.5])
        // Envelope 1 up to recall 0.5, then 0.5: 0.5 * 1 + 0.5 * 0.5.
        XCTAssertEqual(try XCTUnwrap(c.ap), 0.75, accuracy: 1e-15)
        XCTAssertEqual(all.meanAP, c.ap)
        // 11-point: recall >= 0 ... 0.5 reach precision 1 (6 points), 0.6 ... 1 reach 0.5 (5 points).
        let voc07 = try VOCEval.evaluate(imageIds: [1, 2], categoryIds: [1], groundTruth: gts, detections: dets, method: .elevenPoint)
        XCTAssertEqual(try XCTUnwrap(voc07.classes[0].ap), 8.5 / 11, accuracy: 1e-15)
        XCTAssertEqual(BoxIoU.voc(box(0, 0, 10, 5), box(0, 0, 10, 10)), 0.5)
    }

    /// np.arange(0., 1.1, 0.1)[3] is 0.30000000000000004, so a recall of exactly 0.3 does not reach it.
    func testElevenPointGridIsNumpysArange() {
        XCTAssertEqual(VOCEval.averagePrecision(recall: [0.3], precision: [1], method: .elevenPoint), 3.0 / 11, accuracy: 1e-15)
        XCTAssertEqual(VOCEval.averagePrecision(recall: [0.3], precision: [1], method: .allPoint), 0.3, accuracy: 1e-15)
        XCTAssertEqual(VOCEval.averagePrecision(recall: [], precision: [], method: .allPoint), 0)
    }

    func testClassWithoutPositivesHasNoAP() throws {
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10)),
                   GroundTruth(imageId: 1, categoryId: 2, box: box(20, 20, 10, 10), isCrowd: true)]
        let dets = [DetectionResult(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10), score: 0.9),
                    DetectionResult(imageId: 1, categoryId: 2, box: box(20, 20, 10, 10), score: 0.9)]
        let r = try VOCEval.evaluate(imageIds: [1], categoryIds: [1, 2, 3], groundTruth: gts, detections: dets)
        XCTAssertEqual(r.classes.map(\.ap), [1, nil, nil])
        XCTAssertEqual(r.meanAP, 1)
    }

    func testDuplicateIsAFalsePositiveEvenWithAnotherFreeBoxInReach() throws {
        // Both boxes overlap the second detection above 0.5, but it takes its best match (already
        // taken) and counts as a duplicate: the devkit does not fall back to the next box, COCO does.
        let gts = [GroundTruth(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10)), GroundTruth(imageId: 1, categoryId: 1, box: box(1, 0, 10, 10))]
        let dets = [DetectionResult(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10), score: 0.9),
                    DetectionResult(imageId: 1, categoryId: 1, box: box(0, 0, 10, 10), score: 0.8)]
        let voc = try VOCEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: gts, detections: dets)
        XCTAssertEqual(voc.classes[0].recall, [0.5, 0.5])
        let coco = try COCOEval.evaluate(imageIds: [1], categoryIds: [1], groundTruth: gts, detections: dets)
        XCTAssertEqual(coco.recall(iou: 0, category: 0, area: 0, maxDets: 2), 1)
    }
}
