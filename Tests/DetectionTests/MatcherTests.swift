import XCTest
@testable import Detection

final class MatcherTests: XCTestCase {
    func testQualityMatricesMatchTorchvision() throws {
        let cases = try Golden.load().matcher
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let m = try Matcher(allowLowQualityMatches: c.allow_low_quality)
            XCTAssertEqual(m.match(quality: floats(c.quality), gtCount: c.gt, anchorCount: c.anchors), c.matches, c.name)
        }
        // Without low-quality matches the grid case has all three outcomes; with them, ground truth 2
        // (no overlap with anything, best IoU 0) ties with every anchor, so every anchor gets its own
        // best match back and none stays negative: torchvision's behaviour, reproduced.
        let strict = cases.first { $0.name == "grid_allowFalse" }!.matches
        XCTAssertTrue(strict.contains(Matcher.belowLowThreshold) && strict.contains(Matcher.betweenThresholds) && strict.contains { $0 >= 0 })
        XCTAssertTrue(cases.first { $0.name == "grid_allowTrue" }!.matches.allSatisfy { $0 >= 0 })
    }

    func testBoxesAgainstBenchAnchorsMatchTorchvision() throws {
        let g = try Golden.load()
        let bench = g.anchors[0]
        let anchors = XYXYBoxes(coords: floats(bench.anchors))
        let gt = XYXYBoxes(coords: floats(g.matcher_boxes.gt))
        let matches = try Matcher().match(anchors: anchors, gtBoxes: gt)
        XCTAssertEqual(matches, g.matcher_boxes.matches)
        // The tiny box 9 overlaps no anchor by 0.4 but keeps its low-quality matches.
        XCTAssertTrue(matches.contains(9))
    }

    func testLowQualityMatchesGiveBackTheAnchorsOwnBestGroundTruth() throws {
        // gt 0's best anchor is anchor 0 (IoU 0.3); anchor 0 overlaps gt 1 more (0.35): torchvision
        // assigns anchor 0 to gt 1, not gt 0.
        let q: [Float] = [0.3, 0.1,
                          0.35, 0.2]
        XCTAssertEqual(try Matcher().match(quality: q, gtCount: 2, anchorCount: 2), [1, -1])
        XCTAssertEqual(try Matcher(allowLowQualityMatches: false).match(quality: q, gtCount: 2, anchorCount: 2), [-1, -1])
    }

    /// NaN overlaps follow torch.max: a NaN wins an anchor's column (and stays a match, since NaN fails
    /// both threshold tests), and a ground truth with a NaN in its row has a NaN best, so it makes no
    /// low-quality matches. Expected values from torchvision 0.29.2's Matcher on this matrix.
    func testNaNOverlapsBehaveLikeTorch() throws {
        let n = Float.nan
        let q: [Float] = [0.6, 0.1, n, 0.3, 0.45, 0.2, 0, 0.1, 0.2, 0.1,
                          0.2, n, 0.1, 0.35, 0.1, 0.1, 0, 0.7, 0.1, 0.1,
                          0.1, 0.2, 0.3, 0.1, 0.1, 0.3, 0, 0.1, 0.1, 0.1]
        XCTAssertEqual(try Matcher().match(quality: q, gtCount: 3, anchorCount: 10), [0, 1, 0, -1, -2, 2, -1, 1, -1, -1])
        XCTAssertEqual(try Matcher(allowLowQualityMatches: false).match(quality: q, gtCount: 3, anchorCount: 10), [0, 1, 0, -1, -2, -1, -1, 1, -1, -1])
    }

    func testNoGroundTruthMakesEveryAnchorNegative() throws {
        let anchors = XYXYBoxes([[0, 0, 10, 10], [20, 20, 30, 30]])
        XCTAssertEqual(try Matcher().match(anchors: anchors, gtBoxes: XYXYBoxes()), [-1, -1])
        XCTAssertEqual(try Matcher().match(quality: [], gtCount: 0, anchorCount: 3), [-1, -1, -1])
        // ... except where an ignore region covers them.
        let r = try Matcher().match(anchors: anchors, gtBoxes: XYXYBoxes(), ignoreRegions: XYXYBoxes([[18, 18, 40, 40]]))
        XCTAssertEqual(r, [-1, Matcher.betweenThresholds])
    }

    func testIgnoreRegionsNeverOverrideForeground() throws {
        let anchors = XYXYBoxes([[0, 0, 10, 10],    // matches the gt exactly: foreground despite the region
                                 [100, 0, 110, 10], // half inside the region: IoF 0.5 >= 0.5, ignored
                                 [104, 0, 114, 10], // 0.1 inside: stays negative
                                 [200, 200, 210, 210]])
        let gt = XYXYBoxes([[0, 0, 10, 10]])
        let region = XYXYBoxes([[0, 0, 105, 10]])
        let m = try Matcher()
        XCTAssertEqual(m.match(anchors: anchors, gtBoxes: gt, ignoreRegions: region), [0, Matcher.betweenThresholds, -1, -1])
        let strict = try Matcher(ignoreIoF: 0.6)
        XCTAssertEqual(strict.match(anchors: anchors, gtBoxes: gt, ignoreRegions: region), [0, -1, -1, -1])
    }

    func testBadThresholdsAreTypedErrors() {
        XCTAssertThrowsError(try Matcher(highThreshold: 0.4, lowThreshold: 0.5)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "low_threshold") }
        XCTAssertThrowsError(try Matcher(ignoreIoF: 0)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "ignore_iof") }
    }
}
