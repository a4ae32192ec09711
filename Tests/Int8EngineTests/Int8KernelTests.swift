import XCTest
import CInt8
@testable import Int8Engine

/// The C kernels against a plain integer reference, on every path this CPU runs.
final class Int8KernelTests: XCTestCase {
    /// Every kernel path this CPU runs (portable, AVX2, AVX-512 VNNI).
    var paths: [Int32] { Int8Kernels.available }

    /// sum_k (a - zx)(w - zw) per row and column, then the float epilogue.
    func reference(_ a: [UInt8], _ w: [Int8], m: Int, n: Int, k: Int, zx: Int32, zw: [Int32]) -> [Int32] {
        var out = [Int32](repeating: 0, count: m * n)
        for r in 0..<m { for j in 0..<n {
            var s: Int32 = 0
            for i in 0..<k { s += (Int32(a[r * k + i]) - zx) * (Int32(w[j * k + i]) - zw[j]) }
            out[r * n + j] = s
        }}
        return out
    }

    func testGEMMMatchesIntegerReferenceOnEveryTileShape() {
        var g = SystemRandomNumberGenerator()
        for (m, n, k) in [(1, 1, 1), (7, 17, 5), (13, 70, 27), (6, 64, 64), (25, 33, 131), (2, 130, 260)] {
            let a = (0..<(m * k)).map { _ in UInt8.random(in: 0...255, using: &g) }
            let w = (0..<(n * k)).map { _ in Int8.random(in: -128...127, using: &g) }
            let zx: Int32 = 37
            for zeroWeights in [false, true] {
                let zw = (0..<n).map { _ in zeroWeights ? Int32(0) : Int32.random(in: -128...127, using: &g) }
                let ref = reference(a, w, m: m, n: n, k: k, zx: zx, zw: zw)
                var packed = [Int8](repeating: 0, count: qi8_packed_bytes(Int32(n), Int32(k)))
                qi8_pack(w, Int32(n), Int32(k), &packed)
                let corr = (0..<n).map { j -> Int32 in
                    var s: Int32 = 0; for i in 0..<k { s += Int32(w[j * k + i]) }
                    return -zx * s + Int32(k) * zx * zw[j]
                }
                let alpha = [Float](repeating: 1, count: n), beta = [Float](repeating: 0, count: n)
                for path in paths {
                    var out = [Float](repeating: .nan, count: m * n)
                    alpha.withUnsafeBufferPointer { al in beta.withUnsafeBufferPointer { be in out.withUnsafeMutableBufferPointer { o in
                        var ep = qi8_epilogue()
                        ep.alpha = al.baseAddress; ep.beta = be.baseAddress; ep.out_float = o.baseAddress; ep.ldc = n
                        withOptionalPointer(zeroWeights ? nil : zw) { zp in qi8_gemm(path, Int32(m), Int32(n), Int32(k), a, k, packed, corr, zp, &ep) }
                    }}}
                    // Accumulators below 2^24 convert to float exactly.
                    XCTAssertEqual(out, ref.map { Float($0) }, "m \(m) n \(n) k \(k) path \(path) zw \(!zeroWeights)")
                }
            }
        }
    }

    func testEpilogueQuantizesLikeTheFakeQuantOp() {
        // alpha * acc + beta, relu6, then x * (1 / s) rounded half to even, + z, clamped.
        let n = 5, k = 1
        let a: [UInt8] = [1]
        let w: [Int8] = [-3, -1, 0, 2, 9]
        var packed = [Int8](repeating: 0, count: qi8_packed_bytes(Int32(n), Int32(k)))
        qi8_pack(w, Int32(n), Int32(k), &packed)
        let corr = [Int32](repeating: 0, count: n)
        let alpha: [Float] = [1, 1, 1, 1.25, 1], beta: [Float] = [0, 0.5, 0.25, 0, 0]
        let grid = Int8Grid(path: "q", scale: 0.5, zeroPoint: 3, qmin: 0, qmax: 15)
        for path in paths {
            var out = [UInt8](repeating: 0, count: n)
            alpha.withUnsafeBufferPointer { al in beta.withUnsafeBufferPointer { be in out.withUnsafeMutableBufferPointer { o in
                var ep = makeEpilogue(alpha: al.baseAddress!, beta: be.baseAddress!, activation: Int32(QI8_ACT_RELU6), grid: grid,
                                      out: Int8Output(codes: o.baseAddress, floats: nil), channels: n, rowOffset: 0)
                qi8_gemm(path, 1, Int32(n), Int32(k), a, k, packed, corr, nil, &ep)
            }}}
            // y: -3 -> relu6 0 -> code 3; -0.5 -> 0 -> 3; 0.25 -> 0.5 -> round(0.5)=0 -> 3; 2.5 -> 5 -> 8; 9 -> 6 -> 12 -> 15.
            XCTAssertEqual(out, [3, 3, 3, 8, 15], "path \(path)")
        }
    }

