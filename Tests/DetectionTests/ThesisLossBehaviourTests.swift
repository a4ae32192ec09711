import XCTest
import Foundation
import Kernels
import Autodiff
@testable import Detection

/// Hand-made checks of what the losses select and stop: support samples, exact gradient stopping,
/// OHEM's choice and GHM-C's momentum over calls, the stateful losses' state and their typed errors.
final class ThesisLossBehaviourTests: XCTestCase {
    // MARK: margin focusing

    func testMarginSelectionPicksSamplesInsideTheMargin() {
        let x = Tensor(shape: [5, 3], scalars: [
            3, 0, 1,       // label 0: margin 2, outside
            0.5, 1, 0.2,   // label 1: margin 0.5, support; other = class 0
            2, 2, 1,       // label 2: the others tie at 2: margin -1, support; the gradient goes to class 0
            2, 1, 0,       // label 0: margin exactly 1 = m, outside (strict)
            5, -5, 0,      // label 1: margin -10 but weight 0: left out
        ], requiresGrad: true)
        let r = marginFocusingLoss(x, labels: [0, 1, 2, 0, 1], margin: 1, weights: [1, 1, 1, 1, 0])
        XCTAssertEqual(r.support, [false, true, true, false, false])
        XCTAssertEqual(r.supportCount, 2)
        XCTAssertEqual(r.consideredCount, 4)
        XCTAssertEqual(r.supportShare, 0.5)
        XCTAssertEqual(r.loss.item, ((1 - 0.5) + (1 - -1)) / 2, accuracy: 1e-6)
        r.loss.backward()
        XCTAssertEqual(x.grad!.scalars, [0, 0, 0,  0.5, -0.5, 0,  0.5, 0, -0.5,  0, 0, 0,  0, 0, 0])
    }

    func testBinaryMarginSelection() {
        let s = Tensor(shape: [6], scalars: [2, 0.5, -3, -0.2, 1, 0.3], requiresGrad: true)
        let r = binaryMarginFocusingLoss(s, targets: [1, 1, -1, -1, 1, -1], margin: 1, weights: [1, 1, 1, 1, 1, 0])
        // margins 2, 0.5, 3, 0.2, 1 (= m, outside), -0.3 (ignored)
        XCTAssertEqual(r.support, [false, true, false, true, false, false])
        XCTAssertEqual(r.consideredCount, 5)
        XCTAssertEqual(r.loss.item, (0.5 + 0.8) / 2, accuracy: 1e-6)
        r.loss.backward()
        XCTAssertEqual(s.grad!.scalars, [0, -0.5, 0, 0.5, 0, 0])
    }

    func testMarginFocusingWithoutSupportIsZero() {
        let x = Tensor(shape: [2, 2], scalars: [5, -5, -5, 5], requiresGrad: true)
        let r = marginFocusingLoss(x, labels: [0, 1])
        XCTAssertEqual(r.supportCount, 0)
        XCTAssertEqual(r.loss.item, 0)
        r.loss.backward()
        XCTAssertEqual(x.grad!.scalars, [0, 0, 0, 0])
        let empty = marginFocusingLoss(Tensor.zeros([0, 3]), labels: [])
        XCTAssertEqual(empty.loss.item, 0)
        XCTAssertEqual(empty.supportShare, 0)
    }

    // MARK: gradient stopping

    /// Classes 1 and 3 are rare. Foreground rows get exactly zero gradient on rare negative columns;
    /// the label column, frequent columns and the background row keep theirs.
    func testEqualizationLossStopsRareNegativeGradientsExactly() {
        let x = Tensor(shape: [4, 4], scalars: [0.3, -0.2, 0.8, 1.1, -0.5, 0.4, 0.9, -1.3, 1.2, 0.7, -0.1, 0.2, 0.6, -0.9, 0.5, 1.4],
                       requiresGrad: true)
        let loss = equalizationLoss(x, labels: [0, 1, 2, -1], frequencies: [0.5, 0.001, 0.3, 0.0001], lambda: 0.00177)
        loss.backward()
        let g = x.grad!.scalars
        let stopped: Set<Int> = [1, 3, 7, 9, 11]   // (row 0: 1, 3), (row 1: 3), (row 2: 1, 3)
        for i in 0..<16 {
            if stopped.contains(i) { XCTAssertEqual(g[i], 0, "entry \(i) must be stopped") } else { XCTAssertNotEqual(g[i], 0, "entry \(i)") }
        }
    }

