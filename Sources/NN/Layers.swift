import Kernels
import Autodiff

/// 2-D convolution with PyTorch's layout and default init (kaiming uniform a = sqrt(5), bias
/// uniform(+-1/sqrt(fan_in))). `weight` is [out, in/groups, kh, kw].
public final class Conv2d: Module, QuantizableLayer, BiasCorrectable {
    @Param public var weight: Tensor
    @OptionalParam public var bias: Tensor?
    /// Fake quantizers installed by `quantize(model, plan)`: applied to the weight and to the input.
    public var weightQuantizer: Module?
    public var inputQuantizer: Module?
    /// A following BatchNorm folded into this conv during QAT (torch.ao ConvBn2d): the weight is scaled
    /// by gamma/sqrt(running_var + eps) before the weight quantizer, the BN then normalises the rescaled
    /// output. The BN stays at its own path (checkpoint keys do not move) and passes values through.
    public var foldedBN: FoldedBatchNorm?
    /// Fuse a per-tensor input quantizer into depthwise convs (same values and gradients, less memory
    /// traffic). Off only to compare against the unfused path.
    public var fuseInputQuantizer = true
    /// Channel counts and groups change only when channels are removed (`keepChannels`).
    public internal(set) var inChannels: Int, outChannels: Int, groups: Int
    public let kernelSize: (Int, Int), stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)
    public var quantizationChannels: (output: Int, input: Int) { (outChannels, inChannels) }
    public var weightGroups: Int { groups }
    public var acceptsBiasCorrection: Bool { foldedBN == nil }

    /// Throws a `ShapeError` for impossible channel/group combinations or non-positive sizes.
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true,
                rng: inout RNG) throws {
        guard inChannels > 0, outChannels > 0, groups > 0, inChannels % groups == 0, outChannels % groups == 0 else {
            throw ShapeError(op: "Conv2d", "in \(inChannels) and out \(outChannels) channels must be positive and divisible by groups \(groups)")
        }
        guard kernelSize.0 > 0, kernelSize.1 > 0, stride.0 > 0, stride.1 > 0, dilation.0 > 0, dilation.1 > 0, padding.0 >= 0, padding.1 >= 0 else {
            throw ShapeError(op: "Conv2d", "kernel \(kernelSize), stride \(stride), dilation \(dilation) must be positive and padding \(padding) non-negative")
        }
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernelSize = kernelSize; self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
        let w = Tensor.zeros([outChannels, inChannels / groups, kernelSize.0, kernelSize.1])
        Init.kaimingUniform(w, gain: (2.0 / 6.0 as Float).squareRoot(), rng: &rng)
        self.weight = w
        if bias {
            let b = Tensor.zeros([outChannels])
            Init.uniform(b, bound: 1 / Float(Init.fans(w.shape).0).squareRoot(), rng: &rng)
            self.bias = b
        } else { self.bias = nil }
        super.init()
    }

    /// Square kernel, "same" padding for odd kernels at stride 1 (the common MobileNet/ResNet case).
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int? = nil,
                            dilation: Int = 1, groups: Int = 1, bias: Bool = true, rng: inout RNG) throws {
        let p = padding ?? (kernel - 1) / 2 * dilation
        try self.init(inChannels, outChannels, kernelSize: (kernel, kernel), stride: (stride, stride), padding: (p, p),
                      dilation: (dilation, dilation), groups: groups, bias: bias, rng: &rng)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        if isFusableDepthwise, let fq = (inputQuantizer as? FusableInputQuantizer)?.fusedInputQuantization(for: x) {
            let src = fq.fuseActivation ? x.activationSource : nil
            return depthwiseQuantized(src?.input ?? x, fq, src?.kind)
        }
        return convolve(inputQuantizer?(x) ?? x)
    }

    /// A depthwise conv whose per-tensor input quantizer runs inside the conv kernel.
    /// Each output channel computed from its own input channel (groups == in == out > 1).
    var isDepthwise: Bool { groups > 1 && groups == inChannels && groups == outChannels }

    var isFusableDepthwise: Bool {
        fuseInputQuantizer && foldedBN == nil && isDepthwise
    }

    /// The fused depthwise conv of fake_quant(act(x)) (act nil: of fake_quant(x)).
    func depthwiseQuantized(_ x: Tensor, _ fq: FusedInputQuantization, _ act: FakeQuant.PreActivation?) -> Tensor {
        let w = weightQuantizer?(weight) ?? weight
        let y = x.depthwiseConv2dQuantizedInput(w, bias: bias, stride: stride, padding: padding, dilation: dilation,
                                                scale: fq.scale, zeroPoint: fq.zeroPoint, qmin: fq.qmin, qmax: fq.qmax,
                                                gradFactor: fq.gradFactor, ste: fq.ste, preActivation: act)
        if let c = MACCounter.current { c.add(path, Shape.count(y.shape) / y.shape[0] * kernelSize.0 * kernelSize.1) }
        return y
    }

    /// The conv of an already quantized input (weight quantizer, folded BN).
    func convolve(_ xin: Tensor) -> Tensor {
        let y: Tensor
        if let bn = foldedBN?.bn {
            y = foldedForward(xin, bn)
        } else {
            let w = weightQuantizer?(weight) ?? weight
            y = xin.conv2d(w, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
        }
        if let c = MACCounter.current { c.add(path, Shape.count(y.shape) / y.shape[0] * (inChannels / groups) * kernelSize.0 * kernelSize.1) }
        return y
    }

    public override var takesPreActivatedInput: Bool {
        guard let q = inputQuantizer as? FusableInputQuantizer else { return false }
        return !q.needsMaterializedInput
    }

    /// forward(act(a)) with the input quantizer applied to act(a) in one fused op; nil without a
    /// quantizer that can take it now.
    public override func forward(preActivated a: Tensor, _ act: FakeQuant.PreActivation) -> Tensor? {
        guard let q = inputQuantizer as? FusableInputQuantizer, !q.needsMaterializedInput else { return nil }
        if isFusableDepthwise, let fq = q.fusedInputQuantization(for: a) { return depthwiseQuantized(a, fq, act) }
        guard let xin = q.quantize(preActivated: a, act) else { return nil }
        return convolve(xin)
    }

    /// torch.ao.nn.intrinsic.qat.ConvBn2d's forward: running statistics fold the weight (so the quantized
    /// weight is the deployed one); the conv output is un-scaled and the BN applied with batch statistics
    /// while training (running statistics in eval or once frozen).
    func foldedForward(_ x: Tensor, _ bn: BatchNorm2d) -> Tensor {
        let c = outChannels
        let runningStd = noGrad { (bn.runningVar + bn.eps).sqrt() }
        let scaleFactor = bn.weight / runningStd                      // gamma / sigma, differentiable in gamma
        let wFold = weight * scaleFactor.reshaped([c, 1, 1, 1])
        let wq = weightQuantizer?(wFold) ?? wFold
        var y = x.conv2d(wq, bias: nil, stride: stride, padding: padding, dilation: dilation, groups: groups)
        y = y / scaleFactor.reshaped([1, c, 1, 1])
        if let bias { y = y + bias.reshaped([1, c, 1, 1]) }
        let batchStats = bn.isTraining && !bn.frozenStatistics
        return y.batchNorm(weight: bn.weight, bias: bn.bias, runningMean: bn.runningMean, runningVar: bn.runningVar,
                           training: batchStats, momentum: bn.momentum, eps: bn.eps, sync: bn.sync)
    }
}

