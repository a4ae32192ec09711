/// COCO bbox evaluation equal to pycocotools' `COCOeval(gt, dt, 'bbox')` with default parameters:
/// `evaluate()` (per image and category: `COCOImageMatcher`), `accumulate()` (below) and
/// `summarize()` (`COCOEvalResult.stats`).
///
/// One deliberate difference: pycocotools stores a match as the ground truth's annotation id and reads
/// 0 as "unmatched", so a detection matched to an annotation with id 0 counts as a false positive
/// there. Matches here are by position, so annotation ids play no part (COCO ids start at 1, where
/// the two agree).
public enum COCOEval {
    /// Evaluates `detections` against `groundTruth` over `imageIds` and `categoryIds` (duplicates are
    /// dropped, both are sorted as pycocotools' `np.unique` does; images without any object still count,
    /// for their detections are false positives). Every input must name an image and a category from
    /// these lists and hold finite numbers, else `EvaluationError` names the entry.
    ///
    /// `classAgnostic` is pycocotools' `useCats = 0`: all categories count as one, so a detection of
    /// the wrong type still finds its object ("does it find aircraft at all"); the result has one
    /// class, id `COCOEvalResult.allCategories`.
    public static func evaluate(imageIds: [Int], categoryIds: [Int], groundTruth: [GroundTruth],
                                detections: [DetectionResult], classAgnostic: Bool = false) throws -> COCOEvalResult {
        let inputs = try IndexedInputs(imageIds: imageIds, categoryIds: categoryIds, groundTruth: groundTruth, detections: detections)
        let I = inputs.imageIds.count, C = inputs.categoryIds.count
        let K = classAgnostic ? 1 : C
        // Class-agnostic pycocotools concatenates an image's objects category by category (sorted ids),
        // which decides tie order, so there the key is image-major; per class it is category-major.
        // Either way the objects of bucket b = k * I + i are one contiguous run of keys.
        let span = classAgnostic ? C : 1
        func key(_ i: Int, _ k: Int) -> Int { classAgnostic ? i * C + k : k * I + i }
        let gt = groupByKey(zip(inputs.gtImage, inputs.gtCategory).map(key), keyCount: I * C)
        let dt = groupByKey(zip(inputs.dtImage, inputs.dtCategory).map(key), keyCount: I * C)

        let params = COCOParams.self
        let A = params.areaRanges.count
        var matcher = COCOImageMatcher(iouThresholds: params.iouThresholds, areaRanges: params.areaRanges, maxDet: params.maxDets.last!)
        var images = MatchedImages(buckets: K * I, areas: A)
        for b in 0..<(K * I) {
            let gts = gt.order[gt.starts[b * span]..<gt.starts[(b + 1) * span]]
            let dts = dt.order[dt.starts[b * span]..<dt.starts[(b + 1) * span]]
            let kept = matcher.match(gtIndices: gts, detIndices: dts, groundTruth: groundTruth, detections: detections,
                                     scores: &images.scores, outcomes: &images.outcomes, positives: &images.positives)
            images.detStart.append(images.detStart[b] + kept)
        }
        return accumulate(images, imageIds: inputs.imageIds,
                          categoryIds: classAgnostic ? [COCOEvalResult.allCategories] : inputs.categoryIds)
    }

