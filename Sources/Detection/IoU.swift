import Kernels

// Pairwise overlap matrices. The hot use is matching: every ground-truth box against every anchor
// (100 x 20k), once per image per step. One pair loop serves all three measures; the measure is a type
// parameter (not a closure) so its arithmetic is inlined into the vectorized inner loop.

/// Intersection over union of every box in `a` with every box in `b`: row-major `[a.count x b.count]`,
/// entry `i * b.count + j` = IoU(a[i], b[j]). torchvision's `box_iou` in Float32 with the same operation
/// order (areas `(x2-x1)*(y2-y1)`, union `(area_a + area_b) - inter`), so values agree bit for bit on
/// ordinary boxes. A pair with zero union (two empty boxes) gives NaN, as in torchvision.
public func boxIoU(_ a: XYXYBoxes, _ b: XYXYBoxes) -> [Float] { pairwise(IoUMeasure.self, a, b) }

/// Generalized IoU (Rezatofighi et al. 2019): `IoU - (C - union) / C` with C the area of the smallest
/// box enclosing both; row-major `[a.count x b.count]`, torchvision's `generalized_box_iou`. In [-1, 1].
public func generalizedBoxIoU(_ a: XYXYBoxes, _ b: XYXYBoxes) -> [Float] { pairwise(GIoUMeasure.self, a, b) }

/// Intersection over the area of the first box ("IoF"): row-major `[a.count x b.count]`, entry
/// `inter(a[i], b[j]) / area(a[i])`. Put anchors in `a` and ignore regions (crowd or difficult boxes)
/// in `b`: the share of each anchor that lies inside a region. mmdetection's `bbox_overlaps(mode='iof')`,
/// including its guard: the area is floored at 1e-6 so an empty anchor gives 0, not NaN.
public func boxIoF(_ a: XYXYBoxes, _ b: XYXYBoxes) -> [Float] { pairwise(IoFMeasure.self, a, b) }

/// `a > b ? a : b` as a plain select: LLVM turns it into `maxps` inside vectorized loops, which
/// `Swift.max` (with its NaN rules) does not always allow.
@inline(__always) func larger(_ a: Float, _ b: Float) -> Float { a > b ? a : b }
@inline(__always) func smaller(_ a: Float, _ b: Float) -> Float { a < b ? a : b }

/// One overlap measure of box a (corners and area) against box b.
protocol PairMeasure {
    static func value(_ ax1: Float, _ ay1: Float, _ ax2: Float, _ ay2: Float, _ aArea: Float,
                      _ bx1: Float, _ by1: Float, _ bx2: Float, _ by2: Float, _ bArea: Float) -> Float
}

/// Intersection area, clamped at zero per side like torchvision's `(rb - lt).clamp(min=0)`.
@inline(__always)
func intersection(_ ax1: Float, _ ay1: Float, _ ax2: Float, _ ay2: Float,
                  _ bx1: Float, _ by1: Float, _ bx2: Float, _ by2: Float) -> Float {
    let w = larger(smaller(ax2, bx2) - larger(ax1, bx1), 0)
    let h = larger(smaller(ay2, by2) - larger(ay1, by1), 0)
    return w * h
}

enum IoUMeasure: PairMeasure {
    @inline(__always)
    static func value(_ ax1: Float, _ ay1: Float, _ ax2: Float, _ ay2: Float, _ aArea: Float,
                      _ bx1: Float, _ by1: Float, _ bx2: Float, _ by2: Float, _ bArea: Float) -> Float {
        let inter = intersection(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2)
        return inter / (aArea + bArea - inter)
    }
}

enum GIoUMeasure: PairMeasure {
    @inline(__always)
    static func value(_ ax1: Float, _ ay1: Float, _ ax2: Float, _ ay2: Float, _ aArea: Float,
                      _ bx1: Float, _ by1: Float, _ bx2: Float, _ by2: Float, _ bArea: Float) -> Float {
        let inter = intersection(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2)
        let union = aArea + bArea - inter
        let cw = larger(larger(ax2, bx2) - smaller(ax1, bx1), 0)
        let ch = larger(larger(ay2, by2) - smaller(ay1, by1), 0)
        let enclosing = cw * ch
        return inter / union - (enclosing - union) / enclosing
    }
}

enum IoFMeasure: PairMeasure {
    @inline(__always)
    static func value(_ ax1: Float, _ ay1: Float, _ ax2: Float, _ ay2: Float, _ aArea: Float,
                      _ bx1: Float, _ by1: Float, _ bx2: Float, _ by2: Float, _ bArea: Float) -> Float {
        intersection(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2) / larger(aArea, 1e-6)
    }
}

/// The `[a.count x b.count]` matrix of `M`, parallel over rows of `a`; `b` is read as columns
/// (`XYXYBoxes.columns`) so the inner loop is unit-stride.
func pairwise<M: PairMeasure>(_: M.Type, _ a: XYXYBoxes, _ b: XYXYBoxes) -> [Float] {
    let n = a.count, m = b.count
    if n == 0 || m == 0 { return [] }
    let cols = b.columns()
    return [Float](unsafeUninitializedCapacity: n * m) { out, initialized in
        a.coords.withUnsafeBufferPointer { ac in
            cols.withUnsafeBufferPointer { bc in
                let ap = ac.baseAddress!, bp = bc.baseAddress!, op = out.baseAddress!
                let bx1 = bp, by1 = bp + m, bx2 = bp + 2 * m, by2 = bp + 3 * m, bArea = bp + 4 * m
                parallelChunks(n, grain: max(1, 16_384 / m)) { rows in
                    for i in rows {
                        let ax1 = ap[4 * i], ay1 = ap[4 * i + 1], ax2 = ap[4 * i + 2], ay2 = ap[4 * i + 3]
                        let aArea = (ax2 - ax1) * (ay2 - ay1)
                        let row = op + i * m
                        for j in 0..<m {
                            row[j] = M.value(ax1, ay1, ax2, ay2, aArea, bx1[j], by1[j], bx2[j], by2[j], bArea[j])
                        }
                    }
                }
            }
        }
        initialized = n * m
    }
}
