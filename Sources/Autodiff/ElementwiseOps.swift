import Kernels

// Pointwise primitives: forward and vector-Jacobian product side by side.

extension Tensor {
    func unary(_ op: UnaryOp, name: String) -> Tensor {
        let out = FloatBuffer(count: count)
        Elementwise.unary(op, pointer, out.pointer, count: count)
        let x = self
        return Tensor.make(shape, out, op: name, inputs: [self]) { g in
            // The kernels read g[i] before writing gx[i], so an unshared g can take the result.
            let gx = g.consumable ? g.storage : FloatBuffer(count: x.count)
            Elementwise.unaryBackward(op, x: x.pointer, y: out.pointer, g: g.pointer, gx: gx.pointer, count: x.count)
            return [Tensor(shape: x.shape, storage: gx)]
        }
    }

    public func neg() -> Tensor { unary(.neg, name: "neg") }
    public func exp() -> Tensor { unary(.exp, name: "exp") }
    public func log() -> Tensor { unary(.log, name: "log") }
    public func sqrt() -> Tensor { unary(.sqrt, name: "sqrt") }
    public func abs() -> Tensor { unary(.abs, name: "abs") }
    public func relu() -> Tensor { tagged(unary(.relu, name: "relu"), .relu) }
    public func relu6() -> Tensor { tagged(unary(.relu6, name: "relu6"), .relu6) }

    /// relu or relu6.
    public func activated(_ act: FakeQuant.PreActivation) -> Tensor {
        switch act { case .relu: return relu(); case .relu6: return relu6(); case .hardswish: return hardswish() }
    }

    /// Records the activation on a taped output (see `activationSource`).
    private func tagged(_ y: Tensor, _ kind: FakeQuant.PreActivation) -> Tensor {
        if y.node != nil { y.activationSource = ActivationSource(kind: kind, input: self) }
        return y
    }
    public func sigmoid() -> Tensor { unary(.sigmoid, name: "sigmoid") }
    public func tanh() -> Tensor { unary(.tanh, name: "tanh") }
    public func hardswish() -> Tensor { tagged(unary(.hardswish, name: "hardswish"), .hardswish) }
    public func hardsigmoid() -> Tensor { unary(.hardsigmoid, name: "hardsigmoid") }
    public func silu() -> Tensor { unary(.silu, name: "silu") }
    public func softplus() -> Tensor { unary(.softplus, name: "softplus") }
    public func square() -> Tensor { unary(.square, name: "square") }
    public func pow(_ p: Float) -> Tensor { unary(.pow(p), name: "pow") }
    public func leakyRelu(_ slope: Float = 0.01) -> Tensor { unary(.leakyRelu(slope), name: "leaky_relu") }
    /// Clamps to [low, high]; the gradient passes where low <= x <= high (PyTorch's clamp).
    public func clamp(_ low: Float, _ high: Float) -> Tensor {
        precondition(low <= high, "clamp: low \(low) is greater than high \(high)")
        return unary(.clamp(low, high), name: "clamp")
    }
    public func scaled(_ c: Float) -> Tensor { unary(.scale(c), name: "scale") }
    public func shifted(_ c: Float) -> Tensor { unary(.addScalar(c), name: "add_scalar") }

    func binary(_ op: BinaryOp, _ other: Tensor, name: String) -> Tensor {
        let outShape: [Int]
        do { outShape = try Shape.broadcast(shape, other.shape, op: name) } catch { preconditionFailure("\(error)") }
        let out = FloatBuffer(count: Shape.count(outShape))
        Elementwise.binary(op, pointer, shape, other.pointer, other.shape, out.pointer, outShape)
        let a = self, b = other
        return Tensor.make(outShape, out, op: name, inputs: [a, b]) { g in
            switch op {
            case .add:
                return [a.requiresGrad ? g.sumTo(a.shape) : nil, b.requiresGrad ? g.sumTo(b.shape) : nil]
            case .sub:
                return [a.requiresGrad ? g.sumTo(a.shape) : nil, b.requiresGrad ? g.sumTo(b.shape).neg() : nil]
            case .mul:
                return [a.requiresGrad ? (g * b).sumTo(a.shape) : nil, b.requiresGrad ? (g * a).sumTo(b.shape) : nil]
            case .div:
                let y = Tensor(shape: outShape, storage: out)
                return [a.requiresGrad ? (g / b).sumTo(a.shape) : nil,
                        b.requiresGrad ? (g * y / b).sumTo(b.shape).neg() : nil]
            }
        }
    }

