import Foundation
import Kernels
import Autodiff
import NN

/// How to build one quantizer.
public struct QuantizerSpec: Sendable, Equatable {
    public var bits: Int
    public var signed: Bool
    public var narrow: Bool
    public var symmetric: Bool
    /// Per output channel for weights (axis 0), per feature channel (axis 1) for activations.
    public var perChannel: Bool
    public var mode: FakeQuantize.Mode
    public var rangeMethod: RangeMethod
    public var gradFactor: FakeQuantize.GradFactor
    public var ste: STE
    public var dropout: QuantDropout?

    public init(bits: Int = 8, signed: Bool = false, narrow: Bool = false, symmetric: Bool = false, perChannel: Bool = false,
                mode: FakeQuantize.Mode = .learnable(learnZeroPoint: true), rangeMethod: RangeMethod = .minMax,
                gradFactor: FakeQuantize.GradFactor = .lsqPyTorch, ste: STE = .clipped, dropout: QuantDropout? = nil) {
        self.bits = bits; self.signed = signed; self.narrow = narrow; self.symmetric = symmetric; self.perChannel = perChannel
        self.mode = mode; self.rangeMethod = rangeMethod; self.gradFactor = gradFactor; self.ste = ste; self.dropout = dropout
    }

    /// Default weight quantizer: 8-bit per-output-channel asymmetric, learnable scale and zero point.
    public static let weightDefault = QuantizerSpec(perChannel: true)
    /// Default activation quantizer: 8-bit per-tensor asymmetric, learnable scale and zero point.
    public static let activationDefault = QuantizerSpec()

    func make(channels: Int, axis: Int, path: String, seed: UInt64) throws -> FakeQuantize {
        let scheme = QuantScheme(bits: bits, signed: signed, narrow: narrow, symmetric: symmetric, axis: perChannel ? axis : nil)
        return try FakeQuantize(scheme: scheme, channels: perChannel ? channels : 1, mode: mode, rangeMethod: rangeMethod,
                                gradFactor: gradFactor, ste: ste, dropout: dropout, seed: seed, path: path)
    }
}

/// Which layers to quantize and how (`quantize(model, plan)`).
public struct QuantPlan: Sendable {
    /// A per-path change; every override whose glob matches a layer applies, later ones last.
    public struct Override: Sendable {
        public var pattern: String
        public var skip: Bool
        public var weight: QuantizerSpec?
        public var input: QuantizerSpec?
        public var weightBits: Int?
        public var inputBits: Int?
        public init(_ pattern: String, skip: Bool = false, weight: QuantizerSpec? = nil, input: QuantizerSpec? = nil,
                    weightBits: Int? = nil, inputBits: Int? = nil) {
            self.pattern = pattern; self.skip = skip; self.weight = weight; self.input = input
            self.weightBits = weightBits; self.inputBits = inputBits
        }
    }

    public var weight: QuantizerSpec
    public var activation: QuantizerSpec
    /// Quantize the weights of convs and linear layers (false: activations only).
    public var quantizeWeights = true
    /// Quantize the inputs of convs and linear layers.
    public var quantizeInputs: Bool
    /// Requantize after residual adds (where an integer graph would).
    public var quantizeResidualAdds: Bool
    /// Fold each Conv2d + BatchNorm2d pair (torch.ao ConvBn2d), freezing BN statistics after `freezeBNAfter` steps.
    public var foldBN: Bool
    public var freezeBNAfter: Int?
    public var overrides: [Override]
    public var seed: UInt64

    public init(weight: QuantizerSpec = .weightDefault, activation: QuantizerSpec = .activationDefault, quantizeInputs: Bool = true,
                quantizeResidualAdds: Bool = true, foldBN: Bool = false, freezeBNAfter: Int? = nil, overrides: [Override] = [], seed: UInt64 = 0) {
        self.weight = weight; self.activation = activation; self.quantizeInputs = quantizeInputs
        self.quantizeResidualAdds = quantizeResidualAdds; self.foldBN = foldBN; self.freezeBNAfter = freezeBNAfter
        self.overrides = overrides; self.seed = seed
    }

