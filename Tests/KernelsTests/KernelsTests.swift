import XCTest
@testable import Kernels

/// Direct 7-loop convolution, the reference for the im2col/GEMM and depthwise paths.
func naiveConv(_ g: ConvGeometry, _ x: [Float], _ w: [Float], _ b: [Float]?) -> [Float] {
    var y = [Float](repeating: 0, count: g.outputShape.reduce(1, *))
    let cg = g.inChannels / g.groups, og = g.outChannels / g.groups
    for n in 0..<g.batch { for o in 0..<g.outChannels {
        let grp = o / og
        for oy in 0..<g.outHeight { for ox in 0..<g.outWidth {
            var s: Double = Double(b?[o] ?? 0)
            for c in 0..<cg { for i in 0..<g.kernelH { for j in 0..<g.kernelW {
                let ih = oy * g.strideH - g.padH + i * g.dilationH, iw = ox * g.strideW - g.padW + j * g.dilationW
                if ih < 0 || ih >= g.height || iw < 0 || iw >= g.width { continue }
                let xv = x[((n * g.inChannels + grp * cg + c) * g.height + ih) * g.width + iw]
                s += Double(xv) * Double(w[((o * cg + c) * g.kernelH + i) * g.kernelW + j])
            }}}
            y[((n * g.outChannels + o) * g.outHeight + oy) * g.outWidth + ox] = Float(s)
        }}
    }}
    return y
}

func randomArray(_ n: Int, seed: UInt64) -> [Float] {
    var rng = RNG(seed: seed)
    let b = FloatBuffer(count: n)
    rng.fillUniform(b.pointer, count: n, low: -1, high: 1)
    return b.array
}

final class ConvKernelTests: XCTestCase {
    struct Case { var input: [Int]; var weight: [Int]; var stride = (1, 1); var pad = (0, 0); var dil = (1, 1); var groups = 1 }
    let cases: [Case] = [
        Case(input: [2, 3, 7, 6], weight: [4, 3, 3, 3], pad: (1, 1)),
        Case(input: [1, 4, 9, 7], weight: [6, 2, 3, 3], stride: (2, 2), pad: (1, 1), groups: 2),
        Case(input: [2, 5, 6, 6], weight: [5, 1, 3, 3], stride: (1, 1), pad: (1, 1), groups: 5),   // depthwise
        Case(input: [1, 3, 9, 8], weight: [3, 1, 3, 3], stride: (2, 2), pad: (1, 1), groups: 3),   // depthwise s2 odd
        Case(input: [2, 3, 5, 4], weight: [3, 1, 3, 2], stride: (1, 2), pad: (2, 0), dil: (2, 1), groups: 3),
        Case(input: [2, 8, 4, 5], weight: [6, 8, 1, 1]),                                             // pointwise
        Case(input: [1, 2, 8, 8], weight: [3, 2, 3, 3], stride: (2, 1), pad: (0, 2), dil: (1, 2)),
        Case(input: [1, 1, 1, 1], weight: [1, 1, 1, 1]),
    ]

