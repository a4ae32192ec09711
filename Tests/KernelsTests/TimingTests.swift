import XCTest
@testable import Kernels

final class TimingTests: XCTestCase {
    func testMedian() {
        var calls = 0
        let ms = timeMedian(reps: 3, warmup: 1) { calls += 1 }
        XCTAssertEqual(calls, 4)  // 1 warm-up + 3 timed
        XCTAssertGreaterThanOrEqual(ms, 0)
    }
}
