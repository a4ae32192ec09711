import XCTest
@testable import Detection

final class BoxesTests: XCTestCase {
    func testConversionsRoundTrip() {
        let b = XYXYBoxes(xywh: [[10, 20, 30, 40], [0, 0, 1, 2]])
        XCTAssertEqual(b.coords, [10, 20, 40, 60, 0, 0, 1, 2])
        XCTAssertEqual(b.xywh(0), [10, 20, 30, 40])
        XCTAssertEqual(XYXYBoxes(cxcywh: b.cxcywh()), b)
        XCTAssertEqual(b.areas(), [1200, 2])
    }

    func testClipAndMinSize() {
        let b = XYXYBoxes([[-5, -5, 10, 300], [3, 3, 3.5, 10]])
        XCTAssertEqual(b.clipped(width: 256, height: 256).coords, [0, 0, 10, 256, 3, 3, 3.5, 10])
        XCTAssertEqual(b.indicesWithMinSize(1), [0])
        XCTAssertEqual(b.selecting([1, 0]).coords, [3, 3, 3.5, 10, -5, -5, 10, 300])
    }
}
