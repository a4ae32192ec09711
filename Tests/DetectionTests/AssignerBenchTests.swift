import XCTest
import Foundation
@testable import Detection

/// The published sizes (RetinaNet's default anchors at 256 px, 10 and 100 ground truths) are timed by
/// `qat bench detector` (release build); this is the smoke test at small sizes.
final class AssignerBenchTests: XCTestCase {
    func testBenchRunsEveryAssignerAtSmallSizes() throws {
        let rows = try AssignerBench.run(reps: 1, inputSize: 128, gtCounts: [1, 5])
        XCTAssertEqual(rows.map(\.name), ["matcher_1", "atss_1", "matcher_5", "atss_5"])
        XCTAssertTrue(rows.allSatisfy { $0.ms > 0 && $0.ms.isFinite })
        XCTAssertThrowsError(try AssignerBench.run(reps: 1, inputSize: 200)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "input_size") }
    }
}
