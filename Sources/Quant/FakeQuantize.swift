import Foundation
import Kernels
import Autodiff
import NN

/// Quantization dropout (quantization noise, Fan et al. 2020; QDrop, Wei et al. 2022): during training
/// each element (or channel, or the whole tensor) is fake-quantized with probability p and kept in full
/// precision otherwise. p = 1 is plain fake quantization, p = 0 the float path. Evaluation always
/// quantizes everything.
public struct QuantDropout: Sendable, Equatable {
    public enum Granularity: String, Sendable, CaseIterable { case element, channel, tensor }
    public enum Schedule: Sendable, Equatable {
        case constant(Float)
        /// p moves linearly from `start` to `end` over `steps` optimizer steps, then stays at `end`.
        case linear(start: Float, end: Float, steps: Int)
    }
    public var granularity: Granularity
    public var schedule: Schedule
    public init(_ schedule: Schedule, granularity: Granularity = .element) { self.schedule = schedule; self.granularity = granularity }

    public func probability(at step: Int) -> Float {
        switch schedule {
        case .constant(let p): return p
        case let .linear(start, end, steps):
            guard steps > 0 else { return end }
            return start + (end - start) * Float(min(step, steps)) / Float(steps)
        }
    }

    func validate(path: String) throws {
        let ps: [Float]
        switch schedule {
        case .constant(let p): ps = [p]
        case let .linear(s, e, n): ps = [s, e]; guard n >= 0 else { throw QuantConfigError(path: path, "dropout schedule steps \(n) must be >= 0") }
        }
        for p in ps where !(p >= 0 && p <= 1) { throw QuantConfigError(path: path, "quantization dropout probability \(p) is outside [0, 1]") }
    }
}

/// A fake quantizer: a learnable (LSQ / LSQ+), observed or fixed mapping range in front of a weight or
/// an activation. Its `scale` and `zeroPoint` have one value per channel (per-channel) or one.
public final class FakeQuantize: Module, RandomStateful, QuantizerStateful, FusableInputQuantizer {
    public enum Mode: Sendable, Equatable, CustomStringConvertible {
        /// Trained by gradient: LSQ learns the scale; LSQ+ (`learnZeroPoint`) the offset too.
        case learnable(learnZeroPoint: Bool)
        /// Range from the observer at every training step; no gradient to scale or zero point.
        case observed
        /// Range set once (calibration or checkpoint) and never changed.
        case fixed
        public var description: String {
            switch self {
            case .learnable(let z): return z ? "learnable(scale, zero_point)" : "learnable(scale)"
            case .observed: return "observed"
            case .fixed: return "fixed"
            }
        }
    }

    /// Multiplier of the scale and zero-point gradients.
    public enum GradFactor: String, Sendable, CaseIterable {
        /// 1: plain gradient.
        case one
        /// PyTorch's LSQ factor 1/sqrt(numel(x) * qmax), whole-tensor count even per channel.
        case lsqPyTorch = "lsq_pytorch"
        /// MQBench's LSQ factor 1/sqrt(numel(x)/C * qmax).
        case lsqMQBench = "lsq_mqbench"
    }

    public let scheme: QuantScheme
    public let mode: Mode
    public let rangeMethod: RangeMethod
    public var gradFactor: GradFactor
    public var ste: STE
    public var eps: Float
    public var dropout: QuantDropout?
    /// Optimizer step, for the dropout schedule (set with `Quantizers.setStep`).
    public var step = 0
    /// When false the quantizer passes values through (float path).
    public var enabled = true
    /// Quantize the output of a taped relu/relu6 from the activation's input in one fused op (same values
    /// and gradients; the float activation need not be kept for backward). Off only for comparisons.
    public var fuseActivation = true
    /// While true, forwards in any mode update the observer and the range (PTQ calibration).
    public var calibrating = false
    public var rng: RNG

    @Param public var scale: Tensor
    @Param public var zeroPoint: Tensor
    /// 1 once the range was initialised from data or loaded.
    @Buffer public var initialized: Tensor
    /// Share of the values seen at the last observation (calibration or initialisation) that fell
    /// outside the representable range; `qat quant report` prints it for activation quantizers.
    @Buffer public var clippedFraction: Tensor
    var observer: Observer

