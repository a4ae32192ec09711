import Kernels
import Autodiff

/// Marks a stored tensor as a trainable parameter of its module (found by reflection, named by the
/// property: `@Param var weight` is `<module path>.weight`).
@propertyWrapper
public final class Param {
    public var wrappedValue: Tensor
    public init(wrappedValue: Tensor) {
        wrappedValue.requiresGrad = true
        self.wrappedValue = wrappedValue
    }
}

/// A parameter that may be absent (a conv's bias): listed only when present.
@propertyWrapper
public final class OptionalParam {
    public var wrappedValue: Tensor?
    public init(wrappedValue: Tensor?) {
        wrappedValue?.requiresGrad = true
        self.wrappedValue = wrappedValue
    }
}

/// Marks a stored tensor as a buffer: saved in checkpoints, never trained (BatchNorm running stats).
@propertyWrapper
public final class Buffer {
    public var wrappedValue: Tensor
    public init(wrappedValue: Tensor) { self.wrappedValue = wrappedValue }
}

/// Quantizer modules: checkpoints store their parameters and buffers under `/quant/<path>/<name>`
/// (not `/params`) with these attributes (bits, scheme) on the group.
public protocol QuantizerStateful: Module {
    var quantAttributes: [String: String] { get }
}

/// A per-tensor input quantizer that a depthwise Conv2d may fuse into its kernel. Returns nil when
/// fusion does not apply right now (disabled, per-channel, dropout active); the conv then calls the
/// quantizer as a module.
public protocol FusableInputQuantizer: Module {
    func fusedInputQuantization(for x: Tensor) -> FusedInputQuantization?
    /// Quantizes act(a) from the activation's input in one op, or nil when the quantizer needs the
    /// activation itself (observing a range, disabled).
    func quantize(preActivated a: Tensor, _ act: FakeQuant.PreActivation) -> Tensor?
    /// True while a forward must see the activated input (observer statistics), so fusion is off.
    var needsMaterializedInput: Bool { get }
}

public struct FusedInputQuantization {
    public var scale: Tensor, zeroPoint: Tensor
    public var qmin: Int, qmax: Int
    public var gradFactor: Float
    public var ste: STE
    /// The conv may read a taped relu/relu6 output's input and apply the activation in its kernel.
    public var fuseActivation: Bool
    public init(scale: Tensor, zeroPoint: Tensor, qmin: Int, qmax: Int, gradFactor: Float, ste: STE, fuseActivation: Bool = true) {
        self.scale = scale; self.zeroPoint = zeroPoint; self.qmin = qmin; self.qmax = qmax; self.gradFactor = gradFactor; self.ste = ste
        self.fuseActivation = fuseActivation
    }
}

/// Modules that draw random numbers (dropout) keep their generator here so checkpoints can save it.
public protocol RandomStateful: AnyObject {
    var rng: RNG { get set }
}

/// Base class of every layer and model. Parameters, buffers and child modules are discovered by
/// reflection over stored properties (`@Param`, `@Buffer`, `Module`, `[Module]`, `Module?`) and named
/// by stable dotted paths, the keys of checkpoints, optimizer state and quantizer placement.
open class Module {
    /// Training mode (batch statistics, dropout on). Set recursively with `train()` / `eval()`.
    public private(set) var isTraining = true
    /// Set by `assignPaths()`: this module's dotted path from the root ("" for the root).
    public var path = ""

    public init() {}

    /// Forward pass. Subclasses override.
    open func forward(_ x: Tensor) -> Tensor {
        preconditionFailure("\(type(of: self)) does not implement forward(_:)")
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { forward(x) }

    /// A relu/relu6 this module applies last (an `Activation`, or a `Sequential` ending in one). A
    /// following layer that quantizes its input may then take the activation's input and apply
    /// activation and quantizer in one fused op (`Sequential` arranges it).
    open var trailingActivation: FakeQuant.PreActivation? { nil }

    /// `forward` without the trailing activation (only called when `trailingActivation` is not nil).
    open func forwardWithoutTrailingActivation(_ x: Tensor) -> Tensor { forward(x) }

    /// `forward(act(a))` computed from the activation's input `a`, or nil when this module cannot
    /// fuse the activation right now (the caller then applies it and calls `forward`).
    open func forward(preActivated a: Tensor, _ act: FakeQuant.PreActivation) -> Tensor? { nil }

    /// Whether `forward(preActivated:)` can take a pre-activated input (an input quantizer that fuses the
    /// activation). At inference `Sequential` splits a trailing activation off only for such a layer;
    /// otherwise the layer that ends in the activation applies it (and can fuse it into its conv).
    open var takesPreActivatedInput: Bool { false }

    /// Direct children in declaration order. Arrays of modules are numbered ("blocks.0", "blocks.1").
    open func namedChildren() -> [(String, Module)] {
        var out: [(String, Module)] = []
        Module.reflect(self) { label, value in
            if let m = value as? Module { out.append((label, m)) }
            else if let ms = value as? [Module] { for (i, m) in ms.enumerated() { out.append(("\(label).\(i)", m)) } }
        }
        return out
    }

    /// This module's own parameters (not its children's), in declaration order.
    open func localParameters() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        Module.reflect(self) { label, value in
            if let p = value as? Param { out.append((label, p.wrappedValue)) }
            else if let p = value as? OptionalParam, let t = p.wrappedValue { out.append((label, t)) }
        }
        return out
    }