    func testSoftmaxEqualizationLossStopsRareNegativeGradientsExactly() {
        let x = Tensor(shape: [3, 4], scalars: [0.3, -0.2, 0.8, 1.1, -0.5, 0.4, 0.9, -1.3, 1.2, 0.7, -0.1, 0.2], requiresGrad: true)
        var beta = [Float](repeating: 1, count: 12)
        beta[2 * 4 + 3] = 0   // row 2 keeps class 3 in its softmax (beta = 0)
        let loss = softmaxEqualizationLoss(x, labels: [0, 1, 2], frequencies: [0.5, 0.001, 0.3, 0.0001], lambda: 0.00177, beta: beta)
        loss.backward()
        let g = x.grad!.scalars
        let stopped: Set<Int> = [1, 3, 7, 9]
        for i in 0..<12 {
            if stopped.contains(i) { XCTAssertEqual(g[i], 0, "entry \(i) must be stopped") } else { XCTAssertNotEqual(g[i], 0, "entry \(i)") }
        }
    }

    /// The RNG form draws Bernoulli(gamma) per element: deterministic per seed; gamma 1 stops every rare
    /// negative, gamma 0 none (then it is the plain cross-entropy).
    func testSoftmaxEqualizationLossRandomFormIsDeterministic() {
        let x = Tensor(shape: [6, 4], scalars: (0..<24).map { Float(($0 * 7) % 11) / 4 - 1 })
        let labels = [0, 1, 2, 3, 0, 2], freq: [Float] = [0.5, 0.001, 0.3, 0.0001]
        var a = RNG(seed: 42), b = RNG(seed: 42)
        let first = softmaxEqualizationLoss(x, labels: labels, frequencies: freq, lambda: 0.00177, gamma: 0.5, rng: &a).item
        XCTAssertEqual(first, softmaxEqualizationLoss(x, labels: labels, frequencies: freq, lambda: 0.00177, gamma: 0.5, rng: &b).item)
        XCTAssertEqual(a, b)
        var c = RNG(seed: 1)
        XCTAssertEqual(softmaxEqualizationLoss(x, labels: labels, frequencies: freq, lambda: 0.00177, gamma: 1, rng: &c).item,
                       softmaxEqualizationLoss(x, labels: labels, frequencies: freq, lambda: 0.00177, beta: [Float](repeating: 1, count: 24)).item)
        XCTAssertEqual(softmaxEqualizationLoss(x, labels: labels, frequencies: freq, lambda: 0.00177, gamma: 0, rng: &c).item,
                       Loss.crossEntropy(x, targets: labels).item, accuracy: 1e-6)
    }

    // MARK: OHEM

    func testOHEMKeepsPositivesAndTheHardestNegatives() {
        let losses: [Float] = [0.9, 0.1, 0.5, 0.5, 0.7, 0.2, 0.3, 0.95]
        let labels = [-1, 0, -1, -1, -1, -2, -1, -2]    // one positive (index 1); 5 and 7 ignored
        XCTAssertEqual(ohemWeights(losses: losses, labels: labels, negativesPerPositive: 2, minimumNegatives: 0),
                       [1, 1, 0, 0, 1, 0, 0, 0])
        // Three negatives: 0.9, 0.7, then the tie at 0.5 goes to the lower index (2, not 3).
        XCTAssertEqual(ohemWeights(losses: losses, labels: labels), [1, 1, 1, 0, 1, 0, 0, 0])
        // No positive: the minimum count.
        XCTAssertEqual(ohemWeights(losses: losses, labels: labels.map { $0 >= 0 ? -1 : $0 }, minimumNegatives: 2),
                       [1, 0, 0, 0, 1, 0, 0, 0])
        // Asking for more negatives than there are keeps them all, never an ignored one.
        XCTAssertEqual(ohemWeights(losses: losses, labels: labels, negativesPerPositive: 10), [1, 1, 1, 1, 1, 0, 1, 0])
        // A NaN loss is the hardest.
        XCTAssertEqual(ohemWeights(losses: [0.2, .nan, 0.9], labels: [-1, -1, -1], minimumNegatives: 1), [0, 1, 0])
        XCTAssertEqual(ohemWeights(losses: [], labels: []), [])
    }

    // MARK: GHM-C momentum