    func testForwardMatchesDirectConvolution() throws {
        for (k, c) in cases.enumerated() {
            let g = try ConvGeometry(input: c.input, weight: c.weight, stride: c.stride, padding: c.pad, dilation: c.dil, groups: c.groups)
            let x = randomArray(c.input.reduce(1, *), seed: 1), w = randomArray(c.weight.reduce(1, *), seed: 2)
            let b = randomArray(c.weight[0], seed: 3)
            let ref = naiveConv(g, x, w, b)
            let y = FloatBuffer(count: ref.count)
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
                Conv2D.forward(g, x: xp.baseAddress!, weight: wp.baseAddress!, bias: bp.baseAddress!, y: y.pointer)
            }}}
            for i in 0..<ref.count { XCTAssertEqual(y.pointer[i], ref[i], accuracy: 1e-4, "case \(k) \(g) index \(i)") }
        }
    }

    /// The backward passes are adjoints of the forward: <conv(x), dy> = <x, dx(dy)> and likewise for w.
    func testBackwardIsAdjointOfForward() throws {
        for (k, c) in cases.enumerated() {
            let g = try ConvGeometry(input: c.input, weight: c.weight, stride: c.stride, padding: c.pad, dilation: c.dil, groups: c.groups)
            let x = randomArray(c.input.reduce(1, *), seed: 4), w = randomArray(c.weight.reduce(1, *), seed: 5)
            let dy = randomArray(g.outputShape.reduce(1, *), seed: 6)
            let y = naiveConv(g, x, w, nil)
            let dx = FloatBuffer(count: x.count), dw = FloatBuffer(count: w.count), db = FloatBuffer(count: c.weight[0])
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in dy.withUnsafeBufferPointer { dp in
                Conv2D.backward(g, x: xp.baseAddress!, weight: wp.baseAddress!, dy: dp.baseAddress!, dx: dx.pointer, dw: dw.pointer, db: db.pointer)
            }}}
            let lhs = zip(y, dy).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let viaX = zip(x, dx.array).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let viaW = zip(w, dw.array).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            XCTAssertEqual(viaX, lhs, accuracy: 1e-3 * max(1, abs(lhs)), "dx adjoint, case \(k) \(g)")
            XCTAssertEqual(viaW, lhs, accuracy: 1e-3 * max(1, abs(lhs)), "dw adjoint, case \(k) \(g)")
            // Bias gradient: sum of dy per output channel.
            let p = g.outHeight * g.outWidth
            for o in 0..<g.outChannels {
                var s: Double = 0
                for n in 0..<g.batch { for i in 0..<p { s += Double(dy[(n * g.outChannels + o) * p + i]) } }
                XCTAssertEqual(Double(db.pointer[o]), s, accuracy: 1e-4)
            }
        }
    }

    func testInvalidGeometryThrowsNamedErrors() {
        XCTAssertThrowsError(try ConvGeometry(input: [1, 3, 8, 8], weight: [4, 2, 3, 3])) { e in
            XCTAssertTrue("\(e)".contains("conv2d") && "\(e)".contains("[4, 2, 3, 3]"), "\(e)")
        }
        XCTAssertThrowsError(try ConvGeometry(input: [1, 3, 2, 2], weight: [4, 3, 5, 5]))
        XCTAssertThrowsError(try ConvGeometry(input: [1, 3, 8, 8], weight: [4, 3, 3, 3], stride: (0, 1)))
        XCTAssertThrowsError(try ConvGeometry(input: [1, 4, 8, 8], weight: [3, 2, 3, 3], groups: 2))
        XCTAssertThrowsError(try ConvGeometry(input: [3, 8, 8], weight: [4, 3, 3, 3]))
        XCTAssertThrowsError(try PoolGeometry(input: [1, 1, 4, 4], kernel: (2, 2), stride: (2, 2), padding: (2, 2), op: "max_pool2d"))
        XCTAssertThrowsError(try Shape.broadcast([2, 3], [4, 3], op: "add")) { e in
            XCTAssertTrue("\(e)".contains("[2, 3]") && "\(e)".contains("[4, 3]"))
        }
        XCTAssertThrowsError(try Shape.axis(3, rank: 2, op: "sum", shape: [2, 2]))
        XCTAssertEqual(try Shape.axis(-1, rank: 2, op: "sum", shape: [2, 2]), 1)
    }
}