    public init(scheme: QuantScheme, channels: Int = 1, mode: Mode = .learnable(learnZeroPoint: true), rangeMethod: RangeMethod = .minMax,
                gradFactor: GradFactor = .lsqPyTorch, ste: STE = .clipped, eps: Float = 1e-8, dropout: QuantDropout? = nil,
                seed: UInt64 = 0, path: String = "") throws {
        try scheme.validate(path: path)
        guard channels >= 1 else { throw QuantConfigError(path: path, "channels \(channels) must be >= 1") }
        if scheme.axis == nil && channels != 1 { throw QuantConfigError(path: path, "a per-tensor quantizer has 1 channel, got \(channels)") }
        guard eps > 0, eps.isFinite else { throw QuantConfigError(path: path, "eps \(eps) must be positive") }
        try dropout?.validate(path: path)
        self.scheme = scheme; self.mode = mode; self.rangeMethod = rangeMethod; self.gradFactor = gradFactor
        self.ste = ste; self.eps = eps; self.dropout = dropout; self.rng = RNG(seed: seed)
        scale = Tensor.ones([channels])
        zeroPoint = Tensor.full([channels], scheme.symmetric ? scheme.symmetricZeroPoint : 0)
        initialized = Tensor.zeros([1])
        clippedFraction = Tensor.zeros([1])
        observer = Observer(rangeMethod)
        super.init()
        self.path = path
        let learnS: Bool, learnZ: Bool
        if case .learnable(let z) = mode { learnS = true; learnZ = z && !scheme.symmetric } else { learnS = false; learnZ = false }
        scale.requiresGrad = learnS
        zeroPoint.requiresGrad = learnZ
    }

    public var channels: Int { scale.count }
    public var isInitialized: Bool { initialized.pointer[0] != 0 }

    public var quantAttributes: [String: String] {
        ["bits": "\(scheme.bits)", "scheme": scheme.description, "mode": mode.description, "qmin": "\(scheme.qmin)", "qmax": "\(scheme.qmax)"]
    }

    func factor(for x: Tensor) -> Float {
        switch gradFactor {
        case .one: return 1
        case .lsqPyTorch: return 1 / (Float(x.count) * Float(scheme.qmax)).squareRoot()
        case .lsqMQBench: return 1 / (Float(x.count / channels) * Float(scheme.qmax)).squareRoot()
        }
    }

    /// Sets scale and zero point from the observer's statistics.
    func applyObserver() {
        let (s, z) = observer.qparams(scheme: scheme, eps: eps)
        guard s.count == channels else { return }
        for c in 0..<channels { scale.pointer[c] = s[c]; zeroPoint.pointer[c] = z[c] }
        initialized.pointer[0] = 1
    }

    /// Feeds a batch to the observer (calibration) and updates the range.
    public func observe(_ x: Tensor) {
        let recordClipping = calibrating || !isInitialized    // not on every observed-mode training step
        noGrad { observer.observe(x, scheme: scheme, eps: eps) }
        applyObserver()
        if recordClipping { clippedFraction.pointer[0] = Float(clippedShare(x)) }
    }

    /// Fraction of x beyond the grid by more than half a step (clipped, not just rounded).
    func clippedShare(_ x: Tensor) -> Double {
        let l = FakeQuant.Layout(shape: x.shape, axis: scheme.axis)
        var clipped = 0
        let p = x.pointer
        for o in 0..<l.outer { for c in 0..<l.channels {
            let s = scale.pointer[c], z = FakeQuant.roundedZeroPoint(zeroPoint.pointer[c], qmin: scheme.qmin, qmax: scheme.qmax)
            let lo = (Float(scheme.qmin) - z - 0.5) * s, hi = (Float(scheme.qmax) - z + 0.5) * s
            let base = (o * l.channels + c) * l.inner
            for i in 0..<l.inner { let v = p[base + i]; if v < lo || v > hi { clipped += 1 } }
        }}
        return Double(clipped) / Double(max(x.count, 1))
    }

    /// Keeps the learnable scale usable: never below eps, never NaN or infinite (as PyTorch's
    /// _LearnableFakeQuantize clamps scale.data at eps in every forward); and the zero point within
    /// [qmin, qmax], as MQBench's LearnableFakeQuantize clamps zero_point.data in every forward. The
    /// forward rounds and clamps the zero point anyway, so values are unchanged; without the clamp a
    /// channel that stays clipped pushes its zero point away without bound (PyTorch's module does not
    /// stop it: a W4A4 run reached 3.7e7), where it no longer responds when its gradient turns and
    /// becomes a checkpoint value the loader refuses.
    func sanitizeScale() {
        let p = scale.pointer
        for c in 0..<channels where !(p[c] >= eps) || !p[c].isFinite { p[c] = eps }
        if scheme.symmetric { zeroPoint.pointer.initialize(repeating: scheme.symmetricZeroPoint, count: channels); return }
        let z = zeroPoint.pointer, lo = Float(scheme.qmin), hi = Float(scheme.qmax)
        for c in 0..<channels where !(z[c] >= lo && z[c] <= hi) { z[c] = z[c].isNaN ? lo : Swift.min(Swift.max(z[c], lo), hi) }
    }

