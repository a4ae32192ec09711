import Foundation
import Kernels
import Autodiff
import NN
import Optim

/// AdaRound (Nagel et al. 2020): learned rounding of weights for PTQ. For each conv/linear layer in
/// model order, with its weight quantizer's calibrated scale s and zero point z fixed,
///   W~ = s * (clamp(floor(W/s) + h(V) + z, qmin, qmax) - z),  h(V) = clamp(sigmoid(V)(zeta - gamma) + gamma, 0, 1)
/// (zeta 1.1, gamma -0.1), V initialised so that h(V) = frac(W/s), is trained with Adam to minimise
///   || W x - W~ x^ ||^2 (summed over output channels, averaged over positions) + lambda * sum(1 - |2 h(V) - 1|^beta)
/// on calibration data, where x is the layer's input in the float model and x^ its (quantized) input in
/// the model whose earlier layers are already rounded (the paper's asymmetric reconstruction). The
/// regulariser is off for the first `warmStart` share of iterations, then beta anneals from `betaStart`
/// to `betaEnd` by a cosine. Finally every weight is rounded down or up (h >= 1/2: up) and written into
/// the layer, on the quantizer's grid, so the unchanged weight quantizer reproduces it exactly. With
/// `heldOutBatches`, the calibration batches after the learning ones check each layer: a learned rounding
/// whose reconstruction error on them is not below round-to-nearest's (it fitted the learning batches
/// only) is dropped for round-to-nearest, as a validation split guards any fit.
public enum AdaRound {
    public struct Config: Sendable, Equatable {
        public var iterations = 1000
        public var learningRate: Float = 0.01
        public var regularization: Float = 0.01
        public var betaStart: Float = 20
        public var betaEnd: Float = 2
        public var warmStart: Float = 0.2
        /// Calibration batches whose layer inputs are kept (memory: one layer's inputs at a time).
        public var batches = 4
        /// Further calibration batches on which each layer's learned rounding must beat round-to-nearest
        /// (0: no check).
        public var heldOutBatches = 0
        public init() {}
    }

    static let zeta: Float = 1.1, gamma: Float = -0.1

    /// One layer's outcome.
    public struct LayerResult: Sendable {
        public var path: String
        /// Reconstruction error (the first term) with round-to-nearest and with the learned rounding.
        public var nearestError: Double
        public var adaRoundError: Double
        /// Share of weights rounded the other way than round-to-nearest.
        public var flipped: Double
        /// On the held-out batches (nil without them): the two errors, and whether round-to-nearest was
        /// kept because the learned rounding did not beat it there.
        public var heldOutNearestError: Double? = nil
        public var heldOutAdaRoundError: Double? = nil
        public var keptNearest = false
        /// The objective (reconstruction over all calibration inputs + the regulariser at the final beta)
        /// at the initial V and at the learned V.
        public var objectiveStart: Double
        public var objectiveEnd: Double
    }

    /// The layer kinds AdaRound handles: y = op(x, w) without bias (the bias does not change the error).
    struct LayerOp {
        let apply: (Tensor, Tensor) -> Tensor
        init?(_ m: Module) {
            if let c = m as? Conv2d, c.foldedBN == nil {
                apply = { x, w in x.conv2d(w, bias: nil, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups) }
            } else if m is Linear {
                apply = { x, w in x.matmul(w.transposed()) }
            } else { return nil }
        }
    }

    /// Records what reaches a layer after its input quantizer (or the raw input without one).
    final class Recorder: Module {
        let inner: Module?
        var kept: [Tensor] = []
        init(_ inner: Module?) { self.inner = inner; super.init() }
        override func forward(_ x: Tensor) -> Tensor {
            let y = inner?(x) ?? x
            kept.append(y.detached())
            return y
        }
    }

    /// Sum over the channel axis (1), mean over the rest, of (a - b)^2.
    static func reconstruction(_ a: Tensor, _ b: Tensor) -> Tensor {
        let d = a - b
        return (d * d).sum().scaled(Float(a.shape[1]) / Float(a.count))
    }

