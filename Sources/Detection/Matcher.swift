import Kernels

/// torchvision's `Matcher` (models/detection/_utils.py) as RetinaNet uses it: each anchor takes the
/// ground-truth box it overlaps most; that match stands when the overlap is >= `highThreshold`, the
/// anchor is a negative below `lowThreshold` and ignored in between. With `allowLowQualityMatches`,
/// every anchor that is the best anchor of some ground truth (ties included) gets its own best match back
/// even below the thresholds, so no ground truth goes without anchors.
///
/// Shape contract: the quality matrix is `[gtCount x anchorCount]` row-major (ground truth by rows,
/// as `boxIoU(gt, anchors)` returns it); the result has one entry per anchor: a ground-truth index in
/// `0..<gtCount`, `Matcher.belowLowThreshold` or `Matcher.betweenThresholds`.
///
/// Trap (torchvision's too): a ground truth whose best overlap is 0 (a zero-area box, or one outside
/// every anchor) "ties" with every anchor it does not touch, so with low-quality matches all of those
/// anchors become foreground for their own best ground truth. Drop empty boxes before matching
/// (`XYXYBoxes.indicesWithMinSize`).
///
/// Thresholds are Float32 and compared in Float32, as PyTorch compares a float tensor with a Python
/// float. Ties in an anchor's best overlap go to the first (lowest-index) ground truth, like
/// `Tensor.max(dim=0)` on CPU.
public struct Matcher: Sendable, Equatable {
    /// Overlap below `lowThreshold`: a negative (background) anchor.
    public static let belowLowThreshold = -1
    /// Overlap in `[lowThreshold, highThreshold)`, or inside an ignore region: the anchor is left out
    /// of the classification loss.
    public static let betweenThresholds = -2

    public let highThreshold: Float
    public let lowThreshold: Float
    public let allowLowQualityMatches: Bool
    /// An anchor that is not foreground and lies at least this much inside an ignore region (IoF, the
    /// share of the anchor's area, see `boxIoF`) is ignored rather than negative.
    public let ignoreIoF: Float

    /// RetinaNet's defaults: 0.5 / 0.4 with low-quality matches (torchvision, mmdetection, detectron2).
    public init(highThreshold: Float = 0.5, lowThreshold: Float = 0.4, allowLowQualityMatches: Bool = true,
                ignoreIoF: Float = 0.5) throws {
        guard lowThreshold <= highThreshold else {
            throw DetectionConfigError(key: "low_threshold", "\(lowThreshold) is above high_threshold \(highThreshold); negatives must lie below positives")
        }
        guard ignoreIoF > 0 && ignoreIoF <= 1 else {
            throw DetectionConfigError(key: "ignore_iof", "\(ignoreIoF) must be in (0, 1]: the share of an anchor inside an ignore region")
        }
        self.highThreshold = highThreshold
        self.lowThreshold = lowThreshold
        self.allowLowQualityMatches = allowLowQualityMatches
        self.ignoreIoF = ignoreIoF
    }

    /// Matches anchors to `gtBoxes` by IoU, then applies `ignoreRegions` (crowd or difficult boxes).
    /// No ground truth: every anchor is negative (torchvision's RetinaNet fills -1), except those the
    /// ignore regions claim.
    public func match(anchors: XYXYBoxes, gtBoxes: XYXYBoxes, ignoreRegions: XYXYBoxes = XYXYBoxes()) -> [Int] {
        var matches: [Int]
        if gtBoxes.isEmpty {
            matches = [Int](repeating: Matcher.belowLowThreshold, count: anchors.count)
        } else {
            matches = match(quality: boxIoU(gtBoxes, anchors), gtCount: gtBoxes.count, anchorCount: anchors.count)
        }
        applyIgnoreRegions(&matches, anchors: anchors, regions: ignoreRegions)
        return matches
    }

