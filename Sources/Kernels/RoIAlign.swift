import Foundation

/// Where and how RoIAlign samples each RoI: torchvision's per-RoI set-up (`roi_align_kernel.cpp`), done
/// once so the forward and the backward read the same numbers. Built from flat RoIs, five values each
/// (batch index, x1, y1, x2, y2 in input pixels); coordinates map to the feature map by
/// `spatialScale`.
///
/// The arithmetic repeats the reference operation by operation in Float32 (no fused multiply-add, no
/// reordering), so samples land on the same bits and a 0.5 shift or an operand swap shows up in the
/// golden tests: `aligned` subtracts 0.5 after scaling (the pixel-centre model of Detectron2);
/// without it a RoI is at least 1x1 feature pixel ("force malformed RoIs to be 1x1"); the bin is the RoI
/// size over the output size; `samplingRatio <= 0` takes ceil(RoI size / output size) samples per bin
/// side, per RoI.
public struct RoIAlignPlan: Sendable {
    public let batch: Int, channels: Int, height: Int, width: Int
    public let pooledHeight: Int, pooledWidth: Int
    public let roiCount: Int
    /// Per RoI: image index, sampling start (feature pixels), bin size, samples per bin side.
    let image: [Int]
    let startY: [Float], startX: [Float], binH: [Float], binW: [Float]
    let gridH: [Int], gridW: [Int]
    /// Largest `pooledHeight * gridH` and `pooledWidth * gridW` over the RoIs: the per-thread table sizes.
    let maxRows: Int, maxCols: Int

    /// Samples per bin side above this mean a RoI far larger than any feature map (boxes not in input
    /// pixels, or a wrong spatial scale); the reference would cast it to `int` unchecked.
    public static let maxSamplesPerBinSide = 1 << 16

    /// Programmer errors (the detector builds RoIs; user input never reaches here unchecked) stop
    /// with a message: a batch index that is not an image of `featureShape`, non-finite coordinates,
    /// an empty feature map, an output size below 1.
    public init(rois: UnsafeBufferPointer<Float>, featureShape: [Int], outputSize: (height: Int, width: Int),
                spatialScale: Float, samplingRatio: Int, aligned: Bool) {
        precondition(featureShape.count == 4, "roi_align: features must be 4-D [N, C, H, W], got shape \(featureShape)")
        precondition(featureShape[2] >= 1 && featureShape[3] >= 1,
                     "roi_align: feature map of shape \(featureShape) has no pixels to sample")
        precondition(outputSize.height >= 1 && outputSize.width >= 1,
                     "roi_align: output size \(outputSize) must be at least 1x1")
        precondition(rois.count % 5 == 0,
                     "roi_align: \(rois.count) RoI values is not a whole number of (batch index, x1, y1, x2, y2) rows")
        precondition(spatialScale.isFinite && spatialScale > 0, "roi_align: spatial scale \(spatialScale) must be positive and finite")
        batch = featureShape[0]; channels = featureShape[1]; height = featureShape[2]; width = featureShape[3]
        pooledHeight = outputSize.height; pooledWidth = outputSize.width
        let n = rois.count / 5
        roiCount = n
        var image = [Int](repeating: 0, count: n), gridH = image, gridW = image
        var startY = [Float](repeating: 0, count: n), startX = startY, binH = startY, binW = startY
        var maxRows = 0, maxCols = 0
        let offset: Float = aligned ? 0.5 : 0
        let ph = Float(pooledHeight), pw = Float(pooledWidth)
        for r in 0..<n {
            let row = rois.baseAddress! + 5 * r
            let b = row[0]
            precondition(b.isFinite && b == b.rounded(.towardZero) && b >= 0 && b < Float(batch),
                         "roi_align: RoI \(r) has batch index \(b), not an image index in 0..<\(batch)")
            precondition(row[1].isFinite && row[2].isFinite && row[3].isFinite && row[4].isFinite,
                         "roi_align: RoI \(r) has non-finite corners (\(row[1]), \(row[2]), \(row[3]), \(row[4]))")
            let x1 = row[1] * spatialScale - offset, y1 = row[2] * spatialScale - offset
            let x2 = row[3] * spatialScale - offset, y2 = row[4] * spatialScale - offset
            var roiW = x2 - x1, roiH = y2 - y1
            if !aligned { roiW = Swift.max(roiW, 1); roiH = Swift.max(roiH, 1) }
            var gh = samplingRatio, gw = samplingRatio
            if samplingRatio <= 0 {
                let qh = (roiH / ph).rounded(.up), qw = (roiW / pw).rounded(.up)
                precondition(qh <= Float(Self.maxSamplesPerBinSide) && qw <= Float(Self.maxSamplesPerBinSide),
                             "roi_align: RoI \(r) spans \(roiW)x\(roiH) feature pixels, over \(Self.maxSamplesPerBinSide) samples per bin side; are its corners in input pixels and spatialScale the feature stride's inverse?")
                gh = Int(qh); gw = Int(qw)
            }
            // A non-positive grid (aligned, adaptive, empty or inverted RoI) samples nothing: the reference
            // then outputs zeros (where it does not fail on a negative vector size).
            if gh <= 0 || gw <= 0 { gh = 0; gw = 0 }
            image[r] = Int(b)
            startY[r] = y1; startX[r] = x1
            binH[r] = roiH / ph; binW[r] = roiW / pw
            gridH[r] = gh; gridW[r] = gw
            maxRows = Swift.max(maxRows, pooledHeight * gh)
            maxCols = Swift.max(maxCols, pooledWidth * gw)
        }
        self.image = image; self.startY = startY; self.startX = startX; self.binH = binH; self.binW = binW
        self.gridH = gridH; self.gridW = gridW; self.maxRows = maxRows; self.maxCols = maxCols
    }

