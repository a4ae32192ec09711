/// pycocotools' `computeIoU` + `evaluateImg` for one (image, category): the detections of the image
/// in descending score order, cut to the last maxDets, each greedily taking the best still-free ground
/// truth at every IoU threshold and every area range. The outcome per (area, threshold, detection) is
/// one `Outcome` byte; the accumulation reads nothing else.
enum Outcome {
    static let falsePositive: UInt8 = 0
    static let truePositive: UInt8 = 1
    /// Matched to a crowd or out-of-range ground truth, or unmatched with its own area out of range:
    /// neither TP nor FP (pycocotools' `dtIgnore`).
    static let ignored: UInt8 = 2
}

/// Scratch buffers reused across images so the per-image loop allocates nothing once warm.
struct COCOImageMatcher {
    let iouThresholds: [Double]
    let areaRanges: [COCOAreaRange]
    let maxDet: Int

    private var dets: [Int] = []
    private var iou: [Double] = []
    private var gtOrder: [Int] = []
    private var gtIgnored: [Bool] = []
    private var gtCrowd: [Bool] = []
    private var taken: [Bool] = []

    init(iouThresholds: [Double], areaRanges: [COCOAreaRange], maxDet: Int) {
        self.iouThresholds = iouThresholds; self.areaRanges = areaRanges; self.maxDet = maxDet
    }

    /// Matches `detIndices` against `gtIndices` (both in pycocotools' list order). Appends the kept
    /// detections' scores to `scores` and their outcomes, laid out `[area][threshold][detection]`, to
    /// `outcomes`; returns the kept count and the non-ignored ground truths per area range.
    mutating func match(gtIndices: ArraySlice<Int>, detIndices: ArraySlice<Int>,
                        groundTruth: [GroundTruth], detections: [DetectionResult],
                        scores: inout [Double], outcomes: inout [UInt8], positives: inout [Int]) -> Int {
        let G = gtIndices.count

        // Highest score first; equal scores keep list order (pycocotools' mergesort), then the cut.
        dets.removeAll(keepingCapacity: true)
        dets.append(contentsOf: 0..<detIndices.count)
        let base = detIndices.startIndex
        dets.sort { a, b in
            let sa = detections[detIndices[base + a]].score, sb = detections[detIndices[base + b]].score
            return sa > sb || (sa == sb && a < b)
        }
        let D = Swift.min(dets.count, maxDet)
        for j in 0..<D { dets[j] = detIndices[base + dets[j]] }

        iou.removeAll(keepingCapacity: true)
        for j in 0..<D {
            let d = detections[dets[j]].box
            for g in gtIndices { iou.append(BoxIoU.coco(d, groundTruth[g].box, crowd: groundTruth[g].isCrowd)) }
        }
        for j in 0..<D { scores.append(detections[dets[j]].score) }

        for range in areaRanges {
            // Ground truths in list order with the ignored ones last (a stable sort on the ignore flag).
            gtOrder.removeAll(keepingCapacity: true)
            gtIgnored.removeAll(keepingCapacity: true)
            gtCrowd.removeAll(keepingCapacity: true)
            for pass in 0..<2 {
                for (n, g) in gtIndices.enumerated() {
                    let ignored = groundTruth[g].isCrowd || range.excludes(groundTruth[g].area)
                    if ignored == (pass == 1) { gtOrder.append(n); gtIgnored.append(ignored); gtCrowd.append(groundTruth[g].isCrowd) }
                }
            }
            positives.append(gtIgnored.lazy.filter { !$0 }.count)

            for t in iouThresholds {
                taken.removeAll(keepingCapacity: true)
                taken.append(contentsOf: repeatElement(false, count: G))
                for j in 0..<D {
                    var best = Swift.min(t, 1 - 1e-10)
                    var m = -1
                    for s in 0..<G {
                        let n = gtOrder[s]
                        // A crowd region can absorb any number of detections.
                        if taken[s] && !gtCrowd[s] { continue }
                        // Once matched to a regular box, never move on to an ignored one.
                        if m > -1 && !gtIgnored[m] && gtIgnored[s] { break }
                        let v = iou[j * G + n]
                        // `<`, not `<=`: of equal IoUs the later ground truth wins, as in pycocotools.
                        if v < best { continue }
                        best = v; m = s
                    }
                    let outcome: UInt8
                    if m == -1 {
                        outcome = range.excludes(detections[dets[j]].box.area) ? Outcome.ignored : Outcome.falsePositive
                    } else {
                        taken[m] = true
                        outcome = gtIgnored[m] ? Outcome.ignored : Outcome.truePositive
                    }
                    outcomes.append(outcome)
                }
            }
        }
        return D
    }
}
