import XCTest
import Kernels
import Autodiff
@testable import Detection

/// Values and input gradients of Sources/Detection/Losses against torch autograd on the reference
/// formulas (Fixtures/thesis_losses.json), within `goldenTolerance` (1e-5 relative, see `relativeError`).
final class ThesisLossGoldenTests: XCTestCase {
    func reduction(_ name: String) -> Reduction { name == "sum" ? .sum : (name == "mean" ? .mean : .none) }

    /// Backward with the fixture's upstream gradient (a scalar 1 for a reduced loss).
    func backward(_ loss: Tensor, _ upstream: [Double]) {
        loss.backward(Tensor(shape: loss.shape, scalars: floats(upstream)))
    }

    func assertClose(_ actual: [Float], _ expected: [Double], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, "\(message): count", file: file, line: line)
        guard actual.count == expected.count else { return }
        XCTAssertLessThanOrEqual(relativeError(actual, floats(expected)), goldenTolerance, message, file: file, line: line)
    }

    func testQualityFocalLossMatchesMMDetection() throws {
        let cases = try ThesisGolden.load().qfl
        XCTAssertEqual(cases.count, 8)
        for (n, c) in cases.enumerated() {
            let x = Tensor(shape: [c.m, c.k], scalars: floats(c.logits), requiresGrad: true)
            let loss = qualityFocalLoss(x, labels: c.labels, quality: floats(c.quality), beta: Float(c.beta),
                                        reduction: reduction(c.reduction))
            let name = "case \(n) (\(c.m)x\(c.k), beta \(c.beta), \(c.reduction))"
            assertClose(loss.scalars, c.value, name)
            backward(loss, c.upstream)
            assertClose(x.grad?.scalars ?? [], c.grad_logits, "\(name): gradient")
        }
    }

    func testVarifocalLossMatchesMMDetection() throws {
        let cases = try ThesisGolden.load().vfl
        XCTAssertEqual(cases.count, 9)
        for (n, c) in cases.enumerated() {
            let x = Tensor(shape: [c.m, c.k], scalars: floats(c.logits), requiresGrad: true)
            let t = Tensor(shape: [c.m, c.k], scalars: floats(c.targets))
            let loss = varifocalLoss(x, targets: t, alpha: Float(c.alpha), gamma: Float(c.gamma), iouWeighted: c.iou_weighted,
                                     reduction: reduction(c.reduction))
            let name = "case \(n) (iou weighted \(c.iou_weighted), \(c.reduction))"
            assertClose(loss.scalars, c.value, name)
            backward(loss, c.upstream)
            assertClose(x.grad?.scalars ?? [], c.grad_logits, "\(name): gradient")
        }
    }

    /// Each case is a sequence of calls on one GHMC: the momentum state carries over.
    func testGHMCMatchesMMDetectionAcrossCalls() throws {
        let cases = try ThesisGolden.load().ghmc
        XCTAssertEqual(cases.count, 5)
        for (n, c) in cases.enumerated() {
            let ghm = try GHMC(bins: c.bins, momentum: c.momentum)
            for (s, step) in c.steps.enumerated() {
                let x = Tensor(shape: [step.m, step.k], scalars: floats(step.logits), requiresGrad: true)
                let loss = ghm.loss(x, targets: Tensor(shape: [step.m, step.k], scalars: floats(step.targets)),
                                    labelWeights: Tensor(shape: [step.m, step.k], scalars: floats(step.label_weights)))
                let name = "case \(n) step \(s) (bins \(c.bins), momentum \(c.momentum))"
                assertClose(loss.scalars, step.value, name)
                loss.backward()
                assertClose(x.grad?.scalars ?? [], step.grad_logits, "\(name): gradient")
                if c.momentum > 0 { assertClose(ghm.accumulatedCounts, step.acc_sum, "\(name): acc_sum") }
            }
        }
    }

    func testOHEMSelectionMatchesTheReferenceSort() throws {
        let cases = try ThesisGolden.load().ohem
        XCTAssertEqual(cases.count, 6)
        for (n, c) in cases.enumerated() {
            let w = ohemWeights(losses: floats(c.losses), labels: c.labels, negativesPerPositive: c.ratio, minimumNegatives: c.minimum)
            XCTAssertEqual(w, floats(c.weights), "case \(n)")
        }
    }

    func testEqualizationLossMatchesTheOfficialCode() throws {
        let g = try ThesisGolden.load()
        XCTAssertEqual(g.eql.count, 5)
        for (n, c) in g.eql.enumerated() {
            let x = Tensor(shape: [c.m, c.k], scalars: floats(c.logits), requiresGrad: true)
            let loss = equalizationLoss(x, labels: c.labels, frequencies: floats(c.frequencies), lambda: Float(c.lambda))
            assertClose(loss.scalars, c.value, "case \(n)")
            loss.backward()
            assertClose(x.grad?.scalars ?? [], c.grad_logits, "case \(n): gradient")
        }
        // The official divides an empty batch by n_i = 0 (NaN); ours gives 0 and an empty gradient.
        let e = g.eql_empty
        let x = Tensor(shape: [0, e.k], scalars: [], requiresGrad: true)
        let loss = equalizationLoss(x, labels: [], frequencies: floats(e.frequencies), lambda: Float(e.lambda))
        XCTAssertEqual(loss.item, 0)
        loss.backward()
        XCTAssertEqual(x.grad?.shape ?? [0, e.k], [0, e.k])
    }

    func testSoftmaxEqualizationLossMatchesThePaperFormula() throws {
        let cases = try ThesisGolden.load().seql
        XCTAssertEqual(cases.count, 5)
        for (n, c) in cases.enumerated() {
            let x = Tensor(shape: [c.m, c.k], scalars: floats(c.logits), requiresGrad: true)
            let loss = softmaxEqualizationLoss(x, labels: c.labels, frequencies: floats(c.frequencies), lambda: Float(c.lambda),
                                               beta: floats(c.beta))
            assertClose(loss.scalars, c.value, "case \(n)")
            loss.backward()
            assertClose(x.grad?.scalars ?? [], c.grad_logits, "case \(n): gradient")
        }
    }

    /// Sequences of calls: losses, gradients and the collected positive/negative gradients after each.
    func testEQLv2MatchesTheOfficialCodeAcrossCalls() throws {
        let cases = try ThesisGolden.load().eqlv2
        XCTAssertEqual(cases.count, 5)
        for (n, c) in cases.enumerated() {
            let eql = try EQLv2(numClasses: c.k, gamma: Float(c.gamma), mu: Float(c.mu), alpha: Float(c.alpha))
            for (s, step) in c.steps.enumerated() {
                let x = Tensor(shape: [step.m, c.k], scalars: floats(step.logits), requiresGrad: true)
                let loss = eql.loss(x, labels: step.labels)
                let name = "case \(n) step \(s)"
                assertClose(loss.scalars, step.value, name)
                loss.backward()
                assertClose(x.grad?.scalars ?? [], step.grad_logits, "\(name): gradient")
                assertClose(eql.positiveGradients, step.pos_grad, "\(name): pos_grad")
                assertClose(eql.negativeGradients, step.neg_grad, "\(name): neg_grad")
            }
        }
    }

    func testSeesawLossMatchesMMDetectionAcrossCalls() throws {
        let cases = try ThesisGolden.load().seesaw
        XCTAssertEqual(cases.count, 6)
        for (n, c) in cases.enumerated() {
            let seesaw = try SeesawLoss(numClasses: c.k, p: Float(c.p), q: Float(c.q), eps: Float(c.eps))
            for (s, step) in c.steps.enumerated() {
                let x = Tensor(shape: [step.m, c.k], scalars: floats(step.logits), requiresGrad: true)
                let loss = seesaw.loss(x, labels: step.labels, reduction: reduction(c.reduction))
                let name = "case \(n) step \(s) (p \(c.p), q \(c.q), \(c.reduction))"
                assertClose(seesaw.cumulativeSamples, step.cum_samples, "\(name): cum_samples")
                assertClose(loss.scalars, step.value, name)
                backward(loss, step.upstream)
                assertClose(x.grad?.scalars ?? [], step.grad_logits, "\(name): gradient")
            }
        }
    }

    func testClassWeightedCrossEntropyMatchesTorch() throws {
        let cases = try ThesisGolden.load().wce
        XCTAssertEqual(cases.count, 6)
        for (n, c) in cases.enumerated() {
            let weighting: ClassWeighting = c.scheme == "inverse_frequency" ? .inverseFrequency : .effectiveNumber(beta: c.beta)
            let w = try classWeights(counts: c.counts, weighting)
            let name = "case \(n) (\(c.scheme), \(c.reduction))"
            assertClose(w, c.weights, "\(name): class weights")
            let x = Tensor(shape: [c.m, c.k], scalars: floats(c.logits), requiresGrad: true)
            let loss = classWeightedCrossEntropy(x, labels: c.labels, classWeights: w, reduction: reduction(c.reduction))
            assertClose(loss.scalars, c.value, name)
            backward(loss, c.upstream)
            assertClose(x.grad?.scalars ?? [], c.grad_logits, "\(name): gradient")
        }
    }

    func testMarginFocusingMatchesTheReference() throws {
        let cases = try ThesisGolden.load().margin
        XCTAssertEqual(cases.count, 6)
        for (n, c) in cases.enumerated() {
            let x = Tensor(shape: [c.m, c.k], scalars: floats(c.logits), requiresGrad: true)
            let r = marginFocusingLoss(x, labels: c.labels, margin: Float(c.margin), weights: floats(c.weights))
            XCTAssertEqual(r.support, c.support, "case \(n): support samples")
            XCTAssertEqual(r.supportCount, c.support.filter { $0 }.count, "case \(n)")
            assertClose(r.loss.scalars, c.value, "case \(n)")
            r.loss.backward()
            assertClose(x.grad?.scalars ?? [], c.grad_logits, "case \(n): gradient")
        }
    }

    func testBinaryMarginFocusingMatchesTheReference() throws {
        let cases = try ThesisGolden.load().margin_binary
        XCTAssertEqual(cases.count, 6)
        for (n, c) in cases.enumerated() {
            let x = Tensor(shape: [c.m, 1], scalars: floats(c.logits), requiresGrad: true)
            let r = binaryMarginFocusingLoss(x, targets: floats(c.targets), margin: Float(c.margin), weights: floats(c.weights))
            XCTAssertEqual(r.support, c.support, "case \(n): support samples")
            assertClose(r.loss.scalars, c.value, "case \(n)")
            r.loss.backward()
            assertClose(x.grad?.scalars ?? [], c.grad_logits, "case \(n): gradient")
        }
    }
}
