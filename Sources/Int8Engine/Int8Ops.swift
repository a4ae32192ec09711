import Kernels
import CInt8

/// An op with a float epilogue the builder may still extend: per-channel affine (a following
/// BatchNorm), an activation, and quantization to the consumer's grid.
protocol Int8EpilogueOp: Int8Op {
    var outGrid: Int8Grid? { get set }
    var activation: Int32 { get set }
    /// Composes y -> y * scale[c] + shift[c] after the current affine map; false when it cannot.
    func composeAffine(scale: [Float], shift: [Float]) -> Bool
    /// Adds value `v` (same shape as the output) after the affine map, before the activation: a
    /// residual add fused into the epilogue; false when it cannot.
    func fuseResidual(_ v: Int) -> Bool
    /// Requantize in one rounding (`Int8FoldedRequantization`, the default) or as the fake-quant op
    /// does, y = alpha * acc + beta then y * (1 / s) (two roundings).
    var foldsRequantization: Bool { get set }
}

/// The C epilogue of an op writing into `out` (stored codes on `grid`, or floats) from row `rowOffset`.
func makeEpilogue(alpha: UnsafePointer<Float>, beta: UnsafePointer<Float>, activation: Int32, grid: Int8Grid?,
                  out: Int8Output, channels: Int, rowOffset: Int, folded: Int8FoldedRequantization? = nil,
                  residual: qi8_operand? = nil) -> qi8_epilogue {
    var ep = qi8_epilogue()
    if var r = residual {
        if r.codes != nil { r.codes += rowOffset * channels } else { r.floats += rowOffset * channels }
        ep.residual = r
    }
    if let f = folded { ep.qalpha = f.alpha; ep.qbeta = f.beta; ep.qlo = f.lo; ep.qhi = f.hi }
    ep.alpha = alpha; ep.beta = beta; ep.activation = activation; ep.ldc = channels
    if let g = grid {
        let (z, lo, hi) = g.storedBounds
        ep.inv_scale = g.inverse; ep.zero_point = z; ep.lo = lo; ep.hi = hi
        ep.out_codes = out.codes! + rowOffset * channels
    } else {
        ep.out_float = out.floats! + rowOffset * channels
    }
    return ep
}

/// Requantization folded into one multiply-add: codes = clamp(round(qalpha * acc + qbeta), lo, hi), with
/// qalpha = alpha / s, qbeta = beta / s + z and the activation's clamp (relu: code z, relu6: z +
/// round(6 / s)) in the bounds. The fake-quant op rounds y = alpha * acc + beta, then y * (1 / s): the
/// folded form differs only by float rounding, at a half-step boundary (measured in the agreement tests).
struct Int8FoldedRequantization: @unchecked Sendable {
    var alpha: UnsafePointer<Float>
    var beta: UnsafePointer<Float>
    var lo: Float, hi: Float

    typealias Constants = (alpha: [Float], beta: [Float], lo: Float, hi: Float)

    /// The folded constants of an epilogue, nil when it cannot fold (float out, hardswish, a residual).
    static func constants(alpha: [Float], beta: [Float], activation: Int32, grid: Int8Grid?, residual: Bool) -> Constants? {
        guard !residual, let g = grid, [Int32(QI8_ACT_NONE), Int32(QI8_ACT_RELU), Int32(QI8_ACT_RELU6)].contains(activation) else { return nil }
        let inv = g.inverse, z = Float(g.storedZero)
        var (lo, hi) = (Float(g.qmin + g.offset), Float(g.qmax + g.offset))
        if activation != Int32(QI8_ACT_NONE) { lo = Swift.max(lo, z) }
        if activation == Int32(QI8_ACT_RELU6) { hi = Swift.min(hi, (6 * inv).rounded(.toNearestOrEven) + z) }
        return (alpha.map { $0 * inv }, beta.map { $0 * inv + z }, lo, hi)
    }
}

/// Raw pointers to an output value's storage, taken once before a parallel loop writes disjoint rows.
struct Int8Output: @unchecked Sendable {
    var codes: UnsafeMutablePointer<UInt8>?
    var floats: UnsafeMutablePointer<Float>?
}

extension Int8Tensor {
    func withOutput<R>(_ body: (Int8Output) -> R) -> R {
        if grid != nil { return codes.withUnsafeMutableBufferPointer { body(Int8Output(codes: $0.baseAddress, floats: nil)) } }
        return floats.withUnsafeMutableBufferPointer { body(Int8Output(codes: nil, floats: $0.baseAddress)) }
    }
}

