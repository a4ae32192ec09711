import XCTest
import Autodiff
@testable import Detection

final class PostprocessTests: XCTestCase {
    /// The fixture's inputs, from the integer formulas in scripts/golden/detection_torchvision.py.
    func inputs(_ g: Golden.Postprocess, anchors: Int) -> (logits: Tensor, regression: Tensor) {
        let c = g.num_classes, m = anchors * c
        var logits: [Float] = []
        for p in g.logit_primes { logits += (0..<m).map { Float(($0 * p) % m - 4096) / 1024 } }
        var regression = (0..<(2 * anchors * 4)).map { i -> Float in
            let h = (UInt64(i) &* 2_654_435_761) % (1 << 32)
            return Float(Int((h >> 16) % 513) - 256) / 256
        }
        for b in 0..<2 {
            for a in 0..<50 {
                for k in [2, 3] { regression[(b * anchors + a) * 4 + k] = Float(900 + ((b * 50 + a) * 4 + k) * 37 % 700) / 256 }
            }
        }
        return (Tensor(shape: [2, anchors, c], scalars: logits), Tensor(shape: [2, anchors, 4], scalars: regression))
    }

    func testRetinaNetPostprocessMatchesTorchvision() throws {
        let g = try Golden.load().postprocess
        let gen = try AnchorGenerator(baseSizes: g.base_sizes, truncateScaledSizes: true)
        let anchors = gen.anchors(featureShapes: g.feature_shapes.map { ($0[0], $0[1]) }, imageHeight: g.image_size[0], imageWidth: g.image_size[1])
        let (logits, regression) = inputs(g, anchors: anchors.count)
        let post = try RetinaNetPostprocess()
        let dets = post.detections(classLogits: logits, boxRegression: regression, anchors: anchors,
                                   imageSizes: g.image_sizes.map { ($0[0], $0[1]) })
        XCTAssertEqual(dets.count, 2)
        for (i, (d, ref)) in zip(dets, g.detections).enumerated() {
            XCTAssertEqual(d.count, 100, "image \(i)")
            XCTAssertEqual(d.labels, ref.labels, "image \(i): labels")
            XCTAssertLessThanOrEqual(relativeError(d.scores, floats(ref.scores)), goldenTolerance, "image \(i): scores")
            XCTAssertLessThanOrEqual(relativeError(d.boxes.coords, floats(ref.boxes)), goldenTolerance, "image \(i): boxes")
            // Clipped to that image's size.
            let (h, w) = (Float(g.image_sizes[i][0]), Float(g.image_sizes[i][1]))
            for k in 0..<d.count { XCTAssertTrue(d.boxes[k].x2 <= w && d.boxes[k].y2 <= h && d.boxes[k].x1 >= 0 && d.boxes[k].y1 >= 0) }
        }
    }

    func testNothingAboveTheThresholdGivesNoDetections() throws {
        let gen = try AnchorGenerator(baseSizes: [16])
        let anchors = gen.anchors(featureShapes: [(4, 4)], imageHeight: 32, imageWidth: 32)
        let n = anchors.count
        let d = try RetinaNetPostprocess().detections(classLogits: [Float](repeating: -5, count: n * 2), boxRegression: [Float](repeating: 0, count: n * 4),
                                                      numClasses: 2, anchors: anchors, imageHeight: 32, imageWidth: 32)
        XCTAssertEqual(d, Detections())
    }

    func testTopKAndDetectionLimits() throws {
        // One level, 16 locations x 9 anchors, every anchor confident in class 1 with distinct scores:
        // top-k 5 keeps the 5 best anchors; they are decoded in place (zero regression) and NMS removes
        // those overlapping a better one.
        let gen = try AnchorGenerator(baseSizes: [8])
        let anchors = gen.anchors(featureShapes: [(4, 4)], imageHeight: 64, imageWidth: 64)
        let n = anchors.count
        var logits = [Float](repeating: -10, count: n * 2)
        for a in 0..<n { logits[2 * a + 1] = Float(a) / 100 }
        let post = try RetinaNetPostprocess(topkCandidates: 5, detectionsPerImage: 3)
        let d = post.detections(classLogits: logits, boxRegression: [Float](repeating: 0, count: n * 4), numClasses: 2,
                                anchors: anchors, imageHeight: 64, imageWidth: 64)
        XCTAssertEqual(d.labels, [1, 1, 1])
        let top5 = Array((n - 5)..<n).reversed().map { $0 }
        let survivors = nms(anchors.boxes.selecting(top5).clipped(width: 64, height: 64), scores: top5.map { 1 / (1 + exp(-Float($0) / 100)) }, iouThreshold: 0.5)
        XCTAssertEqual(d.boxes, anchors.boxes.selecting(Array(survivors.prefix(3)).map { top5[$0] }).clipped(width: 64, height: 64))
        XCTAssertEqual(d.scores, d.scores.sorted(by: >))
    }

    func testBadSettingsAreTypedErrors() {
        XCTAssertThrowsError(try RetinaNetPostprocess(scoreThreshold: 1)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "score_threshold") }
        XCTAssertThrowsError(try RetinaNetPostprocess(topkCandidates: 0)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "topk_candidates") }
        XCTAssertThrowsError(try RetinaNetPostprocess(nmsThreshold: 1.5)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "nms_threshold") }
        XCTAssertThrowsError(try RetinaNetPostprocess(detectionsPerImage: 0)) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "detections_per_image") }
    }
}