    /// Three elements in bin 0 (g ~ 0) and one in bin 5 (g = 0.5), twice: with momentum 0.75 the counts
    /// are 0.25 n, then 0.75 acc + 0.25 n; a bin empty in a later batch keeps its count.
    func testGHMCMomentumAcrossCalls() throws {
        let x = Tensor(shape: [4, 1], scalars: [-10, -10, -10, 0])
        let t = Tensor.zeros([4, 1])
        let bce0: Float = Foundation.log(2), bceFar = Float(Foundation.log1p(Foundation.exp(-10.0)))
        let ghm = try GHMC(bins: 10, momentum: 0.75)

        let first = ghm.loss(x, targets: t).item
        XCTAssertEqual(ghm.accumulatedCounts, [0.75, 0, 0, 0, 0, 0.25, 0, 0, 0, 0])
        // weights tot / acc / 2 non-empty bins: 4 / 0.75 / 2 and 4 / 0.25 / 2; loss divided by tot 4.
        XCTAssertEqual(first, (3 * (4 / 0.75 / 2) * bceFar + (4 / 0.25 / 2) * bce0) / 4, accuracy: 1e-5)

        let second = ghm.loss(x, targets: t).item
        XCTAssertEqual(ghm.accumulatedCounts, [1.3125, 0, 0, 0, 0, 0.4375, 0, 0, 0, 0])
        XCTAssertEqual(second, (3 * (4 / 1.3125 / 2) * bceFar + (4 / 0.4375 / 2) * bce0) / 4, accuracy: 1e-5)

        _ = ghm.loss(Tensor(shape: [2, 1], scalars: [-10, -10]), targets: Tensor.zeros([2, 1]))
        XCTAssertEqual(ghm.accumulatedCounts[0], 0.75 * 1.3125 + 0.5)
        XCTAssertEqual(ghm.accumulatedCounts[5], 0.4375, "a bin without members keeps its count")

        // Without momentum the weights come from each batch alone: the same batch gives the same loss.
        let plain = try GHMC(bins: 10, momentum: 0)
        let a = plain.loss(x, targets: t).item, b = plain.loss(x, targets: t).item
        XCTAssertEqual(a, b)
        XCTAssertEqual(a, (3 * (4.0 / 3 / 2) * bceFar + (4 / 1 / 2) * bce0) / 4, accuracy: 1e-5)
        XCTAssertEqual(plain.accumulatedCounts, [Float](repeating: 0, count: 10))
    }

    /// Ignored elements are neither counted (tot) nor weighted: their gradient is exactly 0.
    func testGHMCIgnoredElementsGetNoGradient() throws {
        let x = Tensor(shape: [2, 2], scalars: [0.3, -1, 2, 0.5], requiresGrad: true)
        let loss = try GHMC().loss(x, targets: Tensor(shape: [2, 2], scalars: [1, 0, 0, 1]),
                                   labelWeights: Tensor(shape: [2, 2], scalars: [1, 0, 1, 1]))
        loss.backward()
        let g = x.grad!.scalars
        XCTAssertEqual(g[1], 0)
        XCTAssertTrue(g[0] != 0 && g[2] != 0 && g[3] != 0)
    }

    // MARK: stateful long-tail losses

    /// Before any batch the ratio is 100 and every weight 1: EQLv2 is BCE summed over classes / M.
    func testEQLv2StartsAsPlainBCEAndCollectsGradients() throws {
        let x = Tensor(shape: [3, 2], scalars: [0.5, -1, 2, 0.3, -0.7, 1.1])
        let eql = try EQLv2(numClasses: 2)
        let bce = Loss.bceWithLogits(x, targets: Tensor(shape: [3, 2], scalars: [1, 0, 0, 1, 1, 0]), reduction: .sum).item / 3
        XCTAssertEqual(eql.loss(x, labels: [0, 1, 0]).item, bce, accuracy: 1e-6)
        let p = x.scalars.map { 1 / (1 + Foundation.exp(-$0)) }
        XCTAssertEqual(eql.positiveGradients[0], (1 - p[0]) + (1 - p[4]), accuracy: 1e-6)
        XCTAssertEqual(eql.negativeGradients[0], p[2], accuracy: 1e-6)
        XCTAssertEqual(eql.positiveGradients[1], 1 - p[3], accuracy: 1e-6)
        XCTAssertEqual(eql.negativeGradients[1], p[1] + p[5], accuracy: 1e-6)
        XCTAssertEqual(eql.gradientRatio[1], eql.positiveGradients[1] / (eql.negativeGradients[1] + 1e-10))
        // Restoring the state reproduces the next loss.
        let copy = try EQLv2(numClasses: 2)
        try copy.restore(positiveGradients: eql.positiveGradients, negativeGradients: eql.negativeGradients)
        XCTAssertEqual(copy.loss(x, labels: [1, 1, 0]).item, eql.loss(x, labels: [1, 1, 0]).item)
        XCTAssertThrowsError(try copy.restore(positiveGradients: [1], negativeGradients: [1, 2]))
    }

