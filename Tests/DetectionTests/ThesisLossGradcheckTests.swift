import XCTest
import Foundation
import Kernels
import Autodiff
@testable import Detection

/// Finite-difference checks (Autodiff's `gradcheck`) of every loss in Sources/Detection/Losses, at
/// points away from their kinks (bin edges, margin boundaries, ties). Stateful losses restore their
/// state before each evaluation, so every evaluation sees the same weights.
final class ThesisLossGradcheckTests: XCTestCase {
    func logits(_ m: Int, _ k: Int, seed: UInt64, scale: Float = 2.5) -> Tensor {
        var rng = RNG(seed: seed)
        return Tensor.uniform([m, k], low: -scale, high: scale, rng: &rng, requiresGrad: true)
    }

    func testQualityFocalLossGradcheck() {
        let x = logits(6, 3, seed: 1)
        let labels = [0, -1, 2, 1, -1, 2], quality: [Float] = [0.8, 0, 0.35, 0.6, 0, 1]
        for (beta, reduction) in [(Float(2), Reduction.none), (1.5, .sum), (2, .mean)] {
            let r = gradcheck([x]) { qualityFocalLoss($0[0], labels: labels, quality: quality, beta: beta, reduction: reduction) }
            XCTAssertTrue(r.passed, "beta \(beta) \(reduction): \(r)")
        }
        let agnostic = logits(8, 1, seed: 2)
        let r = gradcheck([agnostic]) {
            qualityFocalLoss($0[0], labels: [0, -1, -1, 0, -1, 0, -1, -1], quality: [0.9, 0, 0, 0.4, 0, 0.7, 0, 0], reduction: .sum)
        }
        XCTAssertTrue(r.passed, "K = 1: \(r)")
    }

    func testVarifocalLossGradcheck() {
        let x = logits(5, 3, seed: 3)
        let t = Tensor(shape: [5, 3], scalars: [0.7, 0, 0, 0, 0, 0, 0, 0.45, 0, 0, 1, 0, 0, 0, 0])
        for iouWeighted in [true, false] {
            let r = gradcheck([x]) { varifocalLoss($0[0], targets: t, iouWeighted: iouWeighted) }
            XCTAssertTrue(r.passed, "iou weighted \(iouWeighted): \(r)")
        }
        let r = gradcheck([x]) { varifocalLoss($0[0], targets: t, alpha: 0.25, gamma: 1.5, reduction: .mean) }
        XCTAssertTrue(r.passed, "alpha 0.25 gamma 1.5: \(r)")
    }

    /// Logits whose gradient norm sits in the middle of a GHM bin, so the +-eps steps keep every bin.
    func testGHMCGradcheck() throws {
        let g: [Float] = [0.05, 0.15, 0.55, 0.95, 0.25, 0.05, 0.35, 0.75, 0.05, 0.45, 0.65, 0.85]
        let t: [Float] = [0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1]
        let x = Tensor(shape: [4, 3], scalars: zip(g, t).map { g, t in
            let p = t == 1 ? 1 - g : g
            return Foundation.log(p / (1 - p))
        }, requiresGrad: true)
        let targets = Tensor(shape: [4, 3], scalars: t)
        let weights = Tensor(shape: [4, 3], scalars: [1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1])
        for momentum in [0.0, 0.75] {
            let ghm = try GHMC(bins: 10, momentum: momentum)
            _ = ghm.loss(x.detached(), targets: targets, labelWeights: weights)   // a non-trivial state
            let saved = ghm.accumulatedCounts
            let r = gradcheck([x], eps: 1e-3) {
                try! ghm.restore(accumulatedCounts: saved)
                return ghm.loss($0[0], targets: targets, labelWeights: weights)
            }
            XCTAssertTrue(r.passed, "momentum \(momentum): \(r)")
        }
    }

    func testEqualizationLossGradcheck() {
        let x = logits(5, 4, seed: 4)
        let r = gradcheck([x]) {
            equalizationLoss($0[0], labels: [0, 1, -1, 3, 2], frequencies: [0.3, 0.001, 0.2, 0.0005], lambda: 0.00177)
        }
        XCTAssertTrue(r.passed, "\(r)")
    }