final class ElementwiseAndReduceTests: XCTestCase {
    func testBroadcastBinaryMatchesNaive() {
        let shapes: [([Int], [Int])] = [([2, 3, 4], [3, 1]), ([1], [5, 2]), ([2, 1, 4], [1, 3, 1]), ([6], [6]), ([2, 3, 1, 1], [3, 1, 1])]
        for (sa, sb) in shapes {
            let out = try! Shape.broadcast(sa, sb)
            let a = randomArray(sa.reduce(1, *), seed: 1), b = randomArray(sb.reduce(1, *), seed: 2)
            let y = FloatBuffer(count: out.reduce(1, *))
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                Elementwise.binary(.sub, ap.baseAddress!, sa, bp.baseAddress!, sb, y.pointer, out)
            }}
            let r = out.count
            let pa = [Int](repeating: 1, count: r - sa.count) + sa, pb = [Int](repeating: 1, count: r - sb.count) + sb
            for i in 0..<y.count {
                var rem = i, ia = 0, ib = 0, ma = 1, mb = 1
                for k in stride(from: r - 1, through: 0, by: -1) {
                    let idx = rem % out[k]; rem /= out[k]
                    ia += (pa[k] == 1 ? 0 : idx) * ma; ma *= pa[k]
                    ib += (pb[k] == 1 ? 0 : idx) * mb; mb *= pb[k]
                }
                XCTAssertEqual(y.pointer[i], a[ia] - b[ib], "\(sa) - \(sb) at \(i)")
            }
        }
    }

    func testSumAndMaxAxes() {
        let shape = [2, 3, 4]
        let x = (0..<24).map { Float(($0 * 7) % 11) }
        let out = FloatBuffer(count: 3), arg = UnsafeMutablePointer<Int>.allocate(capacity: 3)
        defer { arg.deallocate() }
        x.withUnsafeBufferPointer { Reduce.sumAxes($0.baseAddress!, shape: shape, reduce: [true, false, true], out: out.pointer) }
        for c in 0..<3 {
            var s: Float = 0
            for n in 0..<2 { for k in 0..<4 { s += x[n * 12 + c * 4 + k] } }
            XCTAssertEqual(out.pointer[c], s)
        }
        let mx = FloatBuffer(count: 3)
        x.withUnsafeBufferPointer { Reduce.maxAxes($0.baseAddress!, shape: shape, reduce: [true, false, true], out: mx.pointer, arg: arg) }
        for c in 0..<3 {
            var best: Float = -1, bi = -1
            for n in 0..<2 { for k in 0..<4 where x[n * 12 + c * 4 + k] > best { best = x[n * 12 + c * 4 + k]; bi = n * 12 + c * 4 + k } }
            XCTAssertEqual(mx.pointer[c], best); XCTAssertEqual(arg[c], bi)
        }
        let big = randomArray(300_001, seed: 9)
        let exact = big.reduce(0.0) { $0 + Double($1) }
        XCTAssertEqual(Double(big.withUnsafeBufferPointer { Reduce.total($0.baseAddress!, count: big.count) }), exact, accuracy: 1e-2)
    }

    func testPermuteSliceConcatPad() {
        let x = (0..<24).map(Float.init)
        let out = FloatBuffer(count: 24)
        x.withUnsafeBufferPointer { Layout.permute($0.baseAddress!, shape: [2, 3, 4], perm: [2, 0, 1], out: out.pointer) }
        // out[k, i, j] = x[i, j, k]
        for k in 0..<4 { for i in 0..<2 { for j in 0..<3 { XCTAssertEqual(out.pointer[(k * 2 + i) * 3 + j], x[(i * 3 + j) * 4 + k]) } } }
        let padded = FloatBuffer(count: 4 * 5 * 4)
        x.withUnsafeBufferPointer { Layout.pad($0.baseAddress!, shape: [2, 3, 4], before: [1, 0, 0], after: [1, 2, 0], value: -1, out: padded.pointer) }
        XCTAssertEqual(padded.pointer[0], -1)
        XCTAssertEqual(padded.pointer[(1 * 5 + 0) * 4 + 0], 0)
        XCTAssertEqual(padded.pointer[(2 * 5 + 2) * 4 + 3], 23)
        XCTAssertEqual(padded.pointer[(2 * 5 + 3) * 4 + 3], -1)
    }

    func testPoolingAgainstHandValues() throws {
        // 1x1x4x4 ramp; 2x2 max pool stride 2 takes the bottom-right of each block.
        let x = (0..<16).map(Float.init)
        let g = try PoolGeometry(input: [1, 1, 4, 4], kernel: (2, 2), stride: (2, 2), op: "max_pool2d")
        let y = FloatBuffer(count: 4), arg = UnsafeMutablePointer<Int32>.allocate(capacity: 4)
        defer { arg.deallocate() }
        x.withUnsafeBufferPointer { Pool.maxForward(g, x: $0.baseAddress!, y: y.pointer, arg: arg) }
        XCTAssertEqual(y.array, [5, 7, 13, 15])
        let ga = try PoolGeometry(input: [1, 1, 4, 4], kernel: (3, 3), stride: (2, 2), padding: (1, 1), op: "avg_pool2d")
        let ya = FloatBuffer(count: 4), yb = FloatBuffer(count: 4)
        x.withUnsafeBufferPointer { Pool.avgForward(ga, countIncludePad: true, x: $0.baseAddress!, y: ya.pointer) }
        x.withUnsafeBufferPointer { Pool.avgForward(ga, countIncludePad: false, x: $0.baseAddress!, y: yb.pointer) }
        // Top-left window covers x[0,1,4,5] inside the image: sum 10; /9 with pad, /4 without (PyTorch values).
        XCTAssertEqual(ya.pointer[0], 10.0 / 9.0, accuracy: 1e-6)
        XCTAssertEqual(yb.pointer[0], 2.5, accuracy: 1e-6)
    }
}