    /// W`w`A`a` with the defaults (e.g. w8a8, w4a4).
    public static func bits(weight w: Int, activation a: Int) -> QuantPlan {
        var p = QuantPlan()
        p.weight.bits = w; p.activation.bits = a
        return p
    }
}

/// A quantized model's quantizers and folded BatchNorms, with the controls a training loop needs.
public final class QATHandle {
    public let quantizedLayers: [String]
    public let quantizers: [(String, FakeQuantize)]
    public let foldedBN: [(String, BatchNorm2d)]
    public let freezeBNAfter: Int?

    init(layers: [String], quantizers: [(String, FakeQuantize)], folded: [(String, BatchNorm2d)], freezeBNAfter: Int?) {
        quantizedLayers = layers; self.quantizers = quantizers; foldedBN = folded; self.freezeBNAfter = freezeBNAfter
    }

    /// Tells quantizers the optimizer step (dropout schedules) and freezes folded BN statistics once due.
    public func setStep(_ step: Int) {
        for (_, q) in quantizers { q.step = step }
        if let f = freezeBNAfter { for (_, bn) in foldedBN { bn.frozenStatistics = step >= f } }
    }

    /// Turns fake quantization on or off everywhere (off: the float path, e.g. to evaluate FP32 weights).
    public func setEnabled(_ on: Bool) { for (_, q) in quantizers { q.enabled = on } }

    /// Clamps every scale to [eps, finite] (the forward does this too); call after an optimizer step
    /// so checkpoints never hold a scale that an update pushed below zero.
    public func clampScales() { for (_, q) in quantizers { q.sanitizeScale() } }

    /// Which BatchNorm statistics the activations seen by calibration are normalised with.
    public enum CalibrationStatistics: String, Sendable, CaseIterable {
        /// Running statistics (eval mode): what a deployed (PTQ) model computes.
        case running
        /// Each calibration batch's own statistics, as the QAT forward uses them while training (torch.ao's
        /// QAT observers see training-mode activations). The running statistics are left unchanged.
        case batch
    }

    /// PTQ / QAT initialisation: runs `forward` on each calibration batch with every quantizer observing,
    /// without gradients and with dropout off, then restores every module's mode. With `.batch`, each
    /// BatchNorm2d normalises with the batch's statistics (a folded BN frozen from step 0 keeps its running
    /// ones, as its QAT forward does) and its running statistics, momentum-averaged by that forward, are put
    /// back; a cross-process (synchronised) BN uses this process's batch alone.
    public func calibrate(_ model: Module, batches: [Tensor], statistics: CalibrationStatistics = .running,
                          forward: (Tensor) -> Tensor) {
        // Running statistics: every BN excluded, so the whole model runs in eval mode. Batch statistics: a
        // folded BN frozen from step 0 excluded, as its QAT forward uses its running statistics.
        let bns = model.namedModules().compactMap { ($0.1 as? BatchNorm2d).map(ObjectIdentifier.init) }
        let excluding = Set(statistics == .running ? bns : freezeBNAfter == 0 ? foldedBN.map { ObjectIdentifier($0.1) } : [])
        BatchStatisticsMode.run(model, excluding: excluding) { norms in
            let saved = norms.map { ($0.1.runningMean.scalars, $0.1.runningVar.scalars) }
            for (_, bn) in norms { bn.sync = nil }
            for (_, q) in quantizers { q.calibrating = true; q.observer = Observer(q.rangeMethod) }
            noGrad { for b in batches { _ = forward(b) } }
            for (_, q) in quantizers { q.calibrating = false }
            for ((_, bn), (mean, variance)) in zip(norms, saved) {
                bn.runningMean.pointer.update(from: mean, count: mean.count); bn.runningVar.pointer.update(from: variance, count: variance.count)
            }
        }
    }
}