    /// torchvision's `Matcher.__call__` on a `[gtCount x anchorCount]` quality matrix (see the type's
    /// shape contract). `gtCount == 0` gives all negatives (torchvision raises; RetinaNet fills -1).
    public func match(quality: [Float], gtCount: Int, anchorCount: Int) -> [Int] {
        precondition(quality.count == gtCount * anchorCount,
                     "Matcher: quality matrix has \(quality.count) values, not \(gtCount) x \(anchorCount)")
        let n = anchorCount
        if n == 0 { return [] }
        if gtCount == 0 { return [Int](repeating: Matcher.belowLowThreshold, count: n) }
        var matches = [Int](repeating: 0, count: n)
        let low = lowThreshold, high = highThreshold
        let lowQuality = allowLowQualityMatches
        quality.withUnsafeBufferPointer { qb in
            matches.withUnsafeMutableBufferPointer { mb in
                let q = qb.baseAddress!, m = mb.baseAddress!
                // For each ground truth, its best overlap with any anchor (NaN propagates, as in torch.max).
                var highest = [Float](repeating: 0, count: gtCount)
                if lowQuality {
                    highest.withUnsafeMutableBufferPointer { hb in
                        let h = hb.baseAddress!
                        parallelFor(gtCount) { g in h[g] = rowMax(q + g * n, n) }
                    }
                }
                highest.withUnsafeBufferPointer { hb in
                    let h = hb.baseAddress!
                    parallelChunks(n, grain: max(256, 32_768 / gtCount)) { r in
                        let lo = r.lowerBound, len = r.count
                        // Column max over ground truths, first index on ties; the update rule is torch's
                        // (a NaN wins and stays). Int32 indices keep the select as wide as the floats.
                        var best = [Float](repeating: 0, count: len), arg = [Int32](repeating: 0, count: len)
                        best.withUnsafeMutableBufferPointer { bb in
                            arg.withUnsafeMutableBufferPointer { ab in
                                let b = bb.baseAddress!, a = ab.baseAddress!
                                for j in 0..<len { b[j] = q[lo + j] }
                                for g in 1..<gtCount {
                                    let row = q + g * n + lo, g32 = Int32(g)
                                    for j in 0..<len {
                                        let v = row[j], cur = b[j]
                                        let take = !(v <= cur) && cur == cur
                                        b[j] = take ? v : cur
                                        a[j] = take ? g32 : a[j]
                                    }
                                }
                                for j in 0..<len {
                                    let v = b[j]
                                    m[lo + j] = v < low ? Matcher.belowLowThreshold : (v < high ? Matcher.betweenThresholds : Int(a[j]))
                                }
                                // set_low_quality_matches_: anchors tied for some ground truth's best
                                // overlap get their own best match back (not necessarily that ground truth).
                                if lowQuality {
                                    for g in 0..<gtCount {
                                        let row = q + g * n + lo, hg = h[g]
                                        for j in 0..<len where row[j] == hg { m[lo + j] = Int(a[j]) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return matches
    }

    /// Turns anchors that are not foreground (negative or between thresholds) and whose IoF with some
    /// region is >= `ignoreIoF` into `betweenThresholds`: crowd and difficult boxes are neither taught
    /// as objects nor as background. This is mmdetection's `ignore_iof_thr` (MaxIoUAssigner) with two
    /// deliberate differences: foreground matches are kept (mmdetection blanks the IoU of such anchors
    /// before matching, so an anchor in a crowd region can never be foreground), and the comparison is
    /// `>=` (mmdetection: `>`), so an anchor exactly half inside a region counts as inside.
    public func applyIgnoreRegions(_ matches: inout [Int], anchors: XYXYBoxes, regions: XYXYBoxes) {
        precondition(matches.count == anchors.count, "Matcher: \(matches.count) matches for \(anchors.count) anchors")
        if regions.isEmpty || anchors.isEmpty { return }
        let iof = boxIoF(anchors, regions)
        let k = regions.count, t = ignoreIoF
        iof.withUnsafeBufferPointer { fb in
            matches.withUnsafeMutableBufferPointer { mb in
                let f = fb.baseAddress!, m = mb.baseAddress!
                parallelChunks(anchors.count, grain: 4096) { r in
                    for i in r where m[i] < 0 {
                        let row = f + i * k
                        var inside = false
                        for j in 0..<k where row[j] >= t { inside = true }
                        if inside { m[i] = Matcher.betweenThresholds }
                    }
                }
            }
        }
    }

    /// torch.max over a row: NaN if any value is NaN. Eight lanes at a time (a plain `max` reduction
    /// with NaN rules has a loop-carried dependency LLVM will not vectorize).
    private func rowMax(_ row: UnsafePointer<Float>, _ n: Int) -> Float {
        var lanes = SIMD8<Float>(repeating: row[0])
        var nan = SIMD8<Int32>(repeating: 0)
        let raw = UnsafeRawPointer(row)
        var j = 0
        while j + 8 <= n {
            let v = raw.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
            lanes = lanes.replacing(with: v, where: v .> lanes)
            nan |= SIMD8<Int32>(repeating: 1).replacing(with: 0, where: v .== v)
            j += 8
        }
        var best = lanes.max()
        var sawNaN = nan.max() != 0
        while j < n { let v = row[j]; if v > best { best = v }; if v != v { sawNaN = true }; j += 1 }
        return sawNaN ? .nan : best
    }
}
