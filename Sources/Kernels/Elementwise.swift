import Foundation

/// Pointwise functions with one input. Parameterised cases carry their constants.
public enum UnaryOp: Sendable, Equatable {
    case neg, exp, log, sqrt, abs, relu, relu6, sigmoid, tanh, hardswish, hardsigmoid, silu, square, reciprocal
    /// log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|); derivative sigmoid(x) (no kink at 0).
    case softplus
    case pow(Float)
    case clamp(Float, Float)
    case leakyRelu(Float)
    case scale(Float)
    case addScalar(Float)
}

public enum BinaryOp: Sendable, Equatable { case add, sub, mul, div }

@inline(__always) func sigmoidf(_ x: Float) -> Float {
    // Split by sign so exp never overflows.
    if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
    let e = Foundation.exp(x)
    return e / (1 + e)
}

public enum Elementwise {
    /// Parallel chunks of 0..<n. The element loop is written inside each caller's closure, so the
    /// per-element work is inlined there rather than called through a captured closure.
    @inline(__always)
    static func each(_ n: Int, _ body: (Range<Int>) -> Void) {
        parallelChunks(n, grain: 65_536, body)
    }

    /// y[i] = op(x[i]).
    public static func unary(_ op: UnaryOp, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        switch op {
        case .neg: each(n) { r in for i in r { y[i] = -x[i] } }
        case .exp: each(n) { r in for i in r { y[i] = Foundation.exp(x[i]) } }
        case .log: each(n) { r in for i in r { y[i] = Foundation.log(x[i]) } }
        case .sqrt: each(n) { r in for i in r { y[i] = x[i].squareRoot() } }
        case .abs: each(n) { r in for i in r { y[i] = Swift.abs(x[i]) } }
        case .relu: each(n) { r in for i in r { y[i] = Swift.max(x[i], 0) } }
        case .relu6: each(n) { r in for i in r { y[i] = Swift.min(Swift.max(x[i], 0), 6) } }
        case .sigmoid: each(n) { r in for i in r { y[i] = sigmoidf(x[i]) } }
        case .tanh: each(n) { r in for i in r { y[i] = Foundation.tanh(x[i]) } }
        case .hardswish: each(n) { r in for i in r { let v = x[i]; y[i] = v * Swift.min(Swift.max(v + 3, 0), 6) / 6 } }
        case .hardsigmoid: each(n) { r in for i in r { y[i] = Swift.min(Swift.max(x[i] + 3, 0), 6) / 6 } }
        case .silu: each(n) { r in for i in r { let v = x[i]; y[i] = v * sigmoidf(v) } }
        case .square: each(n) { r in for i in r { y[i] = x[i] * x[i] } }
        case .softplus: each(n) { r in for i in r { let v = x[i]; y[i] = Swift.max(v, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(v))) } }
        case .reciprocal: each(n) { r in for i in r { y[i] = 1 / x[i] } }
        case .pow(let p):
            if p == 2 { each(n) { r in for i in r { y[i] = x[i] * x[i] } } } else { each(n) { r in for i in r { y[i] = Foundation.pow(x[i], p) } } }
        case .clamp(let lo, let hi): each(n) { r in for i in r { y[i] = Swift.min(Swift.max(x[i], lo), hi) } }
        case .leakyRelu(let a): each(n) { r in for i in r { let v = x[i]; y[i] = v > 0 ? v : a * v } }
        case .scale(let c): each(n) { r in for i in r { y[i] = c * x[i] } }
        case .addScalar(let c): each(n) { r in for i in r { y[i] = x[i] + c } }
        }
    }

    /// Loads happen before the selects: a load under a condition blocks LLVM's vectorizer
    /// (it cannot prove the pointer is dereferenceable), which made relu's backward 30x slower.
    /// gx[i] = g[i] * op'(x[i]), given the forward input `x` and output `y`. Masks follow PyTorch's
    /// derivatives.yaml (relu6/clamp pass the gradient on the closed interval only where PyTorch does).
    public static func unaryBackward(_ op: UnaryOp, x: UnsafePointer<Float>, y: UnsafePointer<Float>,
                                     g: UnsafePointer<Float>, gx: UnsafeMutablePointer<Float>, count n: Int) {
        switch op {
        case .neg: each(n) { r in for i in r { gx[i] = -g[i] } }
        case .exp: each(n) { r in for i in r { gx[i] = g[i] * y[i] } }
        case .log: each(n) { r in for i in r { gx[i] = g[i] / x[i] } }
        case .sqrt: each(n) { r in for i in r { gx[i] = g[i] / (2 * y[i]) } }
        case .abs: each(n) { r in for i in r { let v = x[i], gv = g[i]; gx[i] = v > 0 ? gv : (v < 0 ? -gv : 0) } }
        case .relu: each(n) { r in for i in r { let gv = g[i]; gx[i] = x[i] > 0 ? gv : 0 } }
        case .relu6: each(n) { r in for i in r { let v = x[i], gv = g[i]; gx[i] = (v > 0 && v < 6) ? gv : 0 } }
        case .sigmoid: each(n) { r in for i in r { let s = y[i]; gx[i] = g[i] * s * (1 - s) } }
        // (1 - t)(1 + t), not 1 - t*t, which cancels to a few bits when |t| is near 1 (as PyTorch 2.15).
        case .tanh: each(n) { r in for i in r { let t = y[i]; gx[i] = g[i] * ((1 - t) * (1 + t)) } }
        // PyTorch's boundaries: 0 for x <= -3, g for x >= 3, g (x/3 + 1/2) strictly between.
        case .hardswish:
            each(n) { r in for i in r { let v = x[i], gv = g[i]; gx[i] = v <= -3 ? 0 : (v < 3 ? gv * (v / 3 + 0.5) : gv) } }
        case .hardsigmoid: each(n) { r in for i in r { let v = x[i], gv = g[i]; gx[i] = (v > -3 && v < 3) ? gv / 6 : 0 } }
        case .silu: each(n) { r in for i in r { let v = x[i]; let s = sigmoidf(v); gx[i] = g[i] * s * (1 + v * (1 - s)) } }
        case .square: each(n) { r in for i in r { gx[i] = 2 * x[i] * g[i] } }
        case .softplus: each(n) { r in for i in r { gx[i] = g[i] * sigmoidf(x[i]) } }
        case .reciprocal: each(n) { r in for i in r { let r = y[i]; gx[i] = -g[i] * r * r } }
        case .pow(let p):
            if p == 2 { each(n) { r in for i in r { gx[i] = 2 * x[i] * g[i] } } }
            else if p == 1 { each(n) { r in for i in r { gx[i] = g[i] } } }
            else if p == 0 { each(n) { r in for i in r { gx[i] = 0 } } }
            else { each(n) { r in for i in r { gx[i] = g[i] * p * Foundation.pow(x[i], p - 1) } } }
        case .clamp(let lo, let hi): each(n) { r in for i in r { let v = x[i], gv = g[i]; gx[i] = (v >= lo && v <= hi) ? gv : 0 } }
        case .leakyRelu(let a): each(n) { r in for i in r { let gv = g[i]; gx[i] = x[i] > 0 ? gv : a * gv } }
        case .scale(let c): each(n) { r in for i in r { gx[i] = c * g[i] } }
        case .addScalar: each(n) { r in for i in r { gx[i] = g[i] } }
        }
    }

    /// out = cond != 0 ? a : b (same sizes).
    public static func select(_ cond: UnsafePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                              _ out: UnsafeMutablePointer<Float>, count n: Int) {
        each(n) { r in for i in r { let av = a[i], bv = b[i]; out[i] = cond[i] != 0 ? av : bv } }
    }

    /// Zeroes `g` where the mask is zero (`keep == true`) or non-zero (`keep == false`).
    public static func masked(_ cond: UnsafePointer<Float>, _ g: UnsafePointer<Float>, keepWhereTrue: Bool,
                              _ out: UnsafeMutablePointer<Float>, count n: Int) {
        if keepWhereTrue { each(n) { r in for i in r { let gv = g[i]; out[i] = cond[i] != 0 ? gv : 0 } } }
        else { each(n) { r in for i in r { let gv = g[i]; out[i] = cond[i] != 0 ? 0 : gv } } }
    }

    /// out = a op b with NumPy broadcasting; `a`, `b` and `out` are contiguous with the given shapes
    /// (`outShape` must be the broadcast shape).
    /// Expands `x` (shape broadcastable to `outShape`) into `out`.
    public static func broadcastTo(_ x: UnsafePointer<Float>, _ xShape: [Int], _ out: UnsafeMutablePointer<Float>, _ outShape: [Int]) {
        broadcast(FirstFn.self, x, xShape, x, [1], out, outShape)
    }

    public static func binary(_ op: BinaryOp, _ a: UnsafePointer<Float>, _ aShape: [Int],
                              _ b: UnsafePointer<Float>, _ bShape: [Int],
                              _ out: UnsafeMutablePointer<Float>, _ outShape: [Int]) {
        switch op {
        case .add: broadcast(AddFn.self, a, aShape, b, bShape, out, outShape)
        case .sub: broadcast(SubFn.self, a, aShape, b, bShape, out, outShape)
        case .mul: broadcast(MulFn.self, a, aShape, b, bShape, out, outShape)
        case .div: broadcast(DivFn.self, a, aShape, b, bShape, out, outShape)
        }
    }

    /// Row-wise broadcast loop. The function is a type parameter (not a closure) so every specialisation
    /// has it inlined in its four inner loops, even inside the parallel closure.
    static func broadcast<F: BinaryFn>(_: F.Type, _ a: UnsafePointer<Float>, _ aShape: [Int], _ b: UnsafePointer<Float>, _ bShape: [Int],
                                       _ out: UnsafeMutablePointer<Float>, _ outShape: [Int]) {
        let plan = BroadcastPlan(aShape, bShape, outShape)
        let inner = plan.sizes.last!
        let sa = plan.aStrides.last!, sb = plan.bStrides.last!
        let rows = plan.rows
        if rows == 1 {
            parallelChunks(inner, grain: 65_536) { r in
                broadcastRow(F.self, a, b, out, sa: sa, sb: sb, lo: r.lowerBound, hi: r.upperBound)
            }
        } else {
            parallelChunks(rows, grain: max(1, 65_536 / max(1, inner))) { r in
                for rr in r {
                    let (ao, bo) = plan.offsets(row: rr)
                    broadcastRow(F.self, a + ao, b + bo, out + rr * inner, sa: sa, sb: sb, lo: 0, hi: inner)
                }
            }
        }
    }

    @inline(__always)
    static func broadcastRow<F: BinaryFn>(_: F.Type, _ pa: UnsafePointer<Float>, _ pb: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>,
                                          sa: Int, sb: Int, lo: Int, hi: Int) {
        if sa == 1 && sb == 1 { for i in lo..<hi { o[i] = F.apply(pa[i], pb[i]) } }
        else if sa == 1 { let v = pb[0]; for i in lo..<hi { o[i] = F.apply(pa[i], v) } }
        else if sb == 1 { let v = pa[0]; for i in lo..<hi { o[i] = F.apply(v, pb[i]) } }
        else { let v = F.apply(pa[0], pb[0]); for i in lo..<hi { o[i] = v } }
    }
}

