import Kernels
import Autodiff
import NN

/// The running state of the decoupled detector's stateful losses, kept in buffers so a checkpoint
/// carries it and a resumed run continues bit for bit: the number of loss evaluations (the
/// small-loss warm-up and the softmax-EQL draws follow it), GHM-C's smoothed bin counts, EQLv2's
/// accumulated gradients and Seesaw's cumulative type counts. The loss objects are rebuilt from the
/// buffers at each step (their `restore`) and written back after it.
public final class DecoupledLossState: Module {
    @Buffer public var steps: Tensor
    @Buffer public var ghmCounts: Tensor
    @Buffer public var eqlv2Positive: Tensor
    @Buffer public var eqlv2Negative: Tensor
    @Buffer public var seesawCounts: Tensor
    let ghm: GHMC?
    let eqlv2: EQLv2?
    let seesaw: SeesawLoss?

    init(config c: DecoupledConfig) throws {
        let k = c.numTypes
        steps = Tensor.zeros([1])
        ghm = c.objectness == .ghmc ? try GHMC(bins: c.ghmBins, momentum: Double(c.ghmMomentum)) : nil
        eqlv2 = c.typeLoss == .eqlv2 ? try EQLv2(numClasses: k, gamma: c.eqlv2Gamma, mu: c.eqlv2Mu, alpha: c.eqlv2Alpha) : nil
        seesaw = c.typeLoss == .seesaw ? try SeesawLoss(numClasses: k, p: c.seesawP, q: c.seesawQ) : nil
        ghmCounts = Tensor(shape: [c.ghmBins], scalars: ghm?.accumulatedCounts ?? [Float](repeating: 0, count: c.ghmBins))
        eqlv2Positive = Tensor(shape: [k], scalars: eqlv2?.positiveGradients ?? [Float](repeating: 0, count: k))
        eqlv2Negative = Tensor(shape: [k], scalars: eqlv2?.negativeGradients ?? [Float](repeating: 0, count: k))
        seesawCounts = Tensor(shape: [k], scalars: seesaw?.cumulativeSamples ?? [Float](repeating: 0, count: k))
        super.init()
    }

    /// The index of this loss evaluation (0 for the first), counted up.
    func nextStep() -> Int {
        let s = Int(steps.pointer[0])
        steps.pointer[0] += 1
        return s
    }

    /// GHM-C with the counts of the buffers; the counts go back after `body`.
    func withGHMC<T>(_ body: (GHMC) -> T) -> T {
        guard let g = ghm else { preconditionFailure("DecoupledLossState: GHM-C is not the objectness loss") }
        try! g.restore(accumulatedCounts: ghmCounts.scalars)   // same count as built: cannot throw
        let out = body(g)
        write(g.accumulatedCounts, to: ghmCounts)
        return out
    }

    func withEQLv2<T>(_ body: (EQLv2) -> T) -> T {
        guard let e = eqlv2 else { preconditionFailure("DecoupledLossState: EQLv2 is not the type loss") }
        try! e.restore(positiveGradients: eqlv2Positive.scalars, negativeGradients: eqlv2Negative.scalars)
        let out = body(e)
        write(e.positiveGradients, to: eqlv2Positive); write(e.negativeGradients, to: eqlv2Negative)
        return out
    }

    func withSeesaw<T>(_ body: (SeesawLoss) -> T) -> T {
        guard let s = seesaw else { preconditionFailure("DecoupledLossState: Seesaw is not the type loss") }
        try! s.restore(cumulativeSamples: seesawCounts.scalars)
        let out = body(s)
        write(s.cumulativeSamples, to: seesawCounts)
        return out
    }

    private func write(_ v: [Float], to t: Tensor) {
        precondition(v.count == t.count, "DecoupledLossState: \(v.count) values for a buffer of \(t.count)")
        for (i, x) in v.enumerated() { t.pointer[i] = x }
    }
}
