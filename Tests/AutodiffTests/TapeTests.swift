import XCTest
import Kernels
@testable import Autodiff

final class TapeTests: XCTestCase {
    func testGradientsAccumulateAcrossBackwardCalls() {
        let w = Tensor(shape: [2], scalars: [1, 2], requiresGrad: true)
        (w * w).sum().backward()
        XCTAssertEqual(w.grad!.scalars, [2, 4])
        (w * 3).sum().backward()
        XCTAssertEqual(w.grad!.scalars, [5, 7])
        w.grad = nil
        w.sum().backward()
        XCTAssertEqual(w.grad!.scalars, [1, 1])
    }

    func testDiamondGraphSumsBothPaths() {
        let x = Tensor(shape: [1], scalars: [3], requiresGrad: true)
        let a = x * x, b = x.exp()
        (a + b + a).sum().backward()   // d/dx (2x^2 + e^x) = 4x + e^x
        XCTAssertEqual(x.grad!.item, 12 + Float(M_E_pow3), accuracy: 1e-3)
    }

    func testNoGradAndDetachStopRecording() {
        let x = Tensor(shape: [2], scalars: [1, 2], requiresGrad: true)
        let y = noGrad { x * 2 }
        XCTAssertFalse(y.requiresGrad); XCTAssertNil(y.op)
        let z = x.detached() * 2
        XCTAssertFalse(z.requiresGrad)
        let w = (x * 2 + x.detached()).sum()
        w.backward()
        XCTAssertEqual(x.grad!.scalars, [2, 2])
    }

    func testSharedGradientIsNotAliasedBetweenLeaves() {
        let a = Tensor(shape: [2], scalars: [1, 1], requiresGrad: true)
        let b = Tensor(shape: [2], scalars: [1, 1], requiresGrad: true)
        (a + b).sum().backward()
        a.grad!.pointer[0] = 100
        XCTAssertEqual(b.grad!.scalars, [1, 1])
    }

    func testInputsWithoutGradGetNone() {
        let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        let b = Tensor(shape: [2, 2], scalars: [1, 0, 0, 1], requiresGrad: true)
        a.matmul(b).sum().backward()
        XCTAssertNil(a.grad)
        XCTAssertEqual(b.grad!.scalars, [4, 4, 6, 6])
    }

    func testReshapeSharesStorage() {
        let a = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let b = a.reshaped([3, 2])
        XCTAssertTrue(a.storage === b.storage)
    }

    func testCrossEntropyMatchesHandValue() {
        // logits [0, ln 3] -> p = [0.25, 0.75]; CE for target 1 = -ln 0.75
        let l = Tensor(shape: [1, 2], scalars: [0, Float(log(3.0))])
        XCTAssertEqual(Loss.crossEntropy(l, targets: [1]).item, Float(-log(0.75)), accuracy: 1e-6)
        // BCE at logit 0 has gradient sigmoid(0) - y exactly (no kink artefact).
        let z = Tensor(shape: [1], scalars: [0], requiresGrad: true)
        Loss.bceWithLogits(z, targets: Tensor(shape: [1], scalars: [1])).backward()
        XCTAssertEqual(z.grad!.item, -0.5, accuracy: 1e-7)
    }
}

let M_E_pow3 = Foundation.exp(3.0)
import Foundation

final class GradcheckSelfTests: XCTestCase {
    /// gradcheck must catch a wrong backward: an op y = x^2 whose vjp claims 3x.
    func testGradcheckRejectsAWrongGradient() {
        let x = Tensor(shape: [3], scalars: [0.5, -1, 2], requiresGrad: true)
        let r = gradcheck([x]) { inputs in
            let a = inputs[0]
            let out = FloatBuffer(count: a.count)
            for i in 0..<a.count { out.pointer[i] = a.pointer[i] * a.pointer[i] }
            return Tensor.make(a.shape, out, op: "bad_square", inputs: [a]) { g in [g * a * 3] }
        }
        XCTAssertFalse(r.passed, "\(r)")
        XCTAssertEqual(r.checked, 3)
    }

    /// A loss dictionary's total is the sum in name order whatever the dictionary's order, with a
    /// gradient of 1 into every term.
    func testLossTotalSumsInNameOrder() {
        let a = Tensor(shape: [], scalars: [1e8], requiresGrad: true), b = Tensor(shape: [], scalars: [1], requiresGrad: true)
        let c = Tensor(shape: [], scalars: [-1e8], requiresGrad: true)
        let t = Loss.total(["b": b, "a": a, "c": c])
        XCTAssertEqual(t.item, ((a + b) + c).item)          // a, b, c: 1e8 + 1 rounds to 1e8, then 0
        t.backward()
        XCTAssertEqual([a.grad!.item, b.grad!.item, c.grad!.item], [1, 1, 1])
    }
}
