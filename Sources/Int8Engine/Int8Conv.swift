import Kernels
import CInt8

/// A quantized convolution (or linear layer, a 1x1 conv on [N, 1, 1, K]) on stored codes: int8 x
/// int8 products accumulated exactly in int32 with both zero points corrected, then the float
/// epilogue y = alpha[c] * acc + beta[c] (alpha = s_x * s_w[c] times a merged BatchNorm's scale),
/// activation, and either float out or the consumer quantizer's codes.
///
/// Dense convs run as GEMMs (im2col in (ky, kx, channel) order unless 1x1 at stride 1); depthwise
/// convs (groups == channels) run a direct NHWC kernel with exact float accumulation.
final class Int8Conv: Int8EpilogueOp {
    enum Kind { case dense, depthwise }
    let name: String
    var inputs: [Int]
    let output: Int
    let kind: Kind
    /// A fused residual add's other operand (value id), read in the epilogue.
    var residual: Int?
    var foldsRequantization = true { didSet { foldCache = nil } }
    /// The folded requantization constants (nil inside: this epilogue does not fold), derived once from
    /// the epilogue rather than on every forward; any change to the epilogue clears them.
    private var foldCache: Int8FoldedRequantization.Constants??
    let cin: Int, cout: Int
    let kh: Int, kw: Int, sh: Int, sw: Int, ph: Int, pw: Int, dh: Int, dw: Int
    let inGrid: Int8Grid
    var alpha: [Float], beta: [Float]
    var activation: Int32 = Int32(QI8_ACT_NONE) { didSet { foldCache = nil } }
    var outGrid: Int8Grid? { didSet { foldCache = nil } }
    // dense
    let k: Int
    var packed: [Int8] = []
    var corr: [Int32] = []
    var zw: [Int32]? = nil
    // depthwise
    var wf: [Float] = []

