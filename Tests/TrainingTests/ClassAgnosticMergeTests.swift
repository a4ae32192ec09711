import XCTest
import Datasets
import Evaluation
@testable import Training

/// The class-agnostic merge behind agnostic_map50: one box per object, whatever its type.
final class ClassAgnosticMergeTests: XCTestCase {
    func det(_ image: Int, _ category: Int, _ box: [Double], _ score: Double) -> DetectionResult {
        DetectionResult(imageId: image, categoryId: category, box: COCOBox(xywh: box), score: score)
    }

    func testKeepsTheBestBoxPerObjectAcrossClassesAndImages() {
        let dets = [det(1, 1, [10, 10, 20, 20], 0.6), det(1, 2, [11, 10, 20, 20], 0.9), det(1, 3, [10, 11, 20, 20], 0.7),
                    det(1, 1, [100, 100, 20, 20], 0.5),    // another object: no overlap
                    det(1, 2, [25, 10, 20, 20], 0.8),      // IoU 0.14 with the best box: kept
                    det(2, 1, [10, 10, 20, 20], 0.4)]      // same box in another image: kept
        let merged = ClassAgnosticMerge.merge(dets, iouThreshold: 0.5)
        XCTAssertEqual(merged, [dets[1], dets[4], dets[3], dets[5]])
        // IoU threshold 0: any overlap suppresses (the 0.14 box goes too).
        XCTAssertEqual(ClassAgnosticMerge.merge(dets, iouThreshold: 0), [dets[1], dets[3], dets[5]])
        XCTAssertEqual(ClassAgnosticMerge.merge([], iouThreshold: 0.5), [])
    }

    /// Two aircraft, each found; the first also leaves a wrong-type duplicate that outranks the second.
    /// pycocotools' useCats=0 on the raw list counts the duplicate as a false positive (AP50 < 1); after
    /// the merge every object is found at precision 1.
    func testMergedAgnosticAPCountsFindingNotTypeConfusion() throws {
        let json = #"""
        {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
                         {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 60, 20, 20], "area": 400, "iscrowd": 0}],
         "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
        """#
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("agnostic-merge-\(ProcessInfo.processInfo.processIdentifier).json")
        try Data(json.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let gt = try COCODataset.load(url.path)
        let dets = [det(1, 1, [10, 10, 20, 20], 0.9), det(1, 2, [10, 10, 20, 20], 0.85), det(1, 2, [60, 60, 20, 20], 0.8)]
        let raw = try COCOEval.evaluate(gt, dets, classAgnostic: true).stats[1]
        let merged = try COCOEval.evaluate(gt, ClassAgnosticMerge.merge(dets, iouThreshold: 0.5), classAgnostic: true).stats[1]
        XCTAssertLessThan(raw, 0.95)
        XCTAssertEqual(merged, 1.0, accuracy: 1e-12)
    }
}