/// Float (or another grid's codes) to codes: the fake-quant op's arithmetic.
final class Int8Quantize: Int8Op {
    let name: String
    let inputs: [Int]
    let output: Int
    let grid: Int8Grid
    init(name: String, input: Int, output: Int, grid: Int8Grid) {
        self.name = "quantize " + name; inputs = [input]; self.output = output; self.grid = grid
    }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let x = values[inputs[0]]!
        let y = Int8Tensor(n: x.n, h: x.h, w: x.w, c: x.c, grid: grid)
        let zeroBeta: [Float] = [0], path = Int8Kernels.path
        y.withOutput { out in zeroBeta.withUnsafeBufferPointer { z in
            let ep = makeEpilogue(alpha: z.baseAddress!, beta: z.baseAddress!, activation: 0, grid: grid, out: out, channels: x.c, rowOffset: 0)
            if let input = x.nchwInput {
                let fp = UnsafePointer(input.pointer)
                parallelChunks(x.n, grain: 1) { r in var e = ep; qi8_quantize_nchw(path, Int32(r.lowerBound), Int32(r.upperBound), fp, Int32(x.c), x.h * x.w, &e) }
            } else {
                withOperand(x) { a in
                    parallelChunks(x.count) { r in var e = ep; qi8_quantize(path, r.lowerBound, r.upperBound, a, &e) }
                }
            }
        }}
        return y
    }
}

/// The C view of a value as an elementwise operand (codes with their dequantization, or floats).
func withOperand<R>(_ t: Int8Tensor, _ body: (qi8_operand) -> R) -> R {
    if let g = t.grid {
        return t.codes.withUnsafeBufferPointer { body(qi8_operand(codes: $0.baseAddress, floats: nil, scale: g.scale, zero: Float(g.storedZero))) }
    }
    return t.floats.withUnsafeBufferPointer { body(qi8_operand(codes: nil, floats: $0.baseAddress, scale: 0, zero: 0)) }
}

/// x + y (each float or codes, dequantized as the fake-quant model holds them), an optional activation
/// (ResNet's relu after the add), then the add's quantizer (or float out).
final class Int8Add: Int8EpilogueOp {
    let name: String
    let inputs: [Int]
    let output: Int
    var outGrid: Int8Grid?
    var activation: Int32 = Int32(QI8_ACT_NONE)
    init(name: String, _ a: Int, _ b: Int, output: Int) { self.name = name; inputs = [a, b]; self.output = output }
    func composeAffine(scale: [Float], shift: [Float]) -> Bool { false }
    func fuseResidual(_ v: Int) -> Bool { false }
    var foldsRequantization: Bool { get { false } set {} }

    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let a = values[inputs[0]]!, b = values[inputs[1]]!
        precondition(a.count == b.count, "int8 engine: \(name) adds \(a.count) and \(b.count) values")
        let y = Int8Tensor(n: a.n, h: a.h, w: a.w, c: a.c, grid: outGrid)
        let zeroBeta: [Float] = [0], path = Int8Kernels.path
        y.withOutput { out in zeroBeta.withUnsafeBufferPointer { z in withOperand(a) { oa in withOperand(b) { ob in
            let ep = makeEpilogue(alpha: z.baseAddress!, beta: z.baseAddress!, activation: activation, grid: outGrid, out: out, channels: a.c, rowOffset: 0)
            parallelChunks(y.count) { r in var e = ep; qi8_add(path, r.lowerBound, r.upperBound, oa, ob, &e) }
        }}}}
        return y
    }
}

@inline(__always) func activate(_ v: Float, _ act: Int32) -> Float {
    switch act {
    case Int32(QI8_ACT_RELU): return Swift.max(v, 0)
    case Int32(QI8_ACT_RELU6): return Swift.min(Swift.max(v, 0), 6)
    case Int32(QI8_ACT_HARDSWISH): return v * Swift.min(Swift.max(v + 3, 0), 6) / 6
    case Int32(QI8_ACT_HARDSIGMOID): return Swift.min(Swift.max(v + 3, 0), 6) / 6
    default: return v
    }
}

