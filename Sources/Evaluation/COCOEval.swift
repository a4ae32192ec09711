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
    /// made monotone from the right and read at each recall point with `searchsorted(side='left')`
    /// (0 past the highest recall reached); -1 where the category has no positive in the range.
    static func accumulate(_ images: MatchedImages, imageIds: [Int], categoryIds: [Int]) -> COCOEvalResult {
        let p = COCOParams.self
        let T = p.iouThresholds.count, R = p.recallThresholds.count, K = categoryIds.count
        let A = p.areaRanges.count, M = p.maxDets.count, I = imageIds.count
        var precision = [Double](repeating: -1, count: T * R * K * A * M)
        var recall = [Double](repeating: -1, count: T * K * A * M)
        var scores = [Double](repeating: -1, count: T * R * K * A * M)

        // Per pooled detection: its score's position, and where its outcomes start and their stride
        // (the bucket's kept count) inside the bucket's [area][threshold][detection] block.
        var pooled: [Int] = [], outcomeBase: [Int] = [], outcomeStride: [Int] = [], order: [Int] = []
        var rc: [Double] = [], pr: [Double] = [], sortedScores: [Double] = []
        let eps = Double.ulpOfOne  // np.spacing(1)
        for k in 0..<K {
            for (m, maxDet) in p.maxDets.enumerated() {
                // Position of each pooled detection in `images.scores`, image by image.
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
                order.removeAll(keepingCapacity: true)
                order.append(contentsOf: 0..<pooled.count)
                order.sort { x, y in
                    let sx = images.scores[pooled[x]], sy = images.scores[pooled[y]]
                    return sx > sy || (sx == sy && x < y)
                }
                sortedScores.removeAll(keepingCapacity: true)
                for o in order { sortedScores.append(images.scores[pooled[o]]) }
                let nd = order.count

                for a in 0..<A {
                    var npig = 0
                    for i in 0..<I { npig += images.positives[(k * I + i) * A + a] }
                    if npig == 0 { continue }
                    for t in 0..<T {
                        rc.removeAll(keepingCapacity: true)
                        pr.removeAll(keepingCapacity: true)
                        var tp = 0.0, fp = 0.0
                        for o in order {
                            let outcome = images.outcomes[outcomeBase[o] + (a * T + t) * outcomeStride[o]]
                            if outcome == Outcome.truePositive { tp += 1 } else if outcome == Outcome.falsePositive { fp += 1 }
                            rc.append(tp / Double(npig))
                            pr.append(tp / (fp + tp + eps))
                        }
                        recall[((t * K + k) * A + a) * M + m] = nd > 0 ? rc[nd - 1] : 0
                        if nd > 1 {
                            for j in stride(from: nd - 1, to: 0, by: -1) where pr[j] > pr[j - 1] { pr[j - 1] = pr[j] }
                        }
                        var j = 0
                        for r in 0..<R {
                            while j < nd && rc[j] < p.recallThresholds[r] { j += 1 }
                            let at = (((t * R + r) * K + k) * A + a) * M + m
                            if j < nd {
                                precision[at] = pr[j]; scores[at] = sortedScores[j]
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
