import Kernels

/// Whether operations record themselves for `backward()`. Task-local, so a `noGrad` scope on one
/// thread never changes another's.
public enum GradMode {
    @TaskLocal public static var isEnabled: Bool = true
}

/// Runs `body` without recording operations (evaluation, optimizer updates, backward passes themselves).
public func noGrad<T>(_ body: () throws -> T) rethrows -> T {
    try GradMode.$isEnabled.withValue(false) { try body() }
}

/// One recorded operation: its inputs and the vector-Jacobian product that maps the output gradient to
/// one gradient per input (nil where an input needs none), as in JAX's custom_vjp.
final class Node {
    let op: String
    private(set) var inputs: [Tensor]
    private(set) var vjp: (Tensor) -> [Tensor?]
    init(op: String, inputs: [Tensor], vjp: @escaping (Tensor) -> [Tensor?]) {
        self.op = op; self.inputs = inputs; self.vjp = vjp
    }

    /// Empties the node (inputs and the closure's captures) and hands back the inputs.
    func dismantle() -> [Tensor] {
        let i = inputs
        inputs = []
        vjp = { _ in [] }
        return i
    }
}

/// A Float32 tensor, row-major (NCHW for images), contiguous. Reference semantics like a PyTorch tensor:
/// operations return new tensors; `reshape` shares storage.
/// See `Tensor.activationSource`.
public struct ActivationSource {
    public let kind: FakeQuant.PreActivation
    public let input: Tensor
}

