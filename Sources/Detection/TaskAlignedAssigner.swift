import Foundation
import Kernels

/// Task-aligned assignment (Feng et al., "TOOD: Task-aligned One-stage Object Detection", ICCV 2021),
/// reproducing mmdetection's `TaskAlignedAssigner.assign` (mmdet/models/task_modules/assigners/
/// task_aligned_assigner.py) and the target normalisation of `TOODHead._get_targets_single`, with the
/// score of the decoupled detector's class-agnostic foreground head in place of the class score: the
/// rule reads the model's predictions and never a type label. Tested on mmdetection's formulas by
/// `scripts/golden/task_aligned.py`.
///
/// Inputs per image: each anchor's foreground probability s (sigmoid of the objectness logit) and its
/// decoded predicted box. Per ground truth g:
/// 1. alignment metric of every anchor t = s^alpha * u^beta, u = IoU(predicted box, g);
/// 2. candidates: the `min(topk, anchors)` anchors of largest t (all levels together; equal metrics:
///    lower anchor index first — torch.topk leaves that order undefined, the golden cases avoid ties at
///    the k boundary);
/// 3. a candidate is positive for g if t > 0 and its anchor's centre lies inside g by more than 0.01 px
///    on all four sides (as ATSS).
/// An anchor positive for several ground truths goes to the one its predicted box overlaps most (the
/// first on equal IoUs). The quality of a positive is TOOD's normalised metric
/// t_hat = t / (max t of g's positives + 1e-7) * (max u of g's positives), the soft target of the
/// foreground loss (QFL / VFL): a box is rewarded for being both confident and well localised, and the
/// best-aligned anchor of each object gets the target its IoU earns.
///
/// Early in training the predictions say little, so the detector uses ATSS for its first
/// `warmup_steps` (TOOD: the first 4 of 12 epochs). Ignore regions follow `Matcher.applyIgnoreRegions`
/// as for ATSS. IoU: the `boxIoU` formula (`IoUMeasure`); a degenerate predicted box (zero area) that
/// meets no ground truth has IoU 0.
public struct TaskAlignedAssigner: Equatable, Sendable {
    /// Candidates per ground truth over all levels (TOOD and mmdetection: 13).
    public let topk: Int
    /// Exponents of the score and the IoU in the alignment metric (TOOD: 1 and 6).
    public let alpha: Float, beta: Float
    private let ignoreRule: Matcher

    /// Throws `DetectionConfigError` for `topk < 1` (key `topk`), a negative or non-finite exponent
    /// (keys `alpha`, `beta`) or an `ignoreIoF` outside (0, 1] (key `ignore_iof`).
    public init(topk: Int = 13, alpha: Float = 1, beta: Float = 6, ignoreIoF: Float = 0.5) throws {
        guard topk >= 1 else {
            throw DetectionConfigError(key: "topk", "\(topk) must be at least 1: the number of anchors of largest alignment metric that become candidates for each box (TOOD uses 13)")
        }
        for (key, v) in [("alpha", alpha), ("beta", beta)] where !(v.isFinite && v >= 0) {
            throw DetectionConfigError(key: key, "\(v) must be a finite number >= 0: the exponent of the \(key == "alpha" ? "foreground score" : "IoU") in the alignment metric (TOOD: alpha 1, beta 6)")
        }
        self.topk = topk; self.alpha = alpha; self.beta = beta
        ignoreRule = try Matcher(ignoreIoF: ignoreIoF)
    }

    public var ignoreIoF: Float { ignoreRule.ignoreIoF }

    /// The assignment of one image: `scores` one foreground probability per anchor, `predicted` one
    /// decoded box per anchor (both without gradient); quality = TOOD's normalised alignment metric.
    public func assign(anchors: MultiLevelAnchors, target: DetectionTarget, scores: [Float], predicted: XYXYBoxes) -> AnchorAssignment {
        var result = normalised(assignRaw(anchors: anchors, gtBoxes: target.boxes, scores: scores, predicted: predicted))
        ignoreRule.applyIgnoreRegions(&result.matches, anchors: anchors.boxes, regions: target.ignoreRegions)
        return result
    }

    /// mmdetection's assignment before normalisation and ignore regions: per anchor the ground truth
    /// (or `Matcher.belowLowThreshold`), its alignment metric and the IoU of its predicted box with it.
    struct Raw: Equatable {
        var matches: [Int]
        var metrics: [Float]
        var ious: [Float]
    }

