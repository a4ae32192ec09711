import XCTest
import Kernels
import Autodiff
@testable import Detection

final class BoxCoderTests: XCTestCase {
    func testEncodeDecodeMatchTorchvision() throws {
        let cases = try Golden.load().box_coder
        XCTAssertEqual(cases.count, 2)
        for c in cases {
            let coder = try BoxCoder(weights: floats(c.weights))
            let anchors = XYXYBoxes(coords: floats(c.anchors)), boxes = XYXYBoxes(coords: floats(c.boxes))
            let enc = coder.encode(boxes, anchors: anchors)
            XCTAssertLessThanOrEqual(relativeError(enc, floats(c.encoded)), goldenTolerance, "encode, weights \(c.weights)")
            let dec = coder.decode(floats(c.codes), anchors: anchors)
            XCTAssertLessThanOrEqual(relativeError(dec.coords, floats(c.decoded)), goldenTolerance, "decode, weights \(c.weights)")
            // The differentiable decode computes the same numbers.
            let t = coder.decode(Tensor(shape: [anchors.count, 4], scalars: floats(c.codes)), anchors: anchors)
            XCTAssertLessThanOrEqual(relativeError(t.scalars, floats(c.decoded)), goldenTolerance, "tensor decode, weights \(c.weights)")
        }
    }

    func testRoundTripAndClamp() throws {
        var rng = RNG(seed: 3)
        let anchors = DetectionBench.boxes(50, rng: &rng), boxes = DetectionBench.boxes(50, rng: &rng)
        let coder = try BoxCoder()
        let back = coder.decode(coder.encode(boxes, anchors: anchors), anchors: anchors)
        XCTAssertLessThanOrEqual(relativeError(back.coords, boxes.coords), 1e-5)
        // dw = 100 decodes as dw = log(1000 / 16): the width becomes 62.5 x the anchor's.
        let wide = coder.decode([0, 0, 100, 0], anchors: XYXYBoxes([[0, 0, 16, 16]]))
        XCTAssertEqual(wide[0].x2 - wide[0].x1, 1000, accuracy: 1e-3)
    }

    func testTensorDecodeGradients() throws {
        var rng = RNG(seed: 5)
        let anchors = DetectionBench.boxes(6, rng: &rng)
        let codes = Tensor.uniform([6, 4], low: -1, high: 1, rng: &rng, requiresGrad: true)
        for weights: [Float] in [[1, 1, 1, 1], [10, 10, 5, 5]] {
            let coder = try BoxCoder(weights: weights)
            let r = gradcheck([codes]) { coder.decode($0[0], anchors: anchors) }
            XCTAssertTrue(r.passed, "\(weights): \(r)")
        }
        // Above the clamp the size delta gets no gradient (torch.clamp).
        let big = Tensor(shape: [1, 4], scalars: [0, 0, 9, 0], requiresGrad: true)
        try BoxCoder().decode(big, anchors: XYXYBoxes([[0, 0, 16, 16]])).sum().backward()
        XCTAssertEqual(big.grad!.scalars[2], 0)
        XCTAssertNotEqual(big.grad!.scalars[0], 0)
    }

    func testBadWeightsAreTypedErrors() {
        XCTAssertThrowsError(try BoxCoder(weights: [1, 1, 1])) { XCTAssertEqual(($0 as? DetectionConfigError)?.key, "box_coder_weights") }
        XCTAssertThrowsError(try BoxCoder(weights: [1, 0, 1, 1]))
    }
}