public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public private(set) var storage: FloatBuffer
    /// Leaf tensors with `requiresGrad` receive `grad` from `backward()`.
    public var requiresGrad: Bool
    /// Accumulated gradient (leaf tensors only). Each backward adds to it; set to nil to clear.
    public var grad: Tensor?
    var node: Node?
    /// Set by `backward()` on a gradient nobody else references, right before handing it to a vjp:
    /// that vjp may then write its result into the same buffer instead of allocating one.
    var consumable = false
    /// Set on the output of a taped relu/relu6: the activation and its input. A quantizer reading this
    /// tensor may quantize act(input) in one fused op (`fakeQuantize(preActivation:)`) and send the
    /// gradient to the input directly; when nothing else uses this tensor, its own activation node is
    /// then never visited in backward and the tensor is freed right after the forward.
    public internal(set) var activationSource: ActivationSource?

    public init(shape: [Int], storage: FloatBuffer, requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        precondition(Shape.count(shape) == storage.count,
                     "Tensor: shape \(shape) needs \(Shape.count(shape)) elements, storage has \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    public convenience init(shape: [Int], scalars: [Float], requiresGrad: Bool = false) {
        precondition(Shape.count(shape) == scalars.count,
                     "Tensor: shape \(shape) needs \(Shape.count(shape)) values, got \(scalars.count)")
        self.init(shape: shape, storage: FloatBuffer(scalars), requiresGrad: requiresGrad)
    }

    public convenience init(_ scalar: Float) { self.init(shape: [], scalars: [scalar]) }

    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, storage: FloatBuffer(zeros: Shape.count(shape)), requiresGrad: requiresGrad)
    }

    public static func full(_ shape: [Int], _ value: Float, requiresGrad: Bool = false) -> Tensor {
        let b = FloatBuffer(count: Shape.count(shape))
        b.pointer.initialize(repeating: value, count: b.count)
        return Tensor(shape: shape, storage: b, requiresGrad: requiresGrad)
    }

    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor { full(shape, 1, requiresGrad: requiresGrad) }

    public static func randn(_ shape: [Int], std: Float = 1, rng: inout RNG, requiresGrad: Bool = false) -> Tensor {
        let b = FloatBuffer(count: Shape.count(shape))
        rng.fillNormal(b.pointer, count: b.count, std: std)
        return Tensor(shape: shape, storage: b, requiresGrad: requiresGrad)
    }

    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, rng: inout RNG, requiresGrad: Bool = false) -> Tensor {
        let b = FloatBuffer(count: Shape.count(shape))
        rng.fillUniform(b.pointer, count: b.count, low: low, high: high)
        return Tensor(shape: shape, storage: b, requiresGrad: requiresGrad)
    }

    /// Frees a long chain of recorded ops without recursion: Swift's default release of a 100k-op
    /// chain would recurse once per op and overflow the stack.
    deinit {
        guard var first = node else { return }
        node = nil
        guard isKnownUniquelyReferenced(&first) else { return }
        var pending = [first]
        while let n = pending.popLast() {
            var inputs = n.dismantle()
            while var t = inputs.popLast() {
                guard isKnownUniquelyReferenced(&t), var tn = t.node else { continue }
                t.node = nil
                if isKnownUniquelyReferenced(&tn) { pending.append(tn) }
            }
        }
    }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer }
    public var scalars: [Float] { storage.array }
    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "Tensor.item: tensor of shape \(shape) has \(count) elements, not 1")
        return storage.pointer[0]
    }
    /// Name of the operation that produced this tensor, or nil for a leaf.
    public var op: String? { node?.op }
    public var isLeaf: Bool { node == nil }

    public var description: String {
        let vals = count <= 16 ? "\(scalars)" : "[\(count) values]"
        return "Tensor(shape: \(shape), \(vals)\(requiresGrad ? ", requiresGrad" : ""))"
    }

    /// Same values, no history: gradients stop here. Shares storage.
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// A copy with its own storage and no history.
    public func copy() -> Tensor { Tensor(shape: shape, storage: FloatBuffer(copying: pointer, count: count)) }

    /// Builds an op's output and, when recording and any input needs a gradient, its tape node.
    static func make(_ shape: [Int], _ buffer: FloatBuffer, op: String, inputs: [Tensor],
                     vjp: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        let out = Tensor(shape: shape, storage: buffer)
        if GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad }) {
            out.requiresGrad = true
            out.node = Node(op: op, inputs: inputs, vjp: vjp)
        }
        return out
    }

    /// Reverse-mode pass from this tensor. Without `gradient` the tensor must hold one element (seed 1).
    /// Graph order comes from an iterative depth-first topological sort, so deep graphs cannot overflow
    /// the stack. Gradients reaching leaves are added to their `grad`. `leafReady` is called with each
    /// leaf as soon as its `grad` is final for this pass (every path to it has been processed), in the
    /// order the pass finishes them: data-parallel training starts a bucket's allreduce there, overlapping
    /// communication with the rest of the backward pass (PyTorch DDP's autograd hooks).
    public func backward(_ gradient: Tensor? = nil, leafReady: ((Tensor) -> Void)? = nil) {
        precondition(requiresGrad, "backward: tensor of shape \(shape) does not require grad (no input had requiresGrad, or it was made under noGrad)")
        let seed: Tensor
        if let gradient {
            precondition(gradient.shape == shape, "backward: gradient shape \(gradient.shape) differs from tensor shape \(shape)")
            seed = gradient
        } else {
            precondition(count == 1, "backward: implicit gradient needs a one-element tensor, got shape \(shape); pass a gradient")
            seed = Tensor.ones(shape)
        }
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if !visited.insert(ObjectIdentifier(t)).inserted { continue }
            stack.append((t, true))
            if let node = t.node {
                for input in node.inputs where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                    stack.append((input, false))
                }
            }
        }
        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        noGrad {
            for t in order.reversed() {
                guard var g = grads.removeValue(forKey: ObjectIdentifier(t)) else { continue }
                if let node = t.node {
                    g.consumable = isKnownUniquelyReferenced(&g) && isKnownUniquelyReferenced(&g.storage)
                    let gs = node.vjp(g)
                    precondition(gs.count == node.inputs.count, "backward: \(node.op) returned \(gs.count) gradients for \(node.inputs.count) inputs")
                    for (input, gi) in zip(node.inputs, gs) where input.requiresGrad {
                        guard let gi else { continue }
                        precondition(gi.shape == input.shape, "backward: \(node.op) produced gradient of shape \(gi.shape) for input of shape \(input.shape)")
                        let id = ObjectIdentifier(input)
                        if let prev = grads[id] { grads[id] = prev + gi } else { grads[id] = gi }
                    }
                } else if let prev = t.grad {
                    t.grad = prev + g
                } else if isKnownUniquelyReferenced(&g) && isKnownUniquelyReferenced(&g.storage) {
                    t.grad = g   // nobody else can see this buffer: adopt it instead of copying
                } else {
                    // Shared (add hands the same g to both inputs; reshape shares storage): own copy.
                    t.grad = g.copy()
                }
                if t.node == nil, let leafReady { leafReady(t) }
            }
        }
    }
}
