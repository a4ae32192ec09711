import XCTest
@testable import Training

final class HeadTailTests: XCTestCase {
    /// Thirds by object count (ties by class order), means skip classes without a value (-1).
    func testHeadAndTailThirds() {
        XCTAssertEqual(HeadTail.groups(counts: [5, 9, 9, 1, 3, 7]).head, [1, 2])
        XCTAssertEqual(HeadTail.groups(counts: [5, 9, 9, 1, 3, 7]).tail, [4, 3])
        let g = HeadTail.groups(counts: [130, 104, 80, 52, 48, 52, 34, 34, 33, 26, 16, 18])
        XCTAssertEqual(g.head, [0, 1, 2, 3]); XCTAssertEqual(g.tail.sorted(), [8, 9, 10, 11])
        XCTAssertEqual(HeadTail.groups(counts: [4, 2]).head, [])   // too few classes to split
        XCTAssertEqual(HeadTail.groups(counts: [3, 2, 1, 1]).head, [0, 1])   // rounded up: 2 of 4

        var m = TaskMetrics(split: "test", samples: 4, values: ["map50": 0.4],
                            perClass: ["ap50": [0.9, 0.5, 0.7, -1, 0.1, 0.3]], perClassCount: [9, 2, 8, 0, 1, 5])
        HeadTail.add(to: &m, perClass: ["ap50", "missing"])
        XCTAssertEqual(m["ap50_head"]!, 0.8, accuracy: 1e-12)   // classes 0 and 2
        XCTAssertEqual(m["ap50_tail"]!, 0.1, accuracy: 1e-12)   // classes 4 and 3 (3 has no value)
        XCTAssertNil(m["missing_head"])
        // Present values stay (a final.json written with them is not recomputed).
        m.values["ap50_head"] = 0.25
        HeadTail.add(to: &m, perClass: ["ap50"])
        XCTAssertEqual(m["ap50_head"], 0.25)
    }
}
