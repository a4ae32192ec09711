import XCTest
@testable import Detection

final class DetectionBenchTests: XCTestCase {
    func testBenchRunsEveryWorkloadAtSmallSizes() {
        let rows = DetectionBench.run(reps: 1, anchors: 500, gtBoxes: 10, nmsBoxes: 1500, classes: 3)
        XCTAssertEqual(rows.map(\.name), ["iou", "iou_t", "match", "nms10k"])
        XCTAssertTrue(rows.allSatisfy { $0.ms > 0 && $0.ms.isFinite })
    }
}