/// y = x W^T + b with W [out, in] (PyTorch layout and default init).
public final class Linear: Module, QuantizableLayer {
    @Param public var weight: Tensor
    @OptionalParam public var bias: Tensor?
    public var weightQuantizer: Module?
    public var inputQuantizer: Module?
    /// Change only when features are removed (`keepChannels`).
    public internal(set) var inFeatures: Int, outFeatures: Int
    public var quantizationChannels: (output: Int, input: Int) { (outFeatures, inFeatures) }

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, rng: inout RNG) throws {
        guard inFeatures > 0, outFeatures > 0 else { throw ShapeError(op: "Linear", "features must be positive, got \(inFeatures) -> \(outFeatures)") }
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
        let w = Tensor.zeros([outFeatures, inFeatures])
        Init.kaimingUniform(w, gain: (2.0 / 6.0 as Float).squareRoot(), rng: &rng)
        self.weight = w
        if bias {
            let b = Tensor.zeros([outFeatures])
            Init.uniform(b, bound: 1 / Float(inFeatures).squareRoot(), rng: &rng)
            self.bias = b
        } else { self.bias = nil }
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == inFeatures, "Linear(\(inFeatures) -> \(outFeatures)) at '\(path)': input shape \(x.shape) must be [N, \(inFeatures)]")
        let xin = inputQuantizer?(x) ?? x
        let w = weightQuantizer?(weight) ?? weight
        var y = xin.matmul(w.transposed())
        if let bias { y = y + bias }
        if let c = MACCounter.current { c.add(path, inFeatures * outFeatures) }
        return y
    }
}