    public var outputShape: [Int] { [roiCount, channels, pooledHeight, pooledWidth] }
}

/// RoIAlign (He et al., Mask R-CNN) exactly as torchvision's CPU kernel: each output bin is the mean of
/// bilinear samples on a regular grid inside it.
///
/// The reference precomputes, per RoI, the four pixel offsets and four weights of every sample
/// (`pre_calc`) and reuses them for every channel. Bilinear weights are separable, so this kernel keeps
/// the same quantities per sample row and per sample column instead (`SampleAxis`) and forms the four
/// products `hy * hx`, `hy * lx`, `ly * hx`, `ly * lx` when it uses them: the same Float32 products the
/// reference stores, from tables of `pooled * grid` entries rather than `pooled^2 * grid^2` (for a
/// 500-pixel RoI with adaptive sampling on a 7x7 output the reference's table is 200k entries,
/// 6 MB).
///
/// Samples are summed in the reference's order, so results match it bit for bit (up to the sign of
/// zero). One difference: an out-of-map sample adds nothing here, while the reference adds
/// `0 * input[0]`, which turns into NaN when the plane's first pixel is not finite.
public enum RoIAlign {
    /// One axis of one RoI's sample grid: for each (bin, sample) position along it, the two pixel
    /// rows/columns it reads and its interpolation fractions; `low < 0` marks a sample outside
    /// [-1, size] (it counts in the bin's divisor but reads nothing).
    struct SampleAxis {
        let low: UnsafeMutablePointer<Int>, high: UnsafeMutablePointer<Int>
        let frac: UnsafeMutablePointer<Float>, rest: UnsafeMutablePointer<Float>

        init(capacity: Int) {
            let c = Swift.max(1, capacity)
            low = .allocate(capacity: c); high = .allocate(capacity: c)
            frac = .allocate(capacity: c); rest = .allocate(capacity: c)
        }

        func deallocate() { low.deallocate(); high.deallocate(); frac.deallocate(); rest.deallocate() }

        /// Fills `pooled * grid` positions: sample `i` of bin `p` sits at
        /// `start + p * bin + (i + 0.5) * bin / grid` (the reference's expression and operation order).
        /// Positions are scaled by `stride` (the row length for rows, 1 for columns).
        func fill(start: Float, bin: Float, grid: Int, pooled: Int, size: Int, stride: Int) {
            let g = Float(grid)
            var k = 0
            for p in 0..<pooled {
                let base = start + Float(p) * bin
                for i in 0..<grid {
                    var v = base + (Float(i) + 0.5) * bin / g
                    defer { k += 1 }
                    if !(v >= -1 && v <= Float(size)) { low[k] = -1; high[k] = -1; frac[k] = 0; rest[k] = 0; continue }
                    if v <= 0 { v = 0 }
                    var lo = Int(v), hi: Int
                    if lo >= size - 1 { lo = size - 1; hi = lo; v = Float(lo) } else { hi = lo + 1 }
                    let l = v - Float(lo)
                    low[k] = lo * stride; high[k] = hi * stride; frac[k] = l; rest[k] = 1 - l
                }
            }
        }
    }