/// An activation on a float value that no epilogue could absorb.
final class Int8Activation: Int8Op {
    let name: String
    let inputs: [Int]
    let output: Int
    let activation: Int32
    init(name: String, input: Int, output: Int, activation: Int32) { self.name = name; inputs = [input]; self.output = output; self.activation = activation }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let x = values[inputs[0]]!
        let y = Int8Tensor(n: x.n, h: x.h, w: x.w, c: x.c, grid: nil)
        let act = activation
        x.floats.withUnsafeBufferPointer { s in y.floats.withUnsafeMutableBufferPointer { o in
            let sp = s.baseAddress!, op = o.baseAddress!
            parallelChunks(x.count) { r in for i in r { op[i] = activate(sp[i], act) } }
        }}
        return y
    }
}

/// Global average pooling to [N, 1, 1, C] floats (the classifier's input), of values or dequantized codes.
final class Int8GlobalAvgPool: Int8Op {
    let name: String
    let inputs: [Int]
    let output: Int
    init(name: String, input: Int, output: Int) { self.name = name; inputs = [input]; self.output = output }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let x = values[inputs[0]]!
        let y = Int8Tensor(n: x.n, h: 1, w: 1, c: x.c, grid: nil)
        let v = x.grid == nil ? x.floats : x.values()
        let hw = x.h * x.w, c = x.c
        for b in 0..<x.n {
            for ch in 0..<c {
                var s: Float = 0
                for i in 0..<hw { s += v[(b * hw + i) * c + ch] }
                y.floats[b * c + ch] = s / Float(hw)
            }
        }
        return y
    }
}

/// Max pooling of float values (ResNet's stem), NHWC, padding never selected.
final class Int8MaxPool: Int8Op {
    let name: String
    let inputs: [Int]
    let output: Int
    let k: Int, s: Int, p: Int
    init(name: String, input: Int, output: Int, kernel: Int, stride: Int, padding: Int) {
        self.name = name; inputs = [input]; self.output = output; k = kernel; s = stride; p = padding
    }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let x = values[inputs[0]]!
        let oh = (x.h + 2 * p - k) / s + 1, ow = (x.w + 2 * p - k) / s + 1
        let y = Int8Tensor(n: x.n, h: oh, w: ow, c: x.c, grid: nil)
        let c = x.c, (k, s, p, h, w) = (k, s, p, x.h, x.w)
        x.floats.withUnsafeBufferPointer { xp in y.floats.withUnsafeMutableBufferPointer { yp in
            let src = xp.baseAddress!, dst = yp.baseAddress!
            parallelChunks(x.n * oh, grain: 1) { r in
                for row in r {
                    let b = row / oh, oy = row % oh
                    for ox in 0..<ow {
                        let o = (row * ow + ox) * c
                        for ch in 0..<c { dst[o + ch] = -Float.infinity }
                        for ky in 0..<k { let iy = oy * s - p + ky; if iy < 0 || iy >= h { continue }
                            for kx in 0..<k { let ix = ox * s - p + kx; if ix < 0 || ix >= w { continue }
                                let i = ((b * h + iy) * w + ix) * c
                                for ch in 0..<c { dst[o + ch] = Swift.max(dst[o + ch], src[i + ch]) }
                            }
                        }
                    }
                }
            }
        }}
        return y
    }
}

/// x * s with s per image and channel ([N, 1, 1, C] floats): squeeze-and-excitation's scaling; x floats
/// or codes (dequantized), float out.
final class Int8ChannelScale: Int8Op {
    let name: String
    let inputs: [Int]
    let output: Int
    init(name: String, input: Int, scale: Int, output: Int) { self.name = name; inputs = [input, scale]; self.output = output }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let x = values[inputs[0]]!, s = values[inputs[1]]!
        precondition(s.n == x.n && s.c == x.c && s.h * s.w == 1, "int8 engine: \(name) scales \(x.c) channels by \(s.c)")
        let y = Int8Tensor(n: x.n, h: x.h, w: x.w, c: x.c, grid: nil)
        let v = x.values(), hw = x.h * x.w, c = x.c
        v.withUnsafeBufferPointer { vp in s.floats.withUnsafeBufferPointer { sp in y.floats.withUnsafeMutableBufferPointer { yp in
            let vb = vp.baseAddress!, sb = sp.baseAddress!, yb = yp.baseAddress!
            parallelChunks(x.n * hw, grain: 256) { r in
                for p in r {
                    let b = p / hw
                    for ch in 0..<c { yb[p * c + ch] = vb[p * c + ch] * sb[b * c + ch] }
                }
            }
        }}}
        return y
    }
}