    /// Learns the rounding of `weight` for `quantizer`'s grid from (input, float output) pairs; returns
    /// the rounded weight (on the grid) and the statistics. `inputs` are the quantized-model inputs x^,
    /// `targets` the float outputs W x.
    static func round(weight: Tensor, quantizer: FakeQuantize, op: (Tensor, Tensor) -> Tensor,
                      inputs: [Tensor], targets: [Tensor], heldOut: [(input: Tensor, target: Tensor)] = [],
                      config: Config, path: String) -> (Tensor, LayerResult) {
        let shape = weight.shape, n = weight.count
        let channels = quantizer.channels
        let inner = n / channels
        let lo = Float(quantizer.scheme.qmin), hi = Float(quantizer.scheme.qmax)
        // Per weight: s, z (rounded as the kernel does), floor(W/s) (as the kernel forms W * (1/s)).
        var s = [Float](repeating: 0, count: n), z = [Float](repeating: 0, count: n), base = [Float](repeating: 0, count: n)
        var v0 = [Float](repeating: 0, count: n)
        let w = weight.scalars
        for c in 0..<channels {
            let sc = quantizer.scale.scalars[c]
            let zc = FakeQuant.roundedZeroPoint(quantizer.zeroPoint.scalars[c], qmin: quantizer.scheme.qmin, qmax: quantizer.scheme.qmax)
            let inv = 1 / sc
            for i in (c * inner)..<((c + 1) * inner) {
                let t = w[i] * inv
                let f = t.rounded(.down)
                s[i] = sc; z[i] = zc; base[i] = f + zc
                // h(V0) = frac: sigmoid(V0) = (frac - gamma) / (zeta - gamma), kept inside (0, 1).
                let p = min(max((t - f - gamma) / (zeta - gamma), 1e-4), 1 - 1e-4)
                v0[i] = Foundation.log(p / (1 - p))
            }
        }
        let sT = Tensor(shape: shape, scalars: s), zT = Tensor(shape: shape, scalars: z), baseT = Tensor(shape: shape, scalars: base)
        let v = Tensor(shape: shape, scalars: v0, requiresGrad: true)
        func h(_ v: Tensor) -> Tensor { v.sigmoid().scaled(zeta - gamma).shifted(gamma).clamp(0, 1) }
        func softWeight(_ hv: Tensor) -> Tensor { ((baseT + hv).clamp(lo, hi) - zT) * sT }
        func hardWeight(_ up: [Bool]) -> Tensor {
            var q = [Float](repeating: 0, count: n)
            for i in 0..<n { q[i] = (min(max(base[i] + (up[i] ? 1 : 0), lo), hi) - z[i]) * s[i] }
            return Tensor(shape: shape, scalars: q)
        }
        func error(_ wq: Tensor, _ pairs: [(input: Tensor, target: Tensor)]) -> Double {
            noGrad { pairs.reduce(0.0) { $0 + Double(reconstruction(op($1.input, wq), $1.target).item) } / Double(max(pairs.count, 1)) }
        }
        let learning = Array(zip(inputs, targets)).map { (input: $0.0, target: $0.1) }
        func error(_ wq: Tensor) -> Double { error(wq, learning) }
        func objective() -> Double {
            noGrad {
                let hv = h(v)
                let reg = Double((hv.scaled(2).shifted(-1).abs().pow(config.betaEnd).neg().shifted(1)).sum().item) * Double(config.regularization)
                return error(softWeight(hv)) + reg
            }
        }
        // The fake quantizer rounds w * (1/s) half to even: up when that lands above floor.
        let nearestUp = (0..<n).map { i in (w[i] * (1 / s[i])).rounded(.toNearestOrEven) > (base[i] - z[i]) }
        let nearestError = error(hardWeight(nearestUp))

        let adam = Adam([("V", v)], lr: config.learningRate)
        let warm = Int((Float(config.iterations) * config.warmStart).rounded())
        let objectiveStart = objective()
        for it in 0..<max(config.iterations, 0) {
            let k = it % inputs.count
            let hv = h(v)
            var loss = reconstruction(op(inputs[k], softWeight(hv)), targets[k])
            if it >= warm {
                let rel = Float(it - warm) / Float(max(config.iterations - warm, 1))
                let beta = config.betaEnd + 0.5 * (config.betaStart - config.betaEnd) * (1 + Foundation.cos(rel * .pi))
                let reg = (hv.scaled(2).shifted(-1).abs().pow(beta).neg().shifted(1)).sum().scaled(config.regularization)
                loss = loss + reg
            }
            v.grad = nil
            loss.backward()
            adam.step()
        }
        let objectiveEnd = objective()
        let hFinal = noGrad { h(v) }.scalars
        let up = hFinal.map { $0 >= 0.5 }
        let learned = hardWeight(up)
        let flipped = Double(zip(up, nearestUp).filter { $0 != $1 }.count) / Double(max(n, 1))
        var result = LayerResult(path: path, nearestError: nearestError, adaRoundError: error(learned), flipped: flipped,
                                 objectiveStart: objectiveStart, objectiveEnd: objectiveEnd)
        guard !heldOut.isEmpty else { return (learned, result) }
        let nearest = hardWeight(nearestUp)
        result.heldOutNearestError = error(nearest, heldOut)
        result.heldOutAdaRoundError = error(learned, heldOut)
        result.keptNearest = !(result.heldOutAdaRoundError! < result.heldOutNearestError!)
        return (result.keptNearest ? nearest : learned, result)
    }