    /// Channels that share one pass over a RoI's samples: each sample's offsets and weights serve the
    /// whole group. The backward's group is smaller because it writes its planes, which for 32x32 maps
    /// lie 4 KB apart and so compete for the same L1 sets. Measured on the bench workload (100 RoIs,
    /// 64 channels, P3 32x32, 7x7, sampling 2, one thread): forward 2.9 / 2.4 / 2.4 ms at groups 8 /
    /// 16 / 64; backward 3.8 / 3.0 / 6.7 ms at groups 4 / 8 / 16.
    static let forwardGroup = 16
    static let backwardGroup = 8

    /// `y[r, c, :, :]` for every RoI r and channel c. Parallel over contiguous blocks of (RoI, channel)
    /// pairs. A block fills a RoI's sample tables once, then passes over the samples once per group of
    /// `forwardGroup` channels (the innermost loop runs over the group's planes, one accumulator per
    /// channel): the reuse across channels the reference's `pre_calc` is for. Each output still sums
    /// its samples in the reference's order.
    public static func forward(_ plan: RoIAlignPlan, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let c = plan.channels
        let ph = plan.pooledHeight, pw = plan.pooledWidth, ohw = ph * pw
        let pairs = plan.roiCount * c
        guard pairs > 0 && ohw > 0 else { return }
        // About 16k samples a block before splitting pays for itself (the grid is per RoI; estimate 2x2).
        let grain = Swift.max(1, 16_384 / (ohw * 4))
        parallelChunks(pairs, grain: grain) { range in
            let rows = SampleAxis(capacity: plan.maxRows), cols = SampleAxis(capacity: plan.maxCols)
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: forwardGroup)
            defer { rows.deallocate(); cols.deallocate(); acc.deallocate() }
            var r = range.lowerBound / c
            while r * c < range.upperBound {
                let c0 = Swift.max(range.lowerBound - r * c, 0), c1 = Swift.min(range.upperBound - r * c, c)
                let gh = plan.gridH[r], gw = plan.gridW[r]
                let count = Float(Swift.max(gh * gw, 1))
                if gh > 0 {
                    rows.fill(start: plan.startY[r], bin: plan.binH[r], grid: gh, pooled: ph, size: plan.height, stride: plan.width)
                    cols.fill(start: plan.startX[r], bin: plan.binW[r], grid: gw, pooled: pw, size: plan.width, stride: 1)
                }
                for g0 in stride(from: c0, to: c1, by: forwardGroup) {
                    gather(plan, r, rows, cols, x, y, g0..<Swift.min(g0 + forwardGroup, c1), acc, count: count)
                }
                r += 1
            }
        }
    }

    /// RoI `r`'s output for `channels` (tables already filled): one pass over the samples, each
    /// sample's offsets and weights applied to every channel of the group.
    @inline(__always)
    static func gather(_ plan: RoIAlignPlan, _ r: Int, _ rows: SampleAxis, _ cols: SampleAxis,
                       _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ channels: Range<Int>,
                       _ acc: UnsafeMutablePointer<Float>, count: Float) {
        let c = plan.channels, hw = plan.height * plan.width, n = channels.count
        let ph = plan.pooledHeight, pw = plan.pooledWidth, ohw = ph * pw
        let gh = plan.gridH[r], gw = plan.gridW[r]
        let planes = x + (plan.image[r] * c + channels.lowerBound) * hw
        let out = y + (r * c + channels.lowerBound) * ohw
        for py in 0..<ph {
            for px in 0..<pw {
                acc.update(repeating: 0, count: n)
                for iy in py * gh..<(py + 1) * gh {
                    let yl = rows.low[iy]
                    if yl < 0 { continue }
                    let yh = rows.high[iy], ly = rows.frac[iy], hy = rows.rest[iy]
                    for ix in px * gw..<(px + 1) * gw {
                        let xl = cols.low[ix]
                        if xl < 0 { continue }
                        let xh = cols.high[ix], lx = cols.frac[ix], hx = cols.rest[ix]
                        let w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx
                        let o1 = yl + xl, o2 = yl + xh, o3 = yh + xl, o4 = yh + xh
                        for j in 0..<n {
                            let p = planes + j * hw
                            acc[j] += w1 * p[o1] + w2 * p[o2] + w3 * p[o3] + w4 * p[o4]
                        }
                    }
                }
                let bin = py * pw + px
                for j in 0..<n { out[j * ohw + bin] = acc[j] / count }
            }
        }
    }

    /// `dx` (overwritten, [N, C, H, W]) from `dy` ([R, C, oh, ow]): the reference's bilinear scatter,
    /// `dy * w / count` to each of a sample's four pixels. Parallel over channels, so each thread owns
    /// whole planes (no atomics); a sample's offsets and weights serve a group of `backwardGroup`
    /// channels. Within a plane, contributions arrive in the reference's order (RoI, bin row,
    /// bin column, sample row, sample column, corner), so the sums are bit-identical to it for any
    /// thread count.
    public static func backward(_ plan: RoIAlignPlan, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let c = plan.channels, hw = plan.height * plan.width
        guard c > 0 else { return }
        let perChannel = plan.batch * hw + plan.roiCount * plan.pooledHeight * plan.pooledWidth * 4
        parallelChunks(c, grain: Swift.max(1, 65_536 / Swift.max(1, perChannel))) { range in
            for ch in range {
                for b in 0..<plan.batch { (dx + (b * c + ch) * hw).initialize(repeating: 0, count: hw) }
            }
            let rows = SampleAxis(capacity: plan.maxRows), cols = SampleAxis(capacity: plan.maxCols)
            let gv = UnsafeMutablePointer<Float>.allocate(capacity: backwardGroup)
            defer { rows.deallocate(); cols.deallocate(); gv.deallocate() }
            for r in 0..<plan.roiCount {
                let gh = plan.gridH[r], gw = plan.gridW[r]
                if gh == 0 { continue }
                rows.fill(start: plan.startY[r], bin: plan.binH[r], grid: gh, pooled: plan.pooledHeight, size: plan.height, stride: plan.width)
                cols.fill(start: plan.startX[r], bin: plan.binW[r], grid: gw, pooled: plan.pooledWidth, size: plan.width, stride: 1)
                // The scatter divides every contribution by the sample count (the reference's
                // `g * w / count`); for a power of two (sampling ratio 1 or 2, the usual ones) multiplying
                // by the reciprocal gives the same bits without a division.
                let n = gh * gw
                for g0 in stride(from: range.lowerBound, to: range.upperBound, by: backwardGroup) {
                    let group = g0..<Swift.min(g0 + backwardGroup, range.upperBound)
                    if n & (n - 1) == 0 {
                        scatter(plan, r, rows, cols, dy, dx, group, gv, ExactReciprocal(inverse: 1 / Float(n)))
                    } else {
                        scatter(plan, r, rows, cols, dy, dx, group, gv, Division(divisor: Float(n)))
                    }
                }
            }
        }
    }

    /// `x / count` for a bin's sample count: a division, or a multiplication where that is exact.
    protocol SampleMean { func callAsFunction(_ x: Float) -> Float }
    struct Division: SampleMean {
        let divisor: Float
        @inline(__always) func callAsFunction(_ x: Float) -> Float { x / divisor }
    }
    struct ExactReciprocal: SampleMean {
        let inverse: Float
        @inline(__always) func callAsFunction(_ x: Float) -> Float { x * inverse }
    }

    /// RoI `r`'s gradient into the planes of `channels` (tables already filled): one pass over the
    /// samples, each sample's offsets and weights applied to every channel of the group.
    @inline(__always)
    static func scatter<M: SampleMean>(_ plan: RoIAlignPlan, _ r: Int, _ rows: SampleAxis, _ cols: SampleAxis,
                                       _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                       _ channels: Range<Int>, _ gv: UnsafeMutablePointer<Float>, _ mean: M) {
        let c = plan.channels, hw = plan.height * plan.width, n = channels.count
        let ph = plan.pooledHeight, pw = plan.pooledWidth, ohw = ph * pw
        let gh = plan.gridH[r], gw = plan.gridW[r]
        let planes = dx + (plan.image[r] * c + channels.lowerBound) * hw
        let g = dy + (r * c + channels.lowerBound) * ohw
        for py in 0..<ph {
            for px in 0..<pw {
                let bin = py * pw + px
                for j in 0..<n { gv[j] = g[j * ohw + bin] }
                for iy in py * gh..<(py + 1) * gh {
                    let yl = rows.low[iy]
                    if yl < 0 { continue }
                    let yh = rows.high[iy], ly = rows.frac[iy], hy = rows.rest[iy]
                    for ix in px * gw..<(px + 1) * gw {
                        let xl = cols.low[ix]
                        if xl < 0 { continue }
                        let xh = cols.high[ix], lx = cols.frac[ix], hx = cols.rest[ix]
                        let w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx
                        let o1 = yl + xl, o2 = yl + xh, o3 = yh + xl, o4 = yh + xh
                        for j in 0..<n {
                            let p = planes + j * hw, v = gv[j]
                            p[o1] += mean(v * w1)
                            p[o2] += mean(v * w2)
                            p[o3] += mean(v * w3)
                            p[o4] += mean(v * w4)
                        }
                    }
                }
            }
        }
    }
}