protocol BinaryFn { static func apply(_ a: Float, _ b: Float) -> Float }
enum AddFn: BinaryFn { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum SubFn: BinaryFn { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
enum MulFn: BinaryFn { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
enum DivFn: BinaryFn { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a / b } }
enum FirstFn: BinaryFn { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a } }

/// Broadcast iteration plan: shapes right-aligned, size-1 axes get stride 0, adjacent axes merged when
/// both inputs stay contiguous across them. The last axis is iterated as a row.
struct BroadcastPlan {
    var sizes: [Int] = []
    var aStrides: [Int] = []
    var bStrides: [Int] = []
    var rows: Int

    init(_ aShape: [Int], _ bShape: [Int], _ outShape: [Int]) {
        let r = outShape.count
        func strides(_ s: [Int]) -> [Int] {
            let padded = [Int](repeating: 1, count: r - s.count) + s
            var st = [Int](repeating: 0, count: r)
            var acc = 1
            for k in stride(from: r - 1, through: 0, by: -1) {
                st[k] = padded[k] == 1 ? 0 : acc
                acc *= padded[k]
            }
            return st
        }
        let sa = strides(aShape), sb = strides(bShape)
        for k in 0..<r where outShape[k] != 1 {
            if let last = sizes.last,
               aStrides.last! == sa[k] * outShape[k] || (aStrides.last! == 0 && sa[k] == 0),
               bStrides.last! == sb[k] * outShape[k] || (bStrides.last! == 0 && sb[k] == 0) {
                sizes[sizes.count - 1] = last * outShape[k]
                aStrides[aStrides.count - 1] = sa[k]
                bStrides[bStrides.count - 1] = sb[k]
            } else {
                sizes.append(outShape[k]); aStrides.append(sa[k]); bStrides.append(sb[k])
            }
        }
        if sizes.isEmpty { sizes = [1]; aStrides = [0]; bStrides = [0] }
        rows = sizes.dropLast().reduce(1, *)
    }