    open func localBuffers() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        Module.reflect(self) { label, value in if let b = value as? Buffer { out.append((label, b.wrappedValue)) } }
        return out
    }

    /// Walks stored properties of the class hierarchy, base class first. Property-wrapper storage is
    /// reported without its leading underscore; `Optional` values are unwrapped.
    static func reflect(_ subject: Any, _ visit: (String, Any) -> Void) {
        var mirrors: [Mirror] = []
        var m: Mirror? = Mirror(reflecting: subject)
        while let cur = m { mirrors.append(cur); m = cur.superclassMirror }
        for mirror in mirrors.reversed() {
            for child in mirror.children {
                guard var label = child.label else { continue }
                if label.hasPrefix("_") { label.removeFirst() }
                if label == "path" || label == "isTraining" { continue }
                let v = child.value
                let unwrapped: Any
                let om = Mirror(reflecting: v)
                if om.displayStyle == .optional {
                    guard let some = om.children.first?.value else { continue }
                    unwrapped = some
                } else { unwrapped = v }
                visit(label, unwrapped)
            }
        }
    }

    /// Every module below and including this one, with dotted paths ("" for self).
    public func namedModules() -> [(String, Module)] {
        var out: [(String, Module)] = []
        var stack: [(String, Module)] = [("", self)]
        while let (p, m) = stack.popLast() {
            out.append((p, m))
            for (name, c) in m.namedChildren().reversed() { stack.append((p.isEmpty ? name : "\(p).\(name)", c)) }
        }
        return out
    }

    /// All parameters with dotted paths, depth first in declaration order.
    public func namedParameters() -> [(String, Tensor)] {
        namedModules().flatMap { p, m in m.localParameters().map { (p.isEmpty ? $0.0 : "\(p).\($0.0)", $0.1) } }
    }

    public func namedBuffers() -> [(String, Tensor)] {
        namedModules().flatMap { p, m in m.localBuffers().map { (p.isEmpty ? $0.0 : "\(p).\($0.0)", $0.1) } }
    }

    public func parameters() -> [Tensor] { namedParameters().map(\.1) }

    /// Records each module's path in `path` (used by summaries and error messages).
    public func assignPaths() { for (p, m) in namedModules() { m.path = p } }

    /// Number of parameter values (trainable or frozen).
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.1.count } }

    public func train(_ on: Bool = true) { for (_, m) in namedModules() { m.isTraining = on } }
    public func eval() { train(false) }

    /// Stops gradients to parameters whose path matches `pattern` (glob: `*` any run of characters).
    /// Returns how many tensors were frozen.
    @discardableResult
    public func freeze(matching pattern: String = "*") -> Int { setRequiresGrad(false, pattern) }

    @discardableResult
    public func unfreeze(matching pattern: String = "*") -> Int { setRequiresGrad(true, pattern) }

    private func setRequiresGrad(_ on: Bool, _ pattern: String) -> Int {
        var n = 0
        for (p, t) in namedParameters() where Glob.matches(pattern, p) { t.requiresGrad = on; n += 1 }
        return n
    }

    /// Clears every parameter's gradient.
    public func zeroGrad() { for p in parameters() { p.grad = nil } }
}

/// Glob patterns for parameter paths: `*` matches any run of characters (dots included), `?` one.
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8), t = Array(text.utf8)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) { pi += 1; ti += 1 }
            else if pi < p.count && p[pi] == UInt8(ascii: "*") { star = pi; mark = ti; pi += 1 }
            else if star >= 0 { pi = star + 1; mark += 1; ti = mark }
            else { return false }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