final class RNGTests: XCTestCase {
    func testSameSeedSameNumbersOnAnyThreadCount() {
        let n = 100_003
        var results: [[Float]] = []
        for t in [1, 2] {
            Parallel.setThreads(t)
            var rng = RNG(seed: 42)
            let b = FloatBuffer(count: n)
            rng.fillNormal(b.pointer, count: n)
            results.append(b.array)
        }
        Parallel.setThreads(Parallel.threadsFromEnvironment())
        XCTAssertEqual(results[0], results[1])
        var other = RNG(seed: 43)
        let b = FloatBuffer(count: n)
        other.fillNormal(b.pointer, count: n)
        XCTAssertNotEqual(b.array, results[0])
    }

    func testDistributionsLookRight() {
        var rng = RNG(seed: 1)
        let n = 200_000
        let b = FloatBuffer(count: n)
        rng.fillNormal(b.pointer, count: n, mean: 1, std: 2)
        let v = b.array.map(Double.init)
        let mean = v.reduce(0, +) / Double(n)
        let std = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)).squareRoot()
        XCTAssertEqual(mean, 1, accuracy: 0.03); XCTAssertEqual(std, 2, accuracy: 0.03)
        rng.fillUniform(b.pointer, count: n)
        XCTAssertTrue(b.array.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertEqual(b.array.reduce(0, +) / Float(n), 0.5, accuracy: 0.01)
        rng.fillBernoulli(b.pointer, count: n, p: 0.3)
        XCTAssertEqual(b.array.reduce(0, +) / Float(n), 0.3, accuracy: 0.01)
        let p = rng.permutation(1000)
        XCTAssertEqual(p.sorted(), Array(0..<1000)); XCTAssertNotEqual(p, Array(0..<1000))
    }

    func testCounterStateResumesTheStream() {
        var a = RNG(seed: 5)
        _ = a.nextUInt64()
        let saved = RNG(key: a.key, counter: a.counter)
        var b = saved
        XCTAssertEqual(a.nextUInt64(), b.nextUInt64())
        var c = RNG(seed: 5)
        let child1 = c.split(), child2 = c.split()
        XCTAssertNotEqual(child1, child2)
    }
}

final class GEMMTests: XCTestCase {
    func testSgemmTransposes() {
        // A = [[1,2],[3,4]] (2x2), B = [[5,6,7],[8,9,10]] (2x3)
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8, 9, 10]
        var c = [Float](repeating: 0, count: 6)
        sgemm(m: 2, n: 3, k: 2, a: a, lda: 2, b: b, ldb: 3, c: &c, ldc: 3)
        XCTAssertEqual(c, [21, 24, 27, 47, 54, 61])
        var ct = [Float](repeating: 0, count: 6)
        sgemm(transA: true, m: 2, n: 3, k: 2, a: a, lda: 2, b: b, ldb: 3, c: &ct, ldc: 3)  // A^T B
        XCTAssertEqual(ct, [29, 33, 37, 42, 48, 54])
    }
}

/// Our thread split of a GEMM (column or row slabs over threads, OpenBLAS single-threaded inside) and
/// the convolutions parallel over images: same results as one thread, and equal to a naive reference.
final class ParallelSplitTests: XCTestCase {
    override func tearDown() { Parallel.setThreads(Parallel.threadsFromEnvironment()) }

