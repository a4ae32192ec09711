import XCTest
import Kernels
import Autodiff
@testable import Detection

final class DetectionLossesTests: XCTestCase {
    func reduction(_ name: String) -> Reduction { name == "sum" ? .sum : (name == "mean" ? .mean : .none) }

    /// The fixture's upstream gradient (1 for a reduced loss) in the loss's shape.
    func upstream(_ values: [Double], shape: [Int]) -> Tensor { Tensor(shape: shape, scalars: floats(values)) }

    func testFocalLossValueAndGradientMatchTorchvision() throws {
        let cases = try Golden.load().focal
        XCTAssertEqual(cases.count, 5)
        for c in cases {
            let x = Tensor(shape: [8, 5], scalars: floats(c.logits), requiresGrad: true)
            let y = Tensor(shape: [8, 5], scalars: floats(c.targets))
            let loss = sigmoidFocalLoss(x, targets: y, alpha: Float(c.alpha), gamma: Float(c.gamma), reduction: reduction(c.reduction))
            let name = "alpha \(c.alpha) gamma \(c.gamma) \(c.reduction)"
            XCTAssertLessThanOrEqual(relativeError(loss.scalars, floats(c.value)), goldenTolerance, name)
            loss.backward(upstream(c.upstream, shape: loss.shape))
            XCTAssertLessThanOrEqual(relativeError(x.grad!.scalars, floats(c.grad_logits)), goldenTolerance, "\(name): gradient")
        }
    }

    func testGIoULossValueAndGradientsMatchTorchvision() throws {
        let cases = try Golden.load().giou_loss
        XCTAssertEqual(cases.count, 3)
        for c in cases {
            let p = Tensor(shape: [12, 4], scalars: floats(c.pred), requiresGrad: true)
            let t = Tensor(shape: [12, 4], scalars: floats(c.target), requiresGrad: true)
            let loss = generalizedIoULoss(p, t, reduction: reduction(c.reduction))
            XCTAssertLessThanOrEqual(relativeError(loss.scalars, floats(c.value)), goldenTolerance, c.reduction)
            loss.backward(upstream(c.upstream, shape: loss.shape))
            // Rows 0 and 1 share coordinates with their targets: torch splits those min/max gradients in half.
            XCTAssertLessThanOrEqual(relativeError(p.grad!.scalars, floats(c.grad_pred)), goldenTolerance, "\(c.reduction): d pred")
            XCTAssertLessThanOrEqual(relativeError(t.grad!.scalars, floats(c.grad_target)), goldenTolerance, "\(c.reduction): d target")
        }
    }

    func testL1LossMatchesTorch() throws {
        for c in try Golden.load().l1 {
            let x = Tensor(shape: [6, 4], scalars: floats(c.input), requiresGrad: true)
            let y = Tensor(shape: [6, 4], scalars: floats(c.target), requiresGrad: true)
            let loss = l1Loss(x, y, reduction: reduction(c.reduction))
            XCTAssertLessThanOrEqual(relativeError(loss.scalars, floats(c.value)), goldenTolerance, c.reduction)
            loss.backward(upstream(c.upstream, shape: loss.shape))
            XCTAssertEqual(x.grad!.scalars, floats(c.grad_input), c.reduction)
            XCTAssertEqual(y.grad!.scalars, floats(c.grad_target), c.reduction)
        }
    }

    // Finite-difference checks (Autodiff's gradcheck), away from the kinks (coordinate ties, overlap edges).

    func testFocalLossGradcheck() {
        var rng = RNG(seed: 8)
        let x = Tensor.uniform([6, 3], low: -3, high: 3, rng: &rng, requiresGrad: true)
        var u = [Float](repeating: 0, count: 18)
        rng.fillUniform(&u, count: 18)
        let hard = Tensor(shape: [6, 3], scalars: u.map { $0 < 0.3 ? 1 : 0 })
        let soft = Tensor(shape: [6, 3], scalars: u, requiresGrad: true)
        for (gamma, alpha) in [(Float(2), Float(0.25)), (1.5, -1), (0, 0.5)] {
            let r = gradcheck([x]) { sigmoidFocalLoss($0[0], targets: hard, alpha: alpha, gamma: gamma) }
            XCTAssertTrue(r.passed, "gamma \(gamma) alpha \(alpha): \(r)")
        }
        let r = gradcheck([x, soft]) { sigmoidFocalLoss($0[0], targets: $0[1], reduction: .sum) }
        XCTAssertTrue(r.passed, "soft targets: \(r)")
    }

    func testGIoULossGradcheck() {
        // Overlapping, disjoint and nested pairs, all coordinates distinct.
        let pred = Tensor(shape: [3, 4], scalars: [1, 2, 11, 9, 0, 0, 4, 5, 2, 2, 20, 18], requiresGrad: true)
        let target = Tensor(shape: [3, 4], scalars: [3, 1, 12, 8, 10, 11, 15, 17, 5, 4, 14, 13], requiresGrad: true)
        let r = gradcheck([pred, target], eps: 1e-2) { generalizedIoULoss($0[0], $0[1]) }
        XCTAssertTrue(r.passed, "\(r)")
        let s = gradcheck([pred, target], eps: 1e-2) { generalizedIoULoss($0[0], $0[1], reduction: .mean) }
        XCTAssertTrue(s.passed, "\(s)")
    }

    func testL1LossGradcheck() {
        let x = Tensor(shape: [2, 3], scalars: [0.5, -1, 2, 0.3, 1, -2], requiresGrad: true)
        let y = Tensor(shape: [2, 3], scalars: [0.1, 0.2, -0.3, 0.9, -1, 0.5], requiresGrad: true)
        let r = gradcheck([x, y]) { l1Loss($0[0], $0[1], reduction: .sum) }
        XCTAssertTrue(r.passed, "\(r)")
    }

    /// An image without foreground anchors: RetinaNet's box loss over zero boxes is 0 and backward works.
    func testEmptyInputsGiveZeroLoss() throws {
        let codes = Tensor.zeros([0, 4], requiresGrad: true)
        let boxes = try BoxCoder().decode(codes, anchors: XYXYBoxes())
        XCTAssertEqual(boxes.shape, [0, 4])
        let loss = generalizedIoULoss(boxes, Tensor.zeros([0, 4]), reduction: .sum)
        XCTAssertEqual(loss.item, 0)
        loss.backward()
        XCTAssertEqual(codes.grad?.shape ?? [0, 4], [0, 4])
        XCTAssertEqual(sigmoidFocalLoss(Tensor.zeros([0, 3]), targets: Tensor.zeros([0, 3]), reduction: .sum).item, 0)
    }

    func testGIoULossKnownValues() {
        let a = Tensor(shape: [2, 4], scalars: [0, 0, 10, 10, 0, 0, 10, 10])
        let b = Tensor(shape: [2, 4], scalars: [0, 0, 10, 10, 20, 0, 30, 10])
        // Identical: 0. Disjoint with a 10-px gap: IoU 0, enclosing 300, union 200 -> 1 + 100/300.
        let l = generalizedIoULoss(a, b).scalars
        XCTAssertEqual(l[0], 0, accuracy: 1e-6)
        XCTAssertEqual(l[1], 1 + 1.0 / 3, accuracy: 1e-6)
    }
}