    /// `weights.codes` in [out, in/groups, kh, kw] order (PyTorch's layout); `bias` before any BN.
    init(name: String, input: Int, output: Int, inGrid: Int8Grid, weights: Int8Weights, bias: [Float]?,
         cin: Int, cout: Int, groups: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)) throws {
        self.name = name; inputs = [input]; self.output = output; self.inGrid = inGrid
        self.cin = cin; self.cout = cout
        (kh, kw) = kernel; (sh, sw) = stride; (ph, pw) = padding; (dh, dw) = dilation
        alpha = weights.scale.map { inGrid.scale * $0 }
        beta = bias ?? [Float](repeating: 0, count: cout)
        if groups == 1 {
            kind = .dense
            k = kh * kw * cin
            // [out][in][ky][kx] -> [out][ky][kx][in], the im2col order.
            var w = [Int8](repeating: 0, count: cout * k)
            for o in 0..<cout { for i in 0..<cin { for y in 0..<kh { for x in 0..<kw {
                w[o * k + (y * kw + x) * cin + i] = weights.codes[((o * cin + i) * kh + y) * kw + x]
            }}}}
            packed = [Int8](repeating: 0, count: qi8_packed_bytes(Int32(cout), Int32(k)))
            w.withUnsafeBufferPointer { s in packed.withUnsafeMutableBufferPointer { d in qi8_pack(s.baseAddress, Int32(cout), Int32(k), d.baseAddress) } }
            let zx = Int32(inGrid.storedZero)
            corr = (0..<cout).map { o in
                var s: Int32 = 0
                for i in 0..<k { s += Int32(w[o * k + i]) }
                return -zx * s + Int32(k) * zx * weights.zero[o]
            }
            zw = weights.hasZeroPoints ? weights.zero : nil
        } else if groups == cin && cout == cin {
            kind = .depthwise
            k = kh * kw
            wf = [Float](repeating: 0, count: k * cout)
            for o in 0..<cout { for t in 0..<k { wf[t * cout + o] = Float(Int32(weights.codes[o * k + t]) - weights.zero[o]) } }
        } else {
            throw Int8Error(path: name, "grouped convolution (groups \(groups), \(cin) -> \(cout) channels); the int8 engine runs dense and depthwise convs")
        }
    }

    func fuseResidual(_ v: Int) -> Bool {
        guard residual == nil, activation == Int32(QI8_ACT_NONE), outGrid == nil else { return false }
        residual = v
        inputs.append(v)
        foldCache = nil
        return true
    }

    func composeAffine(scale: [Float], shift: [Float]) -> Bool {
        guard residual == nil else { return false }
        guard activation == Int32(QI8_ACT_NONE), outGrid == nil else { return false }
        for c in 0..<cout { alpha[c] *= scale[c]; beta[c] = beta[c] * scale[c] + shift[c] }
        foldCache = nil
        return true
    }

    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let x = values[inputs[0]]!
        precondition(x.grid != nil && x.c == cin, "int8 engine: \(name) expects \(cin) coded channels, got \(x.c)")
        let oh = (x.h + 2 * ph - dh * (kh - 1) - 1) / sh + 1, ow = (x.w + 2 * pw - dw * (kw - 1) - 1) / sw + 1
        let y = Int8Tensor(n: x.n, h: oh, w: ow, c: cout, grid: outGrid)
        let units = x.n * oh, path = Int8Kernels.path
        let zx = inGrid.storedZero, grid = outGrid, act = activation
        let (cin, cout, k, kh, kw, sh, sw, ph, pw, dh, dw) = (cin, cout, k, kh, kw, sh, sw, ph, pw, dh, dw)
        if foldCache == nil {
            foldCache = .some(foldsRequantization ? Int8FoldedRequantization.constants(alpha: alpha, beta: beta, activation: act, grid: grid,
                                                                                       residual: residual != nil) : nil)
        }
        let fold = foldCache!
        let res = residual.map { values[$0]! }
        if let res { precondition(res.count == y.count, "int8 engine: \(name)'s residual has \(res.count) values for \(y.count) outputs") }
        let qa = fold?.alpha ?? [], qb = fold?.beta ?? []
        withOptionalOperand(res) { resOperand in
        x.codes.withUnsafeBufferPointer { xs in y.withOutput { out in alpha.withUnsafeBufferPointer { al in beta.withUnsafeBufferPointer { be in
          qa.withUnsafeBufferPointer { qap in qb.withUnsafeBufferPointer { qbp in
            let xp = xs.baseAddress!, alp = al.baseAddress!, bep = be.baseAddress!
            let folded = fold.map { Int8FoldedRequantization(alpha: qap.baseAddress!, beta: qbp.baseAddress!, lo: $0.lo, hi: $0.hi) }
            switch kind {
            case .depthwise:
                wf.withUnsafeBufferPointer { wfp in
                    let wp = wfp.baseAddress!
                    parallelChunks(units, grain: max(1, 4096 / max(1, ow * cout))) { r in
                        // The kernel indexes output rows from the start of the tensor.
                        var ep = makeEpilogue(alpha: alp, beta: bep, activation: act, grid: grid, out: out, channels: cout, rowOffset: 0, folded: folded, residual: resOperand)
                        qi8_depthwise(path, Int32(r.lowerBound), Int32(r.upperBound), xp, Int32(x.h), Int32(x.w), Int32(cin),
                                      Float(zx), wp, Int32(kh), Int32(kw), Int32(sh), Int32(sw),
                                      Int32(ph), Int32(pw), Int32(dh), Int32(dw), Int32(oh), Int32(ow), &ep)
                    }
                }
            case .dense:
                let direct = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0
                packed.withUnsafeBufferPointer { pk in corr.withUnsafeBufferPointer { cr in withOptionalPointer(zw) { zp in
                    let pkp = pk.baseAddress!, crp = cr.baseAddress!
                    parallelChunks(units, grain: max(1, 192 / max(1, ow))) { r in
                        let rows = r.count * ow, row0 = r.lowerBound * ow
                        var ep = makeEpilogue(alpha: alp, beta: bep, activation: act, grid: grid, out: out, channels: cout, rowOffset: row0, folded: folded, residual: resOperand)
                        if direct {
                            qi8_gemm(path, Int32(rows), Int32(cout), Int32(k), xp + row0 * cin, cin, pkp, crp, zp, &ep)
                        } else {
                            // im2col a few output rows at a time into one small buffer (heap, reused; no page faults).
                            let block = max(1, min(r.count, 65_536 / max(1, ow * k)))
                            let col = UnsafeMutablePointer<UInt8>.allocate(capacity: block * ow * k)
                            defer { col.deallocate() }
                            var u = r.lowerBound
                            while u < r.upperBound {
                                let e = min(r.upperBound, u + block), rowsHere = (e - u) * ow
                                qi8_im2col(Int32(u), Int32(e), xp, Int32(x.h), Int32(x.w), Int32(cin), UInt8(zx),
                                           Int32(kh), Int32(kw), Int32(sh), Int32(sw), Int32(ph), Int32(pw), Int32(dh), Int32(dw),
                                           Int32(oh), Int32(ow), col, k)
                                var epb = makeEpilogue(alpha: alp, beta: bep, activation: act, grid: grid, out: out, channels: cout, rowOffset: u * ow, folded: folded, residual: resOperand)
                                qi8_gemm(path, Int32(rowsHere), Int32(cout), Int32(k), col, k, pkp, crp, zp, &epb)
                                u = e
                            }
                        }
                    }
                }}}
            }
          }}
        }}}}
        }
        return y
    }
}

func withOptionalOperand<R>(_ t: Int8Tensor?, _ body: (qi8_operand?) -> R) -> R {
    guard let t else { return body(nil) }
    return withOperand(t) { body($0) }
}

func withOptionalPointer<R>(_ a: [Int32]?, _ body: (UnsafePointer<Int32>?) -> R) -> R {
    guard let a else { return body(nil) }
    return a.withUnsafeBufferPointer { body($0.baseAddress) }
}
