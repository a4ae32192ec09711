import XCTest
import Foundation
@testable import Detection

/// Release timings (per image, RetinaNet default anchors at 256 px = 12,276, 10 and 100 ground truths):
///   QAT_ASSIGNER_BENCH=1 nice swift test -c release --disable-swift-testing --filter AssignerBenchTests
/// (`swift test` builds release with testable imports; `swift build -c release --build-tests` does not).
/// Without QAT_ASSIGNER_BENCH the published sizes are skipped and only the small smoke test runs.
final class AssignerBenchTests: XCTestCase {
    func testBenchRunsEveryAssignerAtSmallSizes() throws {
        let rows = try AssignerBench.run(reps: 1, inputSize: 128, gtCounts: [1, 5])
        XCTAssertEqual(rows.map(\.name), ["matcher_1", "atss_1", "matcher_5", "atss_5"])
        XCTAssertTrue(rows.allSatisfy { $0.ms > 0 && $0.ms.isFinite })
        XCTAssertThrowsError(try AssignerBench.run(reps: 1, inputSize: 200)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "input_size") }
    }

    func testPublishedSizes() throws {
        guard ProcessInfo.processInfo.environment["QAT_ASSIGNER_BENCH"] != nil else {
            throw XCTSkip("set QAT_ASSIGNER_BENCH=1 (release build) to time the assigners at the published sizes")
        }
        let rows = try AssignerBench.run()
        for r in rows { print(r.name.padding(toLength: 12, withPad: " ", startingAt: 0), String(format: "%8.3f ms", r.ms), r.detail) }
        XCTAssertEqual(rows.count, 4)
    }
}