    /// pycocotools' `accumulate()`: per (category, area, maxDets), the first maxDets detections of
    /// every image pooled and stably sorted by score; per IoU threshold, cumulative TP/FP, precision
    /// `tp / (fp + tp + eps)` made monotone from the right and read at each recall point with
    /// `searchsorted(rc, recThrs, side='left')` (0 past the highest recall reached); -1 where the
    /// category has no positive in the range.
    ///
    /// Same numbers, fewer divisions (a 600k-detection evaluation divided 150M times): recall
    /// `tp / npig` only changes at true positives and floating division by a positive constant is
    /// monotone, so the first position reaching recall point r is the c_r-th true positive, c_r the
    /// fewest true positives with `c / npig >= r`. Precision never rises at a false positive (larger
    /// denominator) or an ignored detection (same value), so the running maximum from the right at a
    /// true positive only needs the precisions at true positives, and at position 0 its own value too.
    static func accumulate(_ images: MatchedImages, imageIds: [Int], categoryIds: [Int]) -> COCOEvalResult {
        let p = COCOParams.self
        let T = p.iouThresholds.count, R = p.recallThresholds.count, K = categoryIds.count
        let A = p.areaRanges.count, M = p.maxDets.count, I = imageIds.count
        var precision = [Double](repeating: -1, count: T * R * K * A * M)
        var recall = [Double](repeating: -1, count: T * K * A * M)
        var scores = [Double](repeating: -1, count: T * R * K * A * M)
        let eps = Double.ulpOfOne  // np.spacing(1)

        // Per pooled detection: its score's position, and where its outcomes start and their stride
        // (the bucket's kept count) inside the bucket's [area][threshold][detection] block.
        var pooled: [Int] = [], outcomeBase: [Int] = [], outcomeStride: [Int] = [], order: [Int] = []
        var sortedScores: [Double] = [], sortedOutcomes: [UInt8] = []
        var tpPosition: [Int] = [], tpPrecision: [Double] = []
        var minTP = [Int](repeating: 0, count: R)
        for k in 0..<K {
            var positives = [Int](repeating: 0, count: A)
            for a in 0..<A { for i in 0..<I { positives[a] += images.positives[(k * I + i) * A + a] } }
            for (m, maxDet) in p.maxDets.enumerated() {
                pooled.removeAll(keepingCapacity: true)
                outcomeBase.removeAll(keepingCapacity: true)
                outcomeStride.removeAll(keepingCapacity: true)
                for i in 0..<I {
                    let b = k * I + i, start = images.detStart[b], count = images.detStart[b + 1] - start
                    for n in start..<(start + Swift.min(maxDet, count)) {
                        pooled.append(n)
                        outcomeBase.append(start * A * T + (n - start))
                        outcomeStride.append(count)
                    }
                }
                let nd = pooled.count
                order.removeAll(keepingCapacity: true)
                order.append(contentsOf: 0..<nd)
                order.sort { x, y in
                    let sx = images.scores[pooled[x]], sy = images.scores[pooled[y]]
                    return sx > sy || (sx == sy && x < y)
                }
                // Scores and outcomes in pooled score order, outcomes laid out [area][threshold][rank].
                sortedScores.removeAll(keepingCapacity: true)
                sortedOutcomes.removeAll(keepingCapacity: true)
                sortedOutcomes.append(contentsOf: repeatElement(0, count: A * T * nd))
                for (rank, o) in order.enumerated() {
                    sortedScores.append(images.scores[pooled[o]])
                    for at in 0..<(A * T) { sortedOutcomes[at * nd + rank] = images.outcomes[outcomeBase[o] + at * outcomeStride[o]] }
                }

                for a in 0..<A where positives[a] > 0 {
                    let npig = positives[a]
                    var c = 0
                    for r in 0..<R {
                        while c <= npig && Double(c) / Double(npig) < p.recallThresholds[r] { c += 1 }
                        minTP[r] = c
                    }
                    for t in 0..<T {
                        let row = (a * T + t) * nd
                        tpPosition.removeAll(keepingCapacity: true)
                        tpPrecision.removeAll(keepingCapacity: true)
                        var tp = 0, fp = 0
                        var firstPrecision = 0.0
                        for j in 0..<nd {
                            let outcome = sortedOutcomes[row + j]
                            if outcome == Outcome.truePositive {
                                tp += 1
                                tpPosition.append(j)
                                tpPrecision.append(Double(tp) / (Double(fp) + Double(tp) + eps))
                            } else if outcome == Outcome.falsePositive {
                                fp += 1
                            }
                            if j == 0 { firstPrecision = Double(tp) / (Double(fp) + Double(tp) + eps) }
                        }
                        recall[((t * K + k) * A + a) * M + m] = nd > 0 ? Double(tp) / Double(npig) : 0
                        if tpPrecision.count > 1 {
                            for n in stride(from: tpPrecision.count - 2, through: 0, by: -1) { tpPrecision[n] = Swift.max(tpPrecision[n], tpPrecision[n + 1]) }
                        }
                        for r in 0..<R {
                            let at = (((t * R + r) * K + k) * A + a) * M + m
                            let c = minTP[r]
                            if c == 0 && nd > 0 {
                                precision[at] = Swift.max(firstPrecision, tpPrecision.first ?? 0); scores[at] = sortedScores[0]
                            } else if c > 0 && c <= tp {
                                precision[at] = tpPrecision[c - 1]; scores[at] = sortedScores[tpPosition[c - 1]]
                            } else {
                                precision[at] = 0; scores[at] = 0
                            }
                        }
                    }
                }
            }
        }
        return COCOEvalResult(imageIds: imageIds, categoryIds: categoryIds, precision: precision, recall: recall, scores: scores)
    }
}

/// `evaluateImg` output for every (category, image) bucket b = k * I + i: the kept detections' scores
/// in descending order (bucket b at `detStart[b]..<detStart[b + 1]`), their outcomes laid out
/// `[area][threshold][detection]` inside each bucket's block, and the non-ignored ground truths per
/// (bucket, area).
struct MatchedImages {
    var detStart: [Int]
    var scores: [Double] = []
    var outcomes: [UInt8] = []
    var positives: [Int] = []

    init(buckets: Int, areas: Int) {
        detStart = [0]
        detStart.reserveCapacity(buckets + 1)
        positives.reserveCapacity(buckets * areas)
    }
}