    func testSoftmaxEqualizationLossGradcheck() {
        let x = logits(5, 4, seed: 5)
        var rng = RNG(seed: 9)
        var beta = [Float](repeating: 0, count: 20)
        rng.fillBernoulli(&beta, count: 20, p: 0.7)
        let r = gradcheck([x]) {
            softmaxEqualizationLoss($0[0], labels: [0, 1, 2, 3, 0], frequencies: [0.3, 0.001, 0.2, 0.0005], lambda: 0.005, beta: beta)
        }
        XCTAssertTrue(r.passed, "\(r)")
    }

    func testEQLv2Gradcheck() throws {
        let x = logits(6, 4, seed: 6)
        let labels = [0, 0, 1, 2, 0, 3]
        let eql = try EQLv2(numClasses: 4)
        _ = eql.loss(x.detached(), labels: labels)          // weights away from 1 after one batch
        _ = eql.loss(x.detached(), labels: labels)
        let (pos, neg) = (eql.positiveGradients, eql.negativeGradients)
        let r = gradcheck([x]) {
            try! eql.restore(positiveGradients: pos, negativeGradients: neg)
            return eql.loss($0[0], labels: labels)
        }
        XCTAssertTrue(r.passed, "\(r)")
    }

    func testSeesawLossGradcheck() throws {
        // Mitigation only: its factors depend on the counts, not on the logits.
        let x = logits(6, 4, seed: 7)
        let labels = [0, 0, 0, 1, 2, 0]
        let mitigation = try SeesawLoss(numClasses: 4, q: 0)
        let r = gradcheck([x]) {
            try! mitigation.restore(cumulativeSamples: [0, 0, 0, 0])
            return mitigation.loss($0[0], labels: labels)
        }
        XCTAssertTrue(r.passed, "mitigation: \(r)")
        // Compensation is computed from detached scores (mmdet): check it where no factor is active,
        // the true class holding the largest probability in every row.
        let confident = Tensor(shape: [4, 3], scalars: [2, 0.5, -1, 0.3, 1.8, -0.4, -1, 0.2, 1.5, 1.2, -0.7, 0.1], requiresGrad: true)
        let both = try SeesawLoss(numClasses: 3)
        let s = gradcheck([confident]) {
            try! both.restore(cumulativeSamples: [30, 10, 2])
            return both.loss($0[0], labels: [0, 1, 2, 0], reduction: .sum)
        }
        XCTAssertTrue(s.passed, "mitigation and inactive compensation: \(s)")
    }

    func testClassWeightedCrossEntropyGradcheck() throws {
        let x = logits(5, 3, seed: 8)
        let w = try classWeights(counts: [300, 20, 5], .effectiveNumber())
        for reduction in [Reduction.mean, .sum, .none] {
            let r = gradcheck([x]) { classWeightedCrossEntropy($0[0], labels: [0, 1, 2, 2, 0], classWeights: w, reduction: reduction) }
            XCTAssertTrue(r.passed, "\(reduction): \(r)")
        }
    }

    /// Margins far from m and no near-ties among the other logits.
    func testMarginFocusingGradcheck() {
        let x = Tensor(shape: [4, 3], scalars: [1.0, 0.6, -1.2, -0.5, 0.9, 0.1, 2.5, -1.0, 0.2, 0.0, -0.8, 0.4], requiresGrad: true)
        let r = gradcheck([x], eps: 1e-3) { marginFocusingLoss($0[0], labels: [0, 2, 0, 2], margin: 1, weights: [1, 0.5, 1, 2]).loss }
        XCTAssertTrue(r.passed, "\(r)")
        let s = Tensor(shape: [6], scalars: [0.3, -0.4, 2.2, 0.7, -1.6, 0.1], requiresGrad: true)
        let b = gradcheck([s], eps: 1e-3) {
            binaryMarginFocusingLoss($0[0], targets: [1, 1, 1, -1, -1, -1], margin: 1, weights: [1, 1, 1, 1, 1, 0]).loss
        }
        XCTAssertTrue(b.passed, "binary: \(b)")
    }
}
