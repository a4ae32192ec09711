import Foundation
import Kernels
import Autodiff
import NN

/// Learning-rate factor per step: optional linear warmup from `warmupStartFactor`, then constant,
/// cosine (to `minFactor` at `totalSteps`) or step decay (x gamma at each milestone).
public struct LRSchedule: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case constant
        case cosine(totalSteps: Int, minFactor: Float)
        case step(milestones: [Int], gamma: Float)
    }
    public var kind: Kind
    public var warmupSteps: Int
    public var warmupStartFactor: Float

    public init(_ kind: Kind, warmupSteps: Int = 0, warmupStartFactor: Float = 0.001) {
        self.kind = kind; self.warmupSteps = warmupSteps; self.warmupStartFactor = warmupStartFactor
    }

    /// Factor for the update at 0-based `step`.
    public func factor(at step: Int) -> Float {
        if step < warmupSteps {
            return warmupStartFactor + (1 - warmupStartFactor) * Float(step) / Float(warmupSteps)
        }
        switch kind {
        case .constant: return 1
        case let .cosine(total, minF):
            let span = max(1, total - warmupSteps)
            let t = min(1, Double(step - warmupSteps) / Double(span))
            return minF + (1 - minF) * Float(0.5 * (1 + Foundation.cos(Double.pi * t)))
        case let .step(milestones, gamma):
            return Foundation.pow(gamma, Float(milestones.filter { $0 <= step }.count))
        }
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm` (torch.nn.utils.clip_grad_norm_,
/// coefficient maxNorm / (norm + 1e-6)). Returns the norm before clipping (non-finite if any gradient is).
@discardableResult
public func clipGradNorm(_ params: [Tensor], maxNorm: Float) -> Float {
    // Squares accumulate in Double: gradients beyond 1.8e19 would overflow a Float sum of squares (and
    // a compensated Float sum turns that into NaN), hiding a finite gradient that clipping can tame.
    var total: Double = 0
    for p in params {
        guard let g = p.grad else { continue }
        let gp = g.pointer
        var acc: Double = 0
        for i in 0..<g.count { let v = Double(gp[i]); acc += v * v }
        total += acc
    }
    let norm = Float(total.squareRoot())
    let coef = maxNorm / (norm + 1e-6)
    if coef < 1 {
        for p in params {
            guard let g = p.grad else { continue }
            let gp = g.pointer
            for i in 0..<g.count { gp[i] *= coef }
        }
    }
    return norm
}

/// Exponential moving average of a model's parameters and buffers (the weights evaluated in YOLOv5 /
/// timm): ema = decay * ema + (1 - decay) * value after each update; buffers are copied.
public final class ModelEMA {
    public let decay: Float
    public private(set) var shadow: [(String, Tensor)]
    public private(set) var updates = 0

    public init(_ model: Module, decay: Float = 0.9999) {
        precondition(decay > 0 && decay < 1, "ModelEMA: decay must be in (0, 1), got \(decay)")
        self.decay = decay
        shadow = (model.namedParameters() + model.namedBuffers()).map { ($0.0, $0.1.copy()) }
    }

    public func update(_ model: Module) {
        updates += 1
        let params = Set(model.namedParameters().map(\.0))
        let current = Dictionary(uniqueKeysWithValues: (model.namedParameters() + model.namedBuffers()).map { ($0.0, $0.1) })
        for (p, s) in shadow {
            guard let v = current[p] else { preconditionFailure("ModelEMA: model no longer has '\(p)'") }
            let sp = s.pointer, vp = v.pointer
            if params.contains(p) { for i in 0..<s.count { sp[i] = decay * sp[i] + (1 - decay) * vp[i] } }
            else { sp.update(from: vp, count: s.count) }
        }
    }

    /// Copies the averaged values into `model` (e.g. for evaluation).
    public func copy(into model: Module) {
        let current = Dictionary(uniqueKeysWithValues: (model.namedParameters() + model.namedBuffers()).map { ($0.0, $0.1) })
        for (p, s) in shadow { current[p]?.pointer.update(from: s.pointer, count: s.count) }
    }
}