    func naiveGemm(_ tA: Bool, _ tB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float], _ beta: Float, _ c0: [Float]) -> [Float] {
        var c = c0
        for i in 0..<m { for j in 0..<n {
            var s: Double = 0
            for p in 0..<k { s += Double(tA ? a[p * m + i] : a[i * k + p]) * Double(tB ? b[j * k + p] : b[p * n + j]) }
            c[i * n + j] = Float(s) + beta * c0[i * n + j]
        }}
        return c
    }

    /// Wide N splits by columns, narrow N with tall M by rows, small products stay one call; every
    /// transpose combination, beta 0 and 1. Each element stays one OpenBLAS reduction over K, but which
    /// micro-kernel variant computes a column depends on the call's N: bit-identical to the one-thread
    /// call with OpenBLAS's SkylakeX kernels, within rounding with its Zen/Haswell kernels (measured:
    /// 2,628 of 64,000 elements differ, by at most 2e-5, on an AMD EPYC family 25). What must hold on
    /// every CPU: the same thread count gives the same bits, and both agree with a Double reference.
    func testSgemmSplitMatchesOneThreadAndRepeatsBitForBit() {
        let shapes = [(64, 1000, 300), (200, 20, 300), (40, 40, 40), (33, 517, 129)]
        for (m, n, k) in shapes {
            for tA in [false, true] { for tB in [false, true] { for beta: Float in [0, 1] {
                let a = randomArray(m * k, seed: 11), b = randomArray(k * n, seed: 12), c0 = randomArray(m * n, seed: 13)
                var outs: [[Float]] = []
                for t in [1, 2, 2] {
                    Parallel.setThreads(t)
                    var c = c0
                    sgemm(transA: tA, transB: tB, m: m, n: n, k: k, a: a, lda: tA ? m : k, b: b, ldb: tB ? k : n, beta: beta, c: &c, ldc: n)
                    outs.append(c)
                }
                let what = "m \(m) n \(n) k \(k) tA \(tA) tB \(tB) beta \(beta)"
                XCTAssertEqual(outs[1], outs[2], "same thread count, same bits: " + what)
                let worst = zip(outs[0], outs[1]).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? 0
                XCTAssertLessThan(worst, 1e-5, "2-thread split vs one call: " + what)
                let ref = naiveGemm(tA, tB, m, n, k, a, b, beta, c0)
                for i in stride(from: 0, to: ref.count, by: 7) { XCTAssertEqual(outs[1][i], ref[i], accuracy: 1e-3) }
            }}}
        }
    }

    /// Batch 5 on 2 threads: uneven image chunks, the weight gradient summed over chunks.
    func testConvParallelOverImagesMatchesOneThread() throws {
        for (input, weight, groups) in [([5, 4, 9, 7], [6, 2, 3, 3], 2), ([5, 6, 8, 8], [4, 6, 1, 1], 1)] {
            let g = try ConvGeometry(input: input, weight: weight, padding: weight[2] == 3 ? (1, 1) : (0, 0), groups: groups)
            let x = randomArray(input.reduce(1, *), seed: 21), w = randomArray(weight.reduce(1, *), seed: 22)
            let dy = randomArray(g.outputShape.reduce(1, *), seed: 23)
            var ys: [[Float]] = [], dxs: [[Float]] = [], dws: [[Float]] = []
            for t in [1, 2] {
                Parallel.setThreads(t)
                let y = FloatBuffer(count: dy.count), dx = FloatBuffer(count: x.count), dw = FloatBuffer(count: w.count)
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in dy.withUnsafeBufferPointer { dp in
                    Conv2D.forward(g, x: xp.baseAddress!, weight: wp.baseAddress!, bias: nil, y: y.pointer)
                    Conv2D.backward(g, x: xp.baseAddress!, weight: wp.baseAddress!, dy: dp.baseAddress!, dx: dx.pointer, dw: dw.pointer, db: nil)
                }}}
                ys.append(y.array); dxs.append(dx.array); dws.append(dw.array)
            }
            XCTAssertEqual(ys[0], ys[1], "forward \(g)")
            XCTAssertEqual(dxs[0], dxs[1], "dx \(g)")
            for i in 0..<w.count { XCTAssertEqual(dws[0][i], dws[1][i], accuracy: 1e-4, "dw \(g) index \(i)") }
            let ref = naiveConv(g, x, w, nil)
            for i in 0..<ref.count { XCTAssertEqual(ys[1][i], ref[i], accuracy: 1e-4) }
        }
    }

    func testNestedParallelLoopsRunInline() {
        Parallel.setThreads(2)
        var inner = [Bool](repeating: false, count: 4)
        inner.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            parallelFor(4) { i in
                XCTAssertTrue(ParallelRegion.isActive)
                var ran = 0
                parallelFor(3) { _ in ran += 1 }   // inline: no data race on `ran`
                p[i] = ran == 3
            }
        }
        XCTAssertEqual(inner, [true, true, true, true])
        XCTAssertFalse(ParallelRegion.isActive)
    }
}
