import XCTest
import Kernels
@testable import Detection

final class IoUTests: XCTestCase {
    func testIoUAndGIoUMatchTorchvisionBitForBit() throws {
        let g = try Golden.load().iou
        let a = XYXYBoxes(coords: floats(g.a)), b = XYXYBoxes(coords: floats(g.b))
        let iou = boxIoU(a, b), giou = generalizedBoxIoU(a, b)
        XCTAssertEqual(iou.count, 30 * 40)
        // Same Float32 operations in the same order, no transcendental functions: identical bits.
        XCTAssertEqual(iou, floats(g.iou))
        XCTAssertEqual(giou, floats(g.giou))
        // Row-major [a x b]: the identical pairs sit on the diagonal of the first five.
        for i in 0..<5 { XCTAssertEqual(iou[i * 40 + i], 1) }
    }

    func testIoFIsIntersectionOverTheFirstBoxArea() {
        let anchors = XYXYBoxes([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 20, 30]])
        let regions = XYXYBoxes([[0, 0, 10, 20], [10, 0, 30, 30]])
        let iof = boxIoF(anchors, regions)
        // Anchor 0 lies fully in region 0; anchor 1 is half in region 0 and half in region 1; anchor 2 is
        // empty (area 0): 0, not NaN.
        XCTAssertEqual(iof, [1, 0, 0.5, 0.5, 0, 0])
    }

    func testEmptyInputsGiveEmptyMatrices() {
        XCTAssertEqual(boxIoU(XYXYBoxes(), XYXYBoxes([[0, 0, 1, 1]])), [])
        XCTAssertEqual(boxIoU(XYXYBoxes([[0, 0, 1, 1]]), XYXYBoxes()), [])
    }

    /// The parallel chunking must not change values: a large matrix against a per-pair scalar loop.
    func testLargeMatrixAgreesWithScalarDefinition() {
        var rng = RNG(seed: 11)
        let a = DetectionBench.boxes(300, rng: &rng), b = DetectionBench.boxes(70, rng: &rng)
        let iou = boxIoU(a, b)
        for i in 0..<a.count {
            for j in 0..<b.count {
                let p = a[i], q = b[j]
                let w = max(min(p.x2, q.x2) - max(p.x1, q.x1), 0), h = max(min(p.y2, q.y2) - max(p.y1, q.y1), 0)
                let inter = w * h
                let union = (p.x2 - p.x1) * (p.y2 - p.y1) + (q.x2 - q.x1) * (q.y2 - q.y1) - inter
                XCTAssertEqual(iou[i * b.count + j], inter / union)
            }
        }
    }
}
