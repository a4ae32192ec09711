import Foundation
import Kernels
import Autodiff
import NN

/// Hyper-parameters one group of parameters shares (PyTorch's param_groups).
public struct GroupOptions: Sendable, Equatable {
    public var lr: Float
    public var weightDecay: Float
    public init(lr: Float, weightDecay: Float) { self.lr = lr; self.weightDecay = weightDecay }
}

/// Assigns parameters to groups: the first rule whose predicate matches decides; unmatched parameters
/// use the optimizer's defaults. `lrScale` multiplies the base learning rate.
public struct GroupRule {
    public var name: String
    public var matches: (String, Tensor) -> Bool
    public var lrScale: Float
    public var weightDecay: Float?

    public init(name: String, lrScale: Float = 1, weightDecay: Float? = nil, matches: @escaping (String, Tensor) -> Bool) {
        self.name = name; self.lrScale = lrScale; self.weightDecay = weightDecay; self.matches = matches
    }

    /// Parameters whose path matches a glob (`*.scale`, `backbone.*`).
    public static func pattern(_ glob: String, lrScale: Float = 1, weightDecay: Float? = nil) -> GroupRule {
        GroupRule(name: glob, lrScale: lrScale, weightDecay: weightDecay) { p, _ in Glob.matches(glob, p) }
    }

    /// The usual exclusion: no weight decay on biases and normalisation weights (all 1-D parameters).
    public static var noDecayOnNormsAndBiases: GroupRule { GroupRule(name: "no_decay(norms, biases)", weightDecay: 0) { _, t in t.rank <= 1 } }
}

/// Shared machinery: the parameter list with paths, groups, per-parameter state slots, the step count.
open class Optimizer {
    public struct Entry { public let path: String; public let tensor: Tensor; public let group: Int }
    public let entries: [Entry]
    /// Group options at the base learning rate; `lrFactor` (from a schedule) scales every group.
    public private(set) var groups: [GroupOptions]
    public let groupNames: [String]
    public var lrFactor: Float = 1
    /// Optimizer steps taken.
    public internal(set) var stepCount = 0
    /// Per-parameter state: path -> slot -> tensor (`momentum_buffer`, `exp_avg`, `exp_avg_sq`, `step`).
    public internal(set) var state: [String: [String: Tensor]] = [:]

    public init(_ named: [(String, Tensor)], lr: Float, weightDecay: Float, rules: [GroupRule]) {
        precondition(lr >= 0 && weightDecay >= 0, "Optimizer: lr \(lr) and weight decay \(weightDecay) must be >= 0")
        var gs = [GroupOptions(lr: lr, weightDecay: weightDecay)]
        var names = ["default"]
        for r in rules { gs.append(GroupOptions(lr: lr * r.lrScale, weightDecay: r.weightDecay ?? weightDecay)); names.append(r.name) }
        var es: [Entry] = []
        var seen = Set<String>()
        for (p, t) in named {
            precondition(seen.insert(p).inserted, "Optimizer: parameter path '\(p)' appears twice")
            let g = rules.firstIndex { $0.matches(p, t) }.map { $0 + 1 } ?? 0
            es.append(Entry(path: p, tensor: t, group: g))
        }
        entries = es; groups = gs; groupNames = names
    }

    /// Current learning rate of group `i` (base x schedule factor).
    public func lr(group i: Int = 0) -> Float { groups[i].lr * lrFactor }

    /// One update from the parameters' `grad`. Parameters without a gradient are skipped (as PyTorch).
    public func step() {
        stepCount += 1
        noGrad {
            for e in entries {
                guard let g = e.tensor.grad else { continue }
                precondition(g.shape == e.tensor.shape, "Optimizer: gradient shape \(g.shape) for '\(e.path)' of shape \(e.tensor.shape)")
                update(e, grad: g, options: GroupOptions(lr: groups[e.group].lr * lrFactor, weightDecay: groups[e.group].weightDecay))
            }
        }
    }

    open func update(_ e: Entry, grad: Tensor, options: GroupOptions) {
        preconditionFailure("\(type(of: self)) does not implement update")
    }

    public func zeroGrad() { for e in entries { e.tensor.grad = nil } }

    func slot(_ path: String, _ name: String, like t: Tensor) -> (Tensor, Bool) {
        if let s = state[path]?[name] { return (s, false) }
        let s = Tensor.zeros(t.shape)
        state[path, default: [:]][name] = s
        return (s, true)
    }

    /// Replaces the state (from a checkpoint). Every slot must belong to a known parameter with the
    /// right shape; errors name the path and slot.
    public func loadState(_ newState: [String: [String: Tensor]], stepCount: Int) throws {
        let byPath = Dictionary(uniqueKeysWithValues: entries.map { ($0.path, $0.tensor) })
        for (p, slots) in newState {
            guard let t = byPath[p] else { throw OptimizerStateError("optimizer state for unknown parameter '\(p)'") }
            for (name, s) in slots where name != "step" && s.shape != t.shape {
                throw OptimizerStateError("optimizer slot '\(p)/\(name)' has shape \(s.shape), parameter has \(t.shape)")
            }
        }
        state = newState
        self.stepCount = stepCount
    }
}

public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// torch.optim.SGD.
public final class SGD: Optimizer {
    public let momentum: Float, dampening: Float, nesterov: Bool

    public init(_ named: [(String, Tensor)], lr: Float, momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false,
                weightDecay: Float = 0, rules: [GroupRule] = []) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov needs momentum > 0 and zero dampening")
        self.momentum = momentum; self.dampening = dampening; self.nesterov = nesterov
        super.init(named, lr: lr, weightDecay: weightDecay, rules: rules)
    }

    public override func update(_ e: Entry, grad: Tensor, options: GroupOptions) {
        var buf: Tensor? = nil, first = false
        if momentum != 0 { (buf, first) = slot(e.path, "momentum_buffer", like: e.tensor) }
        OptimKernels.sgd(param: e.tensor.pointer, grad: grad.pointer, buf: buf?.pointer, count: e.tensor.count, lr: options.lr,
                         momentum: momentum, dampening: dampening, nesterov: nesterov, weightDecay: options.weightDecay, firstStep: first)
    }
}

/// torch.optim.Adam (`decoupled: false`) and AdamW (`decoupled: true`).
public final class Adam: Optimizer {
    public let beta1: Float, beta2: Float, eps: Float, decoupled: Bool

    public init(_ named: [(String, Tensor)], lr: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0, decoupled: Bool = false, rules: [GroupRule] = []) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.decoupled = decoupled
        super.init(named, lr: lr, weightDecay: weightDecay, rules: rules)
    }

    /// AdamW with PyTorch's defaults (weight decay 0.01).
    public static func adamW(_ named: [(String, Tensor)], lr: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                             weightDecay: Float = 0.01, rules: [GroupRule] = []) -> Adam {
        Adam(named, lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, decoupled: true, rules: rules)
    }

    public override func update(_ e: Entry, grad: Tensor, options: GroupOptions) {
        let (m, _) = slot(e.path, "exp_avg", like: e.tensor)
        let (v, _) = slot(e.path, "exp_avg_sq", like: e.tensor)
        let stepT: Tensor
        if let s = state[e.path]?["step"] { stepT = s } else { stepT = Tensor.zeros([1]); state[e.path]?["step"] = stepT }
        stepT.pointer[0] += 1
        OptimKernels.adam(param: e.tensor.pointer, grad: grad.pointer, expAvg: m.pointer, expAvgSq: v.pointer, count: e.tensor.count,
                          lr: options.lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: options.weightDecay,
                          decoupled: decoupled, step: Int(stepT.pointer[0]))
    }
}
