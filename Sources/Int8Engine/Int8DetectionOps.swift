import Kernels

/// Nearest-neighbour 2x upsampling (the FPN's top-down path) of codes or floats, NHWC.
final class Int8Upsample2x: Int8Op {
    let name: String
    let inputs: [Int]
    let output: Int
    var computesCodes: Bool { false }
    init(name: String, input: Int, output: Int) { self.name = name; inputs = [input]; self.output = output }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let x = values[inputs[0]]!
        let y = Int8Tensor(n: x.n, h: 2 * x.h, w: 2 * x.w, c: x.c, grid: x.grid)
        func copy<T>(_ src: [T], _ dst: inout [T]) {
            let c = x.c, w = x.w, h = x.h
            src.withUnsafeBufferPointer { s in dst.withUnsafeMutableBufferPointer { d in
                let sp = s.baseAddress!, dp = d.baseAddress!
                parallelChunks(x.n * 2 * h, grain: 1) { r in
                    for row in r {
                        let b = row / (2 * h), oy = row % (2 * h)
                        let srow = sp + ((b * h + oy / 2) * w) * c, drow = dp + ((b * 2 * h + oy) * 2 * w) * c
                        for ox in 0..<(2 * w) { (drow + ox * c).update(from: srow + (ox / 2) * c, count: c) }
                    }
                }
            }}
        }
        if x.grid != nil { copy(x.codes, &y.codes) } else { copy(x.floats, &y.floats) }
        return y
    }
}

/// Group normalisation of a float value (a RetinaNet head tower with group_norm), NHWC, the statistics
/// as `GroupNorm.forward` takes them: mean, then the mean of squared deviations, per image and group.
final class Int8GroupNorm: Int8Op {
    let name: String
    let inputs: [Int]
    let output: Int
    let groups: Int, eps: Float
    let weight: [Float], bias: [Float]
    init(name: String, input: Int, output: Int, groups: Int, eps: Float, weight: [Float], bias: [Float]) {
        self.name = name; inputs = [input]; self.output = output; self.groups = groups; self.eps = eps; self.weight = weight; self.bias = bias
    }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let x = values[inputs[0]]!
        precondition(x.grid == nil, "int8 engine: \(name) normalises float values")
        let y = Int8Tensor(n: x.n, h: x.h, w: x.w, c: x.c, grid: nil)
        let c = x.c, hw = x.h * x.w, cg = c / groups
        x.floats.withUnsafeBufferPointer { s in y.floats.withUnsafeMutableBufferPointer { d in
            let sp = s.baseAddress!, dp = d.baseAddress!
            parallelFor(x.n * groups) { bg in
                let b = bg / groups, g = bg % groups
                let count = Float(hw * cg)
                var sum: Float = 0
                for p in 0..<hw { for j in 0..<cg { sum += sp[(b * hw + p) * c + g * cg + j] } }
                let mu = sum / count
                var sq: Float = 0
                for p in 0..<hw { for j in 0..<cg { let v = sp[(b * hw + p) * c + g * cg + j] - mu; sq += v * v } }
                let inv = 1 / (sq / count + eps).squareRoot()
                for p in 0..<hw { for j in 0..<cg {
                    let i = (b * hw + p) * c + g * cg + j, ch = g * cg + j
                    dp[i] = (sp[i] - mu) * inv * weight[ch] + bias[ch]
                }}
            }
        }}
        return y
    }
}

/// A detector's dense outputs [N, rows, columns] (stored (n, 1, rows, columns)) from per-level head
/// outputs NHWC: each level's (h, w, anchors * outputs) is rows of one anchor already; levels are
/// concatenated finest first, and the branches side by side (class logits, then box deltas).
final class Int8DenseRows: Int8Op {
    let name: String
    let inputs: [Int]
    let output: Int
    /// Per branch: its level values (in `inputs` order) and outputs per anchor.
    let branches: [(levels: [Int], width: Int)]
    init(name: String, branches: [(levels: [Int], width: Int)], output: Int) {
        self.name = name; self.branches = branches; self.output = output
        inputs = branches.flatMap { $0.levels }
    }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor {
        let first = branches[0].levels.map { values[$0]! }
        let n = first[0].n
        let rows = first.reduce(0) { $0 + $1.h * $1.w * $1.c / branches[0].width }
        let total = branches.reduce(0) { $0 + $1.width }
        let y = Int8Tensor(n: n, h: 1, w: rows, c: total, grid: nil)
        var column = 0
        y.floats.withUnsafeMutableBufferPointer { yp in
            let dst = yp.baseAddress!
            for br in branches {
                var r0 = 0
                for v in br.levels {
                    let t = values[v]!
                    let vals = t.values()
                    let per = t.h * t.w * t.c / br.width, width = br.width
                    precondition(t.n == n && per * width == t.h * t.w * t.c, "int8 engine: \(name): level of \(t.c) channels for \(width) outputs per anchor")
                    vals.withUnsafeBufferPointer { vp in
                        let src = vp.baseAddress!
                        for b in 0..<n { for r in 0..<per {
                            (dst + (b * rows + r0 + r) * total + column).update(from: src + (b * per + r) * width, count: width)
                        }}
                    }
                    r0 += per
                }
                precondition(r0 == rows, "int8 engine: \(name): branches with different anchor counts")
                column += br.width
            }
        }
        return y
    }
}