    /// Sums a broadcast gradient back to `target` (the adjoint of broadcasting).
    public func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        precondition(target.count <= rank, "sumTo: cannot reduce shape \(shape) to larger-rank shape \(target)")
        let padded = [Int](repeating: 1, count: rank - target.count) + target
        var flags = [Bool](repeating: false, count: rank)
        for k in 0..<rank {
            precondition(padded[k] == shape[k] || padded[k] == 1, "sumTo: shape \(shape) does not broadcast from \(target)")
            flags[k] = padded[k] == 1 && shape[k] != 1
        }
        return sum(axesFlags: flags).reshaped(target)
    }

    /// Expands to `target` by broadcasting (gradient: `sumTo` back).
    public func broadcast(to target: [Int]) -> Tensor {
        if shape == target { return self }
        do {
            let b = try Shape.broadcast(shape, target, op: "broadcast_to")
            guard b == target else { throw ShapeError(op: "broadcast_to", "shape \(shape) cannot be expanded to \(target)") }
        } catch { preconditionFailure("\(error)") }
        let out = FloatBuffer(count: Shape.count(target))
        Elementwise.broadcastTo(pointer, shape, out.pointer, target)
        let xs = shape
        return Tensor.make(target, out, op: "broadcast_to", inputs: [self]) { g in [g.sumTo(xs)] }
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { a.binary(.add, b, name: "add") }
    public static func - (a: Tensor, b: Tensor) -> Tensor { a.binary(.sub, b, name: "sub") }
    public static func * (a: Tensor, b: Tensor) -> Tensor { a.binary(.mul, b, name: "mul") }
    public static func / (a: Tensor, b: Tensor) -> Tensor { a.binary(.div, b, name: "div") }
    public static prefix func - (a: Tensor) -> Tensor { a.neg() }
    public static func + (a: Tensor, c: Float) -> Tensor { a.shifted(c) }
    public static func + (c: Float, a: Tensor) -> Tensor { a.shifted(c) }
    public static func - (a: Tensor, c: Float) -> Tensor { a.shifted(-c) }
    public static func - (c: Float, a: Tensor) -> Tensor { a.neg().shifted(c) }
    public static func * (a: Tensor, c: Float) -> Tensor { a.scaled(c) }
    public static func * (c: Float, a: Tensor) -> Tensor { a.scaled(c) }
    public static func / (a: Tensor, c: Float) -> Tensor { a.scaled(1 / c) }

    /// Elementwise choice: `condition` (non-zero = true, same shape, never differentiated) picks `a`, else `b`.
    public static func select(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(condition.shape == a.shape && a.shape == b.shape,
                     "where: condition \(condition.shape), a \(a.shape) and b \(b.shape) must have the same shape")
        let out = FloatBuffer(count: a.count)
        Elementwise.select(condition.pointer, a.pointer, b.pointer, out.pointer, count: a.count)
        let c = condition.detached()
        return Tensor.make(a.shape, out, op: "where", inputs: [a, b]) { g in
            var ga: Tensor? = nil, gb: Tensor? = nil
            if a.requiresGrad {
                let t = FloatBuffer(count: g.count)
                Elementwise.masked(c.pointer, g.pointer, keepWhereTrue: true, t.pointer, count: g.count)
                ga = Tensor(shape: g.shape, storage: t)
            }
            if b.requiresGrad {
                let t = FloatBuffer(count: g.count)
                Elementwise.masked(c.pointer, g.pointer, keepWhereTrue: false, t.pointer, count: g.count)
                gb = Tensor(shape: g.shape, storage: t)
            }
            return [ga, gb]
        }
    }

    /// Multiplies by a constant 0/1 mask (same shape): gradient flows where the mask is 1.
    public func masked(by mask: Tensor) -> Tensor { Tensor.select(mask, self, Tensor.zeros(shape)) }

    /// 1 where self < other elementwise (no gradient), for building masks.
    public func less(than c: Float) -> Tensor {
        let out = FloatBuffer(count: count)
        let p = pointer, o = out.pointer
        for i in 0..<count { o[i] = p[i] < c ? 1 : 0 }
        return Tensor(shape: shape, storage: out)
    }
}