    /// Runs AdaRound on every conv/linear layer of a calibrated PTQ model (`handle`), in model order,
    /// replacing each layer's weight by its rounded one. `batches` are calibration inputs; `forward` runs
    /// the model. The model is left in eval mode with every quantizer on.
    @discardableResult
    public static func run(_ model: Module, handle: QATHandle, batches: [Tensor], config: Config = Config(),
                           forward: (Tensor) -> Tensor, log: (String) -> Void = { _ in }) -> [LayerResult] {
        model.eval()
        let learningCount = min(max(1, config.batches), batches.count)
        let data = Array(batches.prefix(learningCount + max(0, config.heldOutBatches)))
        var results: [LayerResult] = []
        let layers = model.namedModules().compactMap { path, m -> (String, QuantizableLayer, FakeQuantize, LayerOp)? in
            guard let l = m as? QuantizableLayer, let q = l.weightQuantizer as? FakeQuantize, q.enabled, let op = LayerOp(m) else { return nil }
            return (path, l, q, op)
        }
        for (i, (path, layer, q, op)) in layers.enumerated() {
            let weight: Tensor
            if let c = layer as? Conv2d { weight = c.weight } else if let l = layer as? Linear { weight = l.weight } else { continue }
            let original = layer.inputQuantizer
            let rec = Recorder(original)
            layer.inputQuantizer = rec
            // Float inputs (every quantizer off), then quantized-model inputs (earlier layers rounded).
            handle.setEnabled(false)
            noGrad { for b in data { _ = forward(b) } }
            let floatInputs = rec.kept; rec.kept = []
            handle.setEnabled(true)
            noGrad { for b in data { _ = forward(b) } }
            let quantInputs = rec.kept; rec.kept = []
            layer.inputQuantizer = original
            let targets = noGrad { floatInputs.map { op.apply($0, weight.detached()) } }
            let heldOut = (learningCount..<quantInputs.count).map { (input: quantInputs[$0], target: targets[$0]) }
            let (rounded, r) = round(weight: weight.detached(), quantizer: q, op: op.apply, inputs: Array(quantInputs.prefix(learningCount)),
                                     targets: Array(targets.prefix(learningCount)), heldOut: heldOut, config: config, path: path)
            weight.pointer.update(from: rounded.pointer, count: weight.count)
            results.append(r)
            var line = String(format: "adaround [%d/%d] %@: error %.4g -> %.4g (nearest -> learned), %.1f%% of weights flipped",
                              i + 1, layers.count, path, r.nearestError, r.adaRoundError, 100 * r.flipped)
            if let hn = r.heldOutNearestError, let ha = r.heldOutAdaRoundError {
                line += String(format: "; held out %.4g -> %.4g", hn, ha) + (r.keptNearest ? ": round-to-nearest kept" : "")
            }
            log(line)
        }
        handle.setEnabled(true)
        return results
    }
}
