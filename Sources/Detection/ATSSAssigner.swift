import Kernels

/// Adaptive Training Sample Selection (Zhang et al., "Bridging the Gap Between Anchor-based and
/// Anchor-free Detection via Adaptive Training Sample Selection", CVPR 2020), reproducing mmdetection's
/// `ATSSAssigner.assign` (mmdet/models/task_modules/assigners/atss_assigner.py; plain ATSS, not DDOD's
/// cost variant). Instead of one IoU threshold for every box, each ground truth gets its own from the
/// statistics of its nearby anchors, so small boxes (whose best anchors overlap them little) still get
/// positives and large ones do not get too many. Tested on mmdetection's formulas by
/// `scripts/golden/atss.py`.
///
/// Per ground truth g:
/// 1. candidates: on every pyramid level, the `min(topk, anchors in the level)` anchors whose centres
///    are closest (L2) to g's centre; centres are `(x1 + x2) / 2`, `(y1 + y2) / 2` in Float32.
/// 2. threshold = mean + std of the candidates' IoUs with g, std the unbiased estimator (torch.std).
///    With a single candidate in all (one level, `topk` 1 or a one-anchor level) that std is 0/0 = NaN,
///    as in torch, so the threshold is NaN and g gets no positive.
/// 3. a candidate is positive for g if IoU >= threshold and its centre lies inside g by more than
///    0.01 px on all four sides (mmdetection's `min(l, t, r, b) > 0.01`, compared in Float32).
/// Then an anchor positive for several ground truths goes to the one with the highest IoU, the first
/// (lowest index) on equal IoUs (torch's `max(dim=1)`); all other anchors are negative. No ground
/// truth: all negative.
///
/// Tie order of step 1: mmdetection takes `torch.topk(largest=False)` of the distances, whose CPU
/// kernel compares values only (a heap of the first k when `64 k <= n`, else `std::nth_element`), so
/// which of several equally distant anchors it keeps is not defined. Here the order is (squared
/// distance, anchor index): equal distances keep the lower index. Squared distances (no square root)
/// order anchors as torch's rounded distances do wherever those differ, so results agree whenever
/// torch's are defined; the golden fixtures contain no tie across a level's k boundary.
///
/// Threshold arithmetic: mean and std are accumulated in Double and rounded to Float32 before the
/// Float32 sum (torch: Float32 mean, Welford std in Double); the fixtures check that every decision
/// `IoU >= threshold` is the same either way.
///
/// IoU: the `boxIoU` formula (`IoUMeasure`, torchvision's operation order), evaluated only for the
/// candidates (positives are a subset of them), each pair once. mmdetection's `bbox_overlaps` uses the
/// same areas (no +1 offset) and sums, but floors the union at 1e-6: the two differ only for pairs
/// whose union is below 1e-6 px^2 (two empty boxes: mmdetection 0, here NaN, never positive).
///
/// Ignore regions (crowd / difficult boxes) follow `Matcher.applyIgnoreRegions`, not mmdetection:
/// candidates and thresholds are computed without them, positives stay positive, and a non-positive
/// anchor whose IoF with some region is >= `ignoreIoF` becomes `Matcher.betweenThresholds`.
/// mmdetection's ATSS (when `ignore_iof_thr > 0`; its default is -1, off) instead sets the distance of
/// anchors with IoF > threshold to 1e8, so they stop being candidates, and marks them ignored. We keep
/// one rule for both assigners so that a Matcher-vs-ATSS ablation compares only the assignment, and so
/// that a crowd region next to a box does not push that box's candidates onto farther anchors (which
/// changes its threshold).
public struct ATSSAssigner: AnchorAssigner, Equatable {
    /// Candidates per pyramid level and ground truth (mmdetection and the paper: 9).
    public let topk: Int
    /// The ignore-region rule, shared with RetinaNet's matcher (only its `ignoreIoF` is used).
    private let ignoreRule: Matcher