    func testDepthwiseMatchesReference() {
        var g = SystemRandomNumberGenerator()
        let (nImg, h, w, c, kh, kw) = (2, 7, 6, 37, 3, 3)
        for (s, p, d) in [(1, 1, 1), (2, 1, 1), (1, 2, 2), (2, 0, 1)] {
            let oh = (h + 2 * p - d * (kh - 1) - 1) / s + 1, ow = (w + 2 * p - d * (kw - 1) - 1) / s + 1
            let x = (0..<(nImg * h * w * c)).map { _ in UInt8.random(in: 0...255, using: &g) }
            let wq = (0..<(kh * kw * c)).map { _ in Int32.random(in: -128...127, using: &g) }
            let zw = (0..<c).map { _ in Int32.random(in: -20...20, using: &g) }
            let zx: Int32 = 100
            let wf = (0..<(kh * kw * c)).map { Float(wq[$0] - zw[$0 % c]) }
            var ref = [Float](repeating: 0, count: nImg * oh * ow * c)
            for b in 0..<nImg { for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
                var acc: Int32 = 0
                for ky in 0..<kh { for kx in 0..<kw {
                    let iy = oy * s - p + ky * d, ix = ox * s - p + kx * d
                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                    acc += (Int32(x[((b * h + iy) * w + ix) * c + ch]) - zx) * (wq[(ky * kw + kx) * c + ch] - zw[ch])
                }}
                ref[((b * oh + oy) * ow + ox) * c + ch] = Float(acc)
            }}}}
            let alpha = [Float](repeating: 1, count: c), beta = [Float](repeating: 0, count: c)
            for path in paths {
                var out = [Float](repeating: .nan, count: ref.count)
                alpha.withUnsafeBufferPointer { al in beta.withUnsafeBufferPointer { be in out.withUnsafeMutableBufferPointer { o in
                    var ep = makeEpilogue(alpha: al.baseAddress!, beta: be.baseAddress!, activation: 0, grid: nil,
                                          out: Int8Output(codes: nil, floats: o.baseAddress), channels: c, rowOffset: 0)
                    qi8_depthwise(path, 0, Int32(nImg * oh), x, Int32(h), Int32(w), Int32(c), Float(zx), wf, Int32(kh), Int32(kw),
                                  Int32(s), Int32(s), Int32(p), Int32(p), Int32(d), Int32(d), Int32(oh), Int32(ow), &ep)
                }}}
                XCTAssertEqual(out, ref, "stride \(s) pad \(p) dilation \(d) path \(path)")
            }
        }
    }

    func testIm2colFillsPaddingWithTheZeroPoint() {
        // 1 image 2x2x1, 3x3 kernel, pad 1: the centre pixel's row is the whole image framed by zx.
        let x: [UInt8] = [1, 2, 3, 4]
        var col = [UInt8](repeating: 0, count: 4 * 9)
        qi8_im2col(0, 2, x, 2, 2, 1, 9, 3, 3, 1, 1, 1, 1, 1, 1, 2, 2, &col, 9)
        XCTAssertEqual(Array(col[0..<9]), [9, 9, 9, 9, 1, 2, 9, 3, 4])
        XCTAssertEqual(Array(col[27..<36]), [1, 2, 9, 3, 4, 9, 9, 9, 9])
    }
}