/// Batch normalisation over channels of NCHW input; PyTorch defaults eps 1e-5, momentum 0.1.
public final class BatchNorm2d: Module {
    @Param public var weight: Tensor
    @Param public var bias: Tensor
    @Buffer public var runningMean: Tensor
    @Buffer public var runningVar: Tensor
    public let eps: Float
    /// Weight of a batch's statistics in the running ones (PyTorch's momentum): running = (1 - m) running
    /// + m batch. `BatchNormReestimation` sets 1/k on the k-th batch for a cumulative average.
    public var momentum: Float
    /// When true, training-mode forwards still normalise with (and never update) the running statistics.
    public var frozenStatistics = false
    /// Set when the preceding conv folds this BN (it then applies the normalisation itself).
    public var isFolded = false
    /// Data-parallel training with synchronised BatchNorm: training-mode statistics over every process's
    /// batch (`SyncBatchNorm.convert`); nil: this process's batch only.
    public var sync: CrossProcessSum?

    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        precondition(channels > 0, "BatchNorm2d: channels must be positive, got \(channels)")
        weight = Tensor.ones([channels]); bias = Tensor.zeros([channels])
        runningMean = Tensor.zeros([channels]); runningVar = Tensor.ones([channels])
        self.eps = eps; self.momentum = momentum
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        if isFolded { return x }
        let batch = isTraining && !frozenStatistics
        return x.batchNorm(weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                           training: batch, momentum: momentum, eps: eps, sync: sync)
    }
}

/// Group normalisation (Wu & He 2018), composed from primitives. Default eps 1e-5, affine.
public final class GroupNorm: Module {
    @Param public var weight: Tensor
    @Param public var bias: Tensor
    public let groups: Int, channels: Int, eps: Float

    public init(groups: Int, channels: Int, eps: Float = 1e-5) throws {
        guard groups > 0, channels > 0, channels % groups == 0 else {
            throw ShapeError(op: "GroupNorm", "channels \(channels) must be divisible by groups \(groups)")
        }
        self.groups = groups; self.channels = channels; self.eps = eps
        weight = Tensor.ones([channels]); bias = Tensor.zeros([channels])
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == channels, "GroupNorm(\(groups), \(channels)) at '\(path)': input shape \(x.shape)")
        let n = x.shape[0]
        let g = x.reshaped([n, groups, -1])
        let mu = g.mean(axes: [2], keepDims: true)
        let d = g - mu
        let v = d.square().mean(axes: [2], keepDims: true)
        let xhat = (d / (v + eps).sqrt()).reshaped(x.shape)
        return xhat * weight.reshaped([1, channels, 1, 1]) + bias.reshaped([1, channels, 1, 1])
    }
}

/// Inverted dropout: in training, zeroes each element with probability p and scales the rest by 1/(1-p).
public final class Dropout: Module, RandomStateful {
    public var p: Float
    public var rng: RNG