    /// mmdetection's margin for "anchor centre inside the box", in pixels.
    static let centreMargin: Float = 0.01

    /// Throws `DetectionConfigError` for `topk < 1` (key `topk`) or an `ignoreIoF` outside (0, 1]
    /// (key `ignore_iof`).
    public init(topk: Int = 9, ignoreIoF: Float = 0.5) throws {
        guard topk >= 1 else {
            throw DetectionConfigError(key: "topk", "\(topk) must be at least 1: the number of anchors per pyramid level nearest to each box's centre that become candidates (ATSS uses 9)")
        }
        self.topk = topk
        ignoreRule = try Matcher(ignoreIoF: ignoreIoF)
    }

    /// The share of an anchor inside an ignore region from which it is ignored rather than negative.
    public var ignoreIoF: Float { ignoreRule.ignoreIoF }

    public func assign(anchors: MultiLevelAnchors, target: DetectionTarget) -> AnchorAssignment {
        assign(anchors: anchors, gtBoxes: target.boxes, ignoreRegions: target.ignoreRegions)
    }

    /// `assign(anchors:target:)` without labels, like `Matcher.match(anchors:gtBoxes:ignoreRegions:)`.
    public func assign(anchors: MultiLevelAnchors, gtBoxes: XYXYBoxes, ignoreRegions: XYXYBoxes = XYXYBoxes()) -> AnchorAssignment {
        var result = assignWithThresholds(anchors: anchors, gtBoxes: gtBoxes).assignment
        ignoreRule.applyIgnoreRegions(&result.matches, anchors: anchors.boxes, regions: ignoreRegions)
        return result
    }