    func assignRaw(anchors: MultiLevelAnchors, gtBoxes: XYXYBoxes, scores: [Float], predicted: XYXYBoxes) -> Raw {
        let n = anchors.count, g = gtBoxes.count
        precondition(scores.count == n && predicted.count == n,
                     "TaskAlignedAssigner: \(scores.count) scores and \(predicted.count) predicted boxes for \(n) anchors")
        var raw = Raw(matches: [Int](repeating: Matcher.belowLowThreshold, count: n), metrics: [Float](repeating: 0, count: n),
                      ious: [Float](repeating: 0, count: n))
        if n == 0 || g == 0 { return raw }
        let k = min(topk, n)
        // Scratch, once per call: per ground truth its k candidates (anchor index, -1 once rejected),
        // their metrics and IoUs.
        let index = UnsafeMutablePointer<Int>.allocate(capacity: g * k)
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: 2 * g * k)
        defer { index.deallocate(); floats.deallocate() }
        let metric = floats, iou = floats + g * k
        let alpha = alpha, beta = beta
        anchors.boxes.coords.withUnsafeBufferPointer { ab in
            predicted.coords.withUnsafeBufferPointer { pb in
                gtBoxes.coords.withUnsafeBufferPointer { gb in
                    scores.withUnsafeBufferPointer { sb in
                        let a = ab.baseAddress!, p = pb.baseAddress!, gt = gb.baseAddress!, s = sb.baseAddress!
                        parallelFor(g) { q in
                            let gx1 = gt[4 * q], gy1 = gt[4 * q + 1], gx2 = gt[4 * q + 2], gy2 = gt[4 * q + 3]
                            let gArea = (gx2 - gx1) * (gy2 - gy1)
                            let idx = index + q * k, m = metric + q * k, u = iou + q * k
                            // A sorted list of the k largest metrics so far; an anchor enters only when
                            // strictly larger than the k-th, so equal metrics keep the lower index.
                            var filled = 0
                            for j in 0..<n {
                                let px1 = p[4 * j], py1 = p[4 * j + 1], px2 = p[4 * j + 2], py2 = p[4 * j + 3]
                                var overlap = IoUMeasure.value(gx1, gy1, gx2, gy2, gArea, px1, py1, px2, py2, (px2 - px1) * (py2 - py1))
                                if !(overlap >= 0) { overlap = 0 }   // NaN (0 / 0: two empty boxes): no overlap
                                let t = TaskAlignedAssigner.power(s[j], alpha) * TaskAlignedAssigner.power(overlap, beta)
                                if filled == k && !(t > m[k - 1]) { continue }
                                var pos = filled < k ? filled : k - 1
                                while pos > 0 && m[pos - 1] < t { m[pos] = m[pos - 1]; idx[pos] = idx[pos - 1]; u[pos] = u[pos - 1]; pos -= 1 }
                                m[pos] = t; idx[pos] = j; u[pos] = overlap
                                if filled < k { filled += 1 }
                            }
                            let margin = TaskAlignedAssigner.centreMargin
                            for c in 0..<k {
                                let j = idx[c]
                                let cx = (a[4 * j] + a[4 * j + 2]) / 2, cy = (a[4 * j + 1] + a[4 * j + 3]) / 2
                                let inside = cx - gx1 > margin && cy - gy1 > margin && gx2 - cx > margin && gy2 - cy > margin
                                if !(m[c] > 0 && inside) { idx[c] = -1 }
                            }
                        }
                    }
                }
            }
        }
        // Several ground truths for one anchor: the highest IoU wins; ground truths in index order and a
        // strict comparison leave equal IoUs with the first, as torch's max does.
        for q in 0..<g {
            for c in 0..<k {
                let j = index[q * k + c]
                guard j >= 0 else { continue }
                let v = iou[q * k + c]
                if raw.matches[j] < 0 || v > raw.ious[j] { raw.matches[j] = q; raw.ious[j] = v; raw.metrics[j] = metric[q * k + c] }
            }
        }
        return raw
    }

    /// TOOD's target: each positive's metric over the largest metric of its ground truth's positives
    /// (+ 1e-7), times the largest IoU among them.
    func normalised(_ raw: Raw) -> AnchorAssignment {
        var maxMetric: [Int: Float] = [:], maxIoU: [Int: Float] = [:]
        for (j, q) in raw.matches.enumerated() where q >= 0 {
            maxMetric[q] = max(maxMetric[q] ?? 0, raw.metrics[j])
            maxIoU[q] = max(maxIoU[q] ?? 0, raw.ious[j])
        }
        var quality = [Float](repeating: 0, count: raw.matches.count)
        for (j, q) in raw.matches.enumerated() where q >= 0 {
            quality[j] = raw.metrics[j] / (maxMetric[q]! + 1e-7) * maxIoU[q]!
        }
        return AnchorAssignment(matches: raw.matches, quality: quality)
    }

    static let centreMargin: Float = 0.01

    /// x^e as torch's `pow(tensor, scalar)` special-cases exponents: 0 is 1, 0.5 the square root, 1 is
    /// x, 2 is x * x, 3 is x * x * x; others `powf`.
    @inline(__always)
    static func power(_ x: Float, _ e: Float) -> Float {
        switch e {
        case 1: return x
        case 2: return x * x
        case 3: return x * x * x
        case 0: return 1
        case 0.5: return x.squareRoot()
        default: return powf(x, e)
        }
    }
}