    public init(p: Float = 0.5, seed: UInt64 = 0) {
        precondition(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got \(p)")
        self.p = p; self.rng = RNG(seed: seed)
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        guard isTraining && p > 0 else { return x }
        let mask = Tensor.zeros(x.shape)
        rng.fillBernoulli(mask.pointer, count: mask.count, p: 1 - p)
        return x * mask.scaled(1 / (1 - p))
    }
}

public final class Identity: Module {
    public override init() { super.init() }
    public override func forward(_ x: Tensor) -> Tensor { x }
}

/// Applies its layers in order; children are named "0", "1", ... as in PyTorch.
public final class Sequential: Module {
    /// Fuse conv -> BatchNorm2d -> relu/relu6 at inference (`InferenceFusable`; same values within
    /// rounding). Off only to compare against the unfused path.
    public nonisolated(unsafe) static var inferenceFusion = true
    public var layers: [Module]
    public init(_ layers: [Module]) { self.layers = layers; super.init() }
    public convenience init(_ layers: Module...) { self.init(layers) }
    public override func namedChildren() -> [(String, Module)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }
    /// Runs the layers in order. A relu/relu6 ending one layer (`trailingActivation`) whose output goes
    /// into a layer that can take it pre-activated (a conv with an input quantizer) is not materialised:
    /// the next layer quantizes act(input) in one op. Values and gradients are the same either way.
    public override func forward(_ x: Tensor) -> Tensor { run(x, from: 0, upTo: layers.count) }

    func run(_ x: Tensor, from start: Int, upTo end: Int) -> Tensor {
        var h = x, i = start
        let inference = Sequential.inferenceFusion && !isTraining && !GradMode.isEnabled
        while i < end {
            let layer = layers[i]
            // Inference: conv [-> BatchNorm2d] [-> relu/relu6] in one pass (`InferenceFusable`).
            if inference, let f = layer as? InferenceFusable {
                var j = i + 1
                var bn: BatchNorm2d? = nil, act: FakeQuant.PreActivation? = nil
                if j < end, let b = layers[j] as? BatchNorm2d { bn = b; j += 1 }
                if j < end, let a = layers[j] as? Activation, let kind = a.trailingActivation { act = kind; j += 1 }
                if bn != nil || act != nil, let y = f.inferenceForward(h, batchNorm: bn, activation: act) { h = y; i = j; continue }
            }
            if i + 1 < end, let act = layer.trailingActivation, !inference || layers[i + 1].takesPreActivatedInput {
                let a = layer.forwardWithoutTrailingActivation(h)
                if let y = layers[i + 1].forward(preActivated: a, act) { h = y; i += 2; continue }
                h = a.activated(act); i += 1; continue
            }
            h = layer(h); i += 1
        }
        return h
    }

    public override var trailingActivation: FakeQuant.PreActivation? { layers.last?.trailingActivation }
    public override func forwardWithoutTrailingActivation(_ x: Tensor) -> Tensor {
        layers[layers.count - 1].forwardWithoutTrailingActivation(run(x, from: 0, upTo: layers.count - 1))
    }
    public override var takesPreActivatedInput: Bool { layers.first?.takesPreActivatedInput ?? false }
    public override func forward(preActivated a: Tensor, _ act: FakeQuant.PreActivation) -> Tensor? {
        guard let first = layers.first, let y = first.forward(preActivated: a, act) else { return nil }
        return run(y, from: 1, upTo: layers.count)
    }
    public subscript(i: Int) -> Module { layers[i] }
    public var count: Int { layers.count }
}

extension Sequential: ConvBatchNormPairs, EqualizableChains {
    /// Each Conv2d directly followed by a BatchNorm2d (torchvision's conv-norm-activation).
    public var convBatchNormPairs: [(conv: Conv2d, bn: BatchNorm2d, bnPath: String)] {
        (0..<max(0, count - 1)).compactMap { i in
            guard let c = layers[i] as? Conv2d, let bn = layers[i + 1] as? BatchNorm2d else { return nil }
            return (c, bn, "\(i + 1)")
        }
    }

    /// Leaf layers in execution order (nested Sequentials flattened), with the Sequential and index
    /// that hold each, so an activation can be replaced in place.
    func flattenedLayers() -> [(layer: Module, holder: Sequential, index: Int)] {
        var out: [(Module, Sequential, Int)] = []
        for (i, m) in layers.enumerated() {
            if let inner = m as? Sequential { out += inner.flattenedLayers() } else { out.append((m, self, i)) }
        }
        return out
    }