    /// The assignment before ignore regions, and each ground truth's IoU threshold (mean + std).
    func assignWithThresholds(anchors: MultiLevelAnchors, gtBoxes: XYXYBoxes) -> (assignment: AnchorAssignment, thresholds: [Float]) {
        let n = anchors.count, g = gtBoxes.count
        var result = AnchorAssignment.allNegative(n)
        if n == 0 || g == 0 { return (result, []) }
        let ranges = anchors.levelRanges
        let perLevel = ranges.map { min(topk, $0.count) }
        let c = perLevel.reduce(0, +)   // candidates per ground truth, >= 1 since n > 0
        var thresholds = [Float](repeating: 0, count: g)
        // Scratch, allocated once per call: anchor centres (two columns), then per ground truth its
        // candidates' squared distances and IoUs; candidate anchor indices (-1 once rejected).
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: 2 * n + 2 * g * c)
        let indices = UnsafeMutablePointer<Int>.allocate(capacity: g * c)
        defer { floats.deallocate(); indices.deallocate() }
        let cx = floats, cy = floats + n, dist = floats + 2 * n, iou = floats + 2 * n + g * c
        anchors.boxes.coords.withUnsafeBufferPointer { ab in
            gtBoxes.coords.withUnsafeBufferPointer { gb in
                thresholds.withUnsafeMutableBufferPointer { tb in
                    let a = ab.baseAddress!, gt = gb.baseAddress!, thr = tb.baseAddress!
                    for j in 0..<n {
                        cx[j] = (a[4 * j] + a[4 * j + 2]) / 2
                        cy[j] = (a[4 * j + 1] + a[4 * j + 3]) / 2
                    }
                    parallelFor(g) { k in
                        let gx1 = gt[4 * k], gy1 = gt[4 * k + 1], gx2 = gt[4 * k + 2], gy2 = gt[4 * k + 3]
                        let gcx = (gx1 + gx2) / 2, gcy = (gy1 + gy2) / 2
                        let d = dist + k * c, idx = indices + k * c, q = iou + k * c
                        var offset = 0
                        for (l, r) in ranges.enumerated() where perLevel[l] > 0 {
                            ATSSAssigner.nearest(perLevel[l], in: r, cx: cx, cy: cy, x: gcx, y: gcy, dist: d + offset, index: idx + offset)
                            offset += perLevel[l]
                        }
                        let gArea = (gx2 - gx1) * (gy2 - gy1)
                        var sum = 0.0
                        for t in 0..<c {
                            let j = idx[t]
                            let ax1 = a[4 * j], ay1 = a[4 * j + 1], ax2 = a[4 * j + 2], ay2 = a[4 * j + 3]
                            q[t] = IoUMeasure.value(gx1, gy1, gx2, gy2, gArea, ax1, ay1, ax2, ay2, (ax2 - ax1) * (ay2 - ay1))
                            sum += Double(q[t])
                        }
                        let mean = sum / Double(c)
                        var squares = 0.0
                        for t in 0..<c { let e = Double(q[t]) - mean; squares += e * e }
                        let std = (squares / Double(c - 1)).squareRoot()   // c == 1: 0 / 0 = NaN, as torch.std
                        let threshold = Float(mean) + Float(std)
                        thr[k] = threshold
                        let margin = ATSSAssigner.centreMargin
                        for t in 0..<c {
                            let j = idx[t]
                            let inside = cx[j] - gx1 > margin && cy[j] - gy1 > margin && gx2 - cx[j] > margin && gy2 - cy[j] > margin
                            if !(q[t] >= threshold && inside) { idx[t] = -1 }
                        }
                    }
                }
            }
        }
        // An anchor positive for several ground truths keeps the highest IoU; ground truths in index
        // order and a strict comparison leave equal IoUs with the first, as torch's max does.
        result.matches.withUnsafeMutableBufferPointer { mb in
            result.quality.withUnsafeMutableBufferPointer { qb in
                for k in 0..<g {
                    for t in 0..<c {
                        let j = indices[k * c + t]
                        guard j >= 0 else { continue }
                        let v = iou[k * c + t]
                        if mb[j] < 0 || v > qb[j] { mb[j] = k; qb[j] = v }
                    }
                }
            }
        }
        return (result, thresholds)
    }

    /// The `k` anchors of `range` nearest to (x, y), ordered by (squared distance, index), written to
    /// `dist` / `index`; `1 <= k <= range.count`. A partial selection: a sorted list of the k best so far,
    /// which an anchor enters only when strictly nearer than the current k-th (so an equal distance
    /// keeps the earlier anchor); eight anchors are tested at a time and looked at one by one only when
    /// one of them would enter.
    @inline(__always)
    static func nearest(_ k: Int, in range: Range<Int>, cx: UnsafePointer<Float>, cy: UnsafePointer<Float>, x: Float, y: Float,
                        dist: UnsafeMutablePointer<Float>, index: UnsafeMutablePointer<Int>) {
        @inline(__always) func insert(_ j: Int, _ v: Float, _ filled: Int) {
            var p = filled < k ? filled : k - 1
            while p > 0 && dist[p - 1] > v { dist[p] = dist[p - 1]; index[p] = index[p - 1]; p -= 1 }
            dist[p] = v; index[p] = j
        }
        var j = range.lowerBound
        let end = range.upperBound
        for filled in 0..<k {
            let dx = cx[j] - x, dy = cy[j] - y
            insert(j, dx * dx + dy * dy, filled)
            j += 1
        }
        var worst = dist[k - 1]
        let rx = UnsafeRawPointer(cx), ry = UnsafeRawPointer(cy)
        let sx = SIMD8<Float>(repeating: x), sy = SIMD8<Float>(repeating: y)
        while j + 8 <= end {
            let dx = rx.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) - sx
            let dy = ry.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) - sy
            let d = dx * dx + dy * dy
            if any(d .< SIMD8<Float>(repeating: worst)) {
                for t in 0..<8 where d[t] < worst {
                    insert(j + t, d[t], k)
                    worst = dist[k - 1]
                }
            }
            j += 8
        }
        while j < end {
            let dx = cx[j] - x, dy = cy[j] - y
            let v = dx * dx + dy * dy
            if v < worst { insert(j, v, k); worst = dist[k - 1] }
            j += 1
        }
    }
}