    /// The steps every forward takes before quantizing: observe when calibrating, observed-mode
    /// training or not yet initialised (an uninitialised quantizer takes its range from the first
    /// batch it sees), then keep the scale valid.
    func prepare(_ x: Tensor) {
        if let axis = scheme.axis {
            precondition(axis < x.rank && x.shape[axis] == channels,
                         "FakeQuantize '\(path)': input \(x.shape) has no axis \(axis) of size \(channels)")
        }
        if calibrating || (mode == .observed && isTraining) || !isInitialized { observe(x) }
        sanitizeScale()
    }

    /// Fusion into a depthwise conv applies to an enabled per-tensor quantizer without active dropout.
    public func fusedInputQuantization(for x: Tensor) -> FusedInputQuantization? {
        guard enabled, scheme.axis == nil else { return nil }
        if isTraining, let d = dropout, d.probability(at: step) < 1 { return nil }
        prepare(x)
        return FusedInputQuantization(scale: scale, zeroPoint: zeroPoint, qmin: scheme.qmin, qmax: scheme.qmax,
                                      gradFactor: factor(for: x), ste: ste, fuseActivation: fuseActivation)
    }

    public var needsMaterializedInput: Bool {
        !enabled || !fuseActivation || calibrating || (mode == .observed && isTraining) || !isInitialized
    }

    public func quantize(preActivated a: Tensor, _ act: FakeQuant.PreActivation) -> Tensor? {
        guard !needsMaterializedInput else { return nil }
        return quantize(a, act)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        guard enabled else { return x }
        // x = relu/relu6(a) on the tape: quantize act(a) in one op, same values and gradients.
        if fuseActivation, let src = x.activationSource {
            prepare(x)
            return quantize(src.input, src.kind, prepared: true)
        }
        return quantize(x, nil)
    }

    /// Fake quantization of x, or of act(x) when `act` is set (x is then the activation's input).
    func quantize(_ x: Tensor, _ act: FakeQuant.PreActivation?, prepared: Bool = false) -> Tensor {
        if !prepared { prepare(x) }
        let passThrough = { act.map { x.activated($0) } ?? x }
        var elementMask: Tensor? = nil, channelMask: Tensor? = nil
        if isTraining, let d = dropout {
            let p = d.probability(at: step)
            if p <= 0 { return passThrough() }
            if p < 1 {
                switch d.granularity {
                case .element:
                    let m = Tensor.zeros(x.shape); rng.fillBernoulli(m.pointer, count: m.count, p: p); elementMask = m
                case .channel:
                    if scheme.axis != nil {
                        let m = Tensor.zeros([channels]); rng.fillBernoulli(m.pointer, count: channels, p: p); channelMask = m
                    } else if x.rank >= 2 {
                        // Per-tensor quantizer of an activation: drop whole feature channels (axis 1).
                        var shape = [Int](repeating: 1, count: x.rank); shape[1] = x.shape[1]
                        let m = Tensor.zeros(shape); rng.fillBernoulli(m.pointer, count: m.count, p: p)
                        elementMask = noGrad { m.broadcast(to: x.shape) }
                    } else {
                        let m = Tensor.zeros([1]); rng.fillBernoulli(m.pointer, count: 1, p: p)
                        if m.pointer[0] == 0 { return passThrough() }
                    }
                case .tensor:
                    let m = Tensor.zeros([1]); rng.fillBernoulli(m.pointer, count: 1, p: p)
                    if m.pointer[0] == 0 { return passThrough() }
                }
            }
        }
        return x.fakeQuantize(scale: scale, zeroPoint: zeroPoint, qmin: scheme.qmin, qmax: scheme.qmax, axis: scheme.axis,
                              gradFactor: factor(for: x), ste: ste, elementMask: elementMask,
                              channelMask: channelMask, preActivation: act)
    }
}