/// FNV-1a of a path: per-quantizer RNG seeds that do not depend on construction order.
func stableHash(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

/// Installs fake quantizers on every `QuantizableLayer` (weight and input) and after the add of every
/// `AddQuantizable` block, following `plan`; optionally folds the Conv+BN pairs that modules report
/// (`ConvBatchNormPairs`). Throws when a spec is invalid or an override pattern matches no layer.
@discardableResult
public func quantize(_ model: Module, plan: QuantPlan) throws -> QATHandle {
    model.assignPaths()
    var matched = [Bool](repeating: false, count: plan.overrides.count)
    var layers: [String] = []
    var quantizers: [(String, FakeQuantize)] = []
    let modules = model.namedModules()

    func specs(for path: String) -> (QuantizerSpec, QuantizerSpec, Bool) {
        var w = plan.weight, a = plan.activation, skip = false
        for (i, o) in plan.overrides.enumerated() where Glob.matches(o.pattern, path) {
            matched[i] = true
            if o.skip { skip = true }
            if let s = o.weight { w = s }
            if let s = o.input { a = s }
            if let b = o.weightBits { w.bits = b }
            if let b = o.inputBits { a.bits = b }
        }
        return (w, a, skip)
    }

    /// Weight and input quantizers for one layer; returns nil when an override skips it.
    func install(_ path: String, out: Int, in inCh: Int) throws -> (FakeQuantize?, FakeQuantize?)? {
        let (w, a, skip) = specs(for: path)
        if skip || !(plan.quantizeWeights || plan.quantizeInputs) { return nil }
        var wq: FakeQuantize? = nil
        if plan.quantizeWeights {
            wq = try w.make(channels: out, axis: 0, path: path + ".weightQuantizer", seed: plan.seed ^ stableHash(path + ".w"))
            quantizers.append((path + ".weightQuantizer", wq!))
        }
        var iq: FakeQuantize? = nil
        if plan.quantizeInputs {
            iq = try a.make(channels: inCh, axis: 1, path: path + ".inputQuantizer", seed: plan.seed ^ stableHash(path + ".a"))
            quantizers.append((path + ".inputQuantizer", iq!))
        }
        layers.append(path)
        return (wq, iq)
    }

    for (path, m) in modules {
        if let layer = m as? QuantizableLayer,
           let (wq, iq) = try install(path, out: layer.quantizationChannels.output, in: layer.quantizationChannels.input) {
            layer.weightQuantizer = wq; layer.inputQuantizer = iq
        }
    }
    if plan.quantizeResidualAdds {
        for (path, m) in modules {
            guard let block = m as? AddQuantizable, block.hasQuantizableAdd else { continue }
            let p = path + ".addQuantizer"
            // Per tensor even when inputs are per channel: an integer add requantizes both operands to one scale.
            var spec = plan.activation
            spec.perChannel = false
            let q = try spec.make(channels: 1, axis: 1, path: p, seed: plan.seed ^ stableHash(p))
            block.addQuantizer = q; quantizers.append((p, q))
        }
    }
    for (i, ok) in matched.enumerated() where !ok {
        let examples = modules.filter { $0.1 is QuantizableLayer }.prefix(3).map(\.0).joined(separator: ", ")
        throw QuantConfigError(path: plan.overrides[i].pattern, "override pattern matches no quantizable layer (Conv2d, Linear, ...; layer paths look like: \(examples))")
    }
    var folded: [(String, BatchNorm2d)] = []
    if plan.foldBN {
        for (conv, bn, p) in foldablePairs(modules)
        where (conv.weightQuantizer != nil || conv.inputQuantizer != nil) && bn.weight.count == conv.outChannels {
            conv.foldedBN = FoldedBatchNorm(bn); bn.isFolded = true; folded.append((p, bn))
        }
    }
    model.assignPaths()
    return QATHandle(layers: layers, quantizers: quantizers, folded: folded, freezeBNAfter: plan.freezeBNAfter)
}

/// Every Conv2d -> BatchNorm2d pair that a module reports (`ConvBatchNormPairs`), with the BN's path
/// from the root.
func foldablePairs(_ modules: [(String, Module)]) -> [(Conv2d, BatchNorm2d, String)] {
    modules.flatMap { path, m in
        (m as? ConvBatchNormPairs)?.convBatchNormPairs.map { ($0.conv, $0.bn, path.isEmpty ? $0.bnPath : "\(path).\($0.bnPath)") } ?? []
    }
}