    /// Every conv -> BatchNorm* -> activation -> conv run of the flattened layers; chains cross the
    /// boundaries of nested Sequentials (a conv-norm-activation followed by a projection conv).
    public var equalizableChains: [EqualizableChain] {
        let flat = flattenedLayers()
        var out: [EqualizableChain] = []
        for i in flat.indices {
            guard let c1 = flat[i].layer as? Conv2d else { continue }
            var j = i + 1, bns: [BatchNorm2d] = []
            while j < flat.count, let bn = flat[j].layer as? BatchNorm2d { bns.append(bn); j += 1 }
            guard j + 1 < flat.count, let act = flat[j].layer as? Activation, let c2 = flat[j + 1].layer as? Conv2d else { continue }
            let (holder, index) = (flat[j].holder, flat[j].index)
            out.append(EqualizableChain(first: c1, batchNorms: bns, activation: act.kind, second: c2,
                                        replaceActivationWithReLU: { holder.layers[index] = Activation(.relu) }))
        }
        return out
    }
}

/// Activation functions as modules.
public final class Activation: Module {
    public enum Kind: String, Sendable, CaseIterable { case relu, relu6, hardswish, hardsigmoid, sigmoid, silu, tanh, leakyRelu = "leaky_relu" }
    public let kind: Kind
    public let slope: Float
    public init(_ kind: Kind, slope: Float = 0.01) { self.kind = kind; self.slope = slope; super.init() }
    public override var trailingActivation: FakeQuant.PreActivation? {
        switch kind { case .relu: return .relu; case .relu6: return .relu6; case .hardswish: return .hardswish; default: return nil }
    }
    public override func forwardWithoutTrailingActivation(_ x: Tensor) -> Tensor { x }
    public override func forward(_ x: Tensor) -> Tensor {
        switch kind {
        case .relu: return x.relu()
        case .relu6: return x.relu6()
        case .hardswish: return x.hardswish()
        case .hardsigmoid: return x.hardsigmoid()
        case .sigmoid: return x.sigmoid()
        case .silu: return x.silu()
        case .tanh: return x.tanh()
        case .leakyRelu: return x.leakyRelu(slope)
        }
    }
}

/// A layer that, at inference (eval mode, no gradient recorded), absorbs the BatchNorm2d (running
/// statistics) and the relu/relu6 that follow it into its own output pass: one write of the activation
/// instead of a conv pass, a normalisation pass and an activation pass. nil: run the layers one by one.
public protocol InferenceFusable: AnyObject {
    func inferenceForward(_ x: Tensor, batchNorm: BatchNorm2d?, activation: FakeQuant.PreActivation?) -> Tensor?
}

extension Conv2d: InferenceFusable {
    /// The BN folded into the conv as `ConvBatchNormFolding` does for deployment: w' = w * gamma / sqrt(var +
    /// eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta; the activation clamps in the conv's epilogue.
    /// Not with quantizers or a QAT-folded BN (those run their own ops).
    public func inferenceForward(_ x: Tensor, batchNorm bn: BatchNorm2d?, activation: FakeQuant.PreActivation?) -> Tensor? {
        guard weightQuantizer == nil, inputQuantizer == nil, foldedBN == nil, !GradMode.isEnabled else { return nil }
        var w = weight, b = bias
        if let bn {
            guard !bn.isTraining, !bn.isFolded, bn.weight.shape == [outChannels] else { return nil }
            let s = bn.weight / (bn.runningVar + bn.eps).sqrt()
            w = weight * s.reshaped([outChannels, 1, 1, 1])
            b = ((bias ?? Tensor.zeros([outChannels])) - bn.runningMean) * s + bn.bias
        }
        // The epilogue clamps relu and relu6; hardswish runs as its own op on the fused conv + BN output.
        let clamp: ClosedRange<Float>? = activation.flatMap { $0 == .relu ? 0...Float.infinity : $0 == .relu6 ? 0...6 : nil }
        var y = x.conv2dInference(w, bias: b, stride: stride, padding: padding, dilation: dilation, groups: groups, clamp: clamp)
        if activation == .hardswish { y = y.hardswish() }
        if let c = MACCounter.current { c.add(path, Shape.count(y.shape) / y.shape[0] * (inChannels / groups) * kernelSize.0 * kernelSize.1) }
        return y
    }
}

/// A reference to a BatchNorm2d that a conv folds. A struct, so reflection does not list the BN twice.
public struct FoldedBatchNorm {
    public let bn: BatchNorm2d
    public init(_ bn: BatchNorm2d) { self.bn = bn }
}