    @inline(__always)
    func offsets(row: Int) -> (Int, Int) {
        var r = row, ao = 0, bo = 0
        var k = sizes.count - 2
        while k >= 0 {
            let i = r % sizes[k]
            r /= sizes[k]
            ao += i * aStrides[k]; bo += i * bStrides[k]
            k -= 1
        }
        return (ao, bo)
    }
}

public enum Shape {
    /// NumPy broadcast of two shapes, or a `ShapeError` naming the op and both shapes.
    public static func broadcast(_ a: [Int], _ b: [Int], op: String = "broadcast") throws -> [Int] {
        let r = max(a.count, b.count)
        let pa = [Int](repeating: 1, count: r - a.count) + a
        let pb = [Int](repeating: 1, count: r - b.count) + b
        var out = [Int](repeating: 1, count: r)
        for k in 0..<r {
            if pa[k] == pb[k] || pb[k] == 1 { out[k] = pa[k] }
            else if pa[k] == 1 { out[k] = pb[k] }
            else { throw ShapeError(op: op, "shapes \(a) and \(b) cannot be broadcast (axis \(k): \(pa[k]) vs \(pb[k]))") }
        }
        return out
    }

    /// Normalises a possibly negative axis for a tensor of `rank`, or throws naming the op and the shape.
    public static func axis(_ axis: Int, rank: Int, op: String, shape: [Int]) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0 && a < max(rank, 1) else {
            throw ShapeError(op: op, "axis \(axis) is out of range for shape \(shape) (rank \(rank))")
        }
        return a
    }

    public static func count(_ s: [Int]) -> Int { s.reduce(1, *) }
}