    /// Counts are updated before the loss; with p = q = 0 Seesaw is the plain cross-entropy.
    func testSeesawCountsAndPlainLimit() throws {
        let x = Tensor(shape: [3, 3], scalars: [0.5, -1, 2, 0.3, -0.7, 1.1, 1, 1, 1])
        let plain = try SeesawLoss(numClasses: 3, p: 0, q: 0)
        XCTAssertEqual(plain.loss(x, labels: [0, 2, 2]).item, Loss.crossEntropy(x, targets: [0, 2, 2]).item, accuracy: 1e-6)
        XCTAssertEqual(plain.cumulativeSamples, [1, 0, 2])
        // Mitigation only: a sample of the frequent class 2 pushes rare class 0 by (1/2)^0.8 less.
        let seesaw = try SeesawLoss(numClasses: 3, q: 0)
        try seesaw.restore(cumulativeSamples: [0, 0, 1])
        let row = Tensor(shape: [1, 3], scalars: [0.2, 0.4, 1.0])
        let expected = Loss.crossEntropy(Tensor(shape: [1, 3], scalars: [0.2 + 0.8 * Foundation.log(0.5), 0.4 + 0.8 * Foundation.log(0.5), 1.0]),
                                         targets: [2]).item
        XCTAssertEqual(seesaw.loss(row, labels: [2]).item, expected, accuracy: 1e-6)
        XCTAssertEqual(seesaw.cumulativeSamples, [0, 0, 2])
    }

    func testClassWeights() throws {
        let inverse = try classWeights(counts: [100, 10, 1], .inverseFrequency)
        XCTAssertEqual(inverse.reduce(0, +), 3, accuracy: 1e-6)
        XCTAssertEqual(inverse[2] / inverse[0], 100, accuracy: 1e-3)
        XCTAssertEqual(try classWeights(counts: [100, 10, 1], .effectiveNumber(beta: 0)), [1, 1, 1])
        let effective = try classWeights(counts: [5000, 50], .effectiveNumber())
        XCTAssertTrue(effective[1] / effective[0] > 1 && effective[1] / effective[0] < 100, "between equal and inverse frequency")
        XCTAssertThrowsError(try classWeights(counts: [10, 0], .inverseFrequency)) { error in
            XCTAssertEqual((error as? DetectionConfigError)?.key, "class_counts")
        }
        XCTAssertThrowsError(try classWeights(counts: [10, 1], .effectiveNumber(beta: 1))) { error in
            XCTAssertEqual((error as? DetectionConfigError)?.key, "class_weights.beta")
        }
    }

    func testSettingsThatCannotWorkAreTypedErrors() {
        func key(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return (error as? DetectionConfigError)?.key }
        }
        XCTAssertEqual(key { _ = try GHMC(bins: 0) }, "ghm.bins")
        XCTAssertEqual(key { _ = try GHMC(momentum: 1) }, "ghm.momentum")
        XCTAssertEqual(key { try GHMC().restore(accumulatedCounts: [1, 2]) }, "ghm.acc_sum")
        XCTAssertEqual(key { _ = try EQLv2(numClasses: 0) }, "num_classes")
        XCTAssertEqual(key { _ = try EQLv2(numClasses: 3, gamma: 0) }, "eqlv2.gamma")
        XCTAssertEqual(key { _ = try SeesawLoss(numClasses: 3, eps: 0) }, "seesaw.eps")
        XCTAssertEqual(key { _ = try SeesawLoss(numClasses: 3, p: -1) }, "seesaw.p")
    }

    // MARK: quality focal loss, class-agnostic

    /// K = 1 (the fg/bg logit): background rows are BCE(x, 0) sigmoid(x)^2; a positive with q = 1 and a
    /// confident logit costs almost nothing, the same logit as background a lot.
    func testQualityFocalLossClassAgnostic() {
        let x = Tensor(shape: [3, 1], scalars: [6, 6, -2])
        let loss = qualityFocalLoss(x, labels: [0, -1, -1], quality: [1, 0, 0]).scalars
        let s: (Float) -> Float = { 1 / (1 + Foundation.exp(-$0)) }
        XCTAssertEqual(loss[0], -Foundation.log(s(6)) * (1 - s(6)) * (1 - s(6)), accuracy: 1e-7)
        XCTAssertEqual(loss[1], (6 + Foundation.log1p(Foundation.exp(-6))) * s(6) * s(6), accuracy: 1e-4)
        XCTAssertEqual(loss[2], Foundation.log1p(Foundation.exp(-2)) * s(-2) * s(-2), accuracy: 1e-6)
    }
}
