/// Pascal VOC average precision per class, the devkit's `voc_eval` + `voc_ap` (py-faster-rcnn's
/// port): detections of a class in descending score order each take the ground truth of their image
/// with the highest IoU (difficult ones included); above the threshold (strictly: `ovmax > ovthresh`)
/// a free regular box is a TP, an already-taken one a FP (duplicate), a difficult one neither; at or
/// below it a FP. Difficult boxes (`GroundTruth.isDifficult`: crowd or `ignore`) are not positives.
///
/// Two stated departures from the devkit: coordinates are continuous (no +1 pixel in widths and
/// areas: mmdet's `use_legacy_coordinate=False`, since COCO boxes are not integer pixel indices), and
/// equal scores keep input order (the devkit's `np.argsort` is an unstable quicksort, so its tie order
/// is unspecified).
public enum VOCEval {
    public enum Method: String, Sendable, CaseIterable {
        /// VOC2010+: the area under the precision envelope, at every recall where recall changes.
        case allPoint = "all"
        /// VOC2007: the mean of the highest precision at recall >= 0, 0.1, ..., 1.
        case elevenPoint = "voc07"
    }

    public struct ClassResult: Sendable, Equatable {
        public var categoryId: Int
        /// Non-difficult ground truths (the devkit's `npos`).
        public var positives: Int
        /// nil when the class has no positives (the devkit would divide by zero).
        public var ap: Double?
        /// Per detection of the class in descending score order: the devkit's `rec` and `prec`
        /// (cumulative; empty without positives).
        public var recall: [Double]
        public var precision: [Double]
    }

    public struct Result: Sendable, Equatable {
        /// One per category id, sorted.
        public var classes: [ClassResult]
        /// The mean AP over classes with positives (nil when none has any).
        public var meanAP: Double? {
            let aps = classes.compactMap(\.ap)
            return aps.isEmpty ? nil : aps.reduce(0, +) / Double(aps.count)
        }
    }

    /// AP at `iouThreshold` for every category. Inputs are checked as `COCOEval.evaluate` checks them.
    public static func evaluate(imageIds: [Int], categoryIds: [Int], groundTruth: [GroundTruth], detections: [DetectionResult],
                                iouThreshold: Double = 0.5, method: Method = .allPoint) throws -> Result {
        let inputs = try IndexedInputs(imageIds: imageIds, categoryIds: categoryIds, groundTruth: groundTruth, detections: detections)
        let I = inputs.imageIds.count, K = inputs.categoryIds.count
        let gt = groupByKey(zip(inputs.gtImage, inputs.gtCategory).map { $1 * I + $0 }, keyCount: I * K)
        let dt = groupByKey(inputs.dtCategory, keyCount: K)
        var taken = [Bool](repeating: false, count: groundTruth.count)
        var classes: [ClassResult] = []
        for k in 0..<K {
            var positives = 0
            for n in gt.order[gt.starts[k * I]..<gt.starts[(k + 1) * I]] where !groundTruth[n].isDifficult { positives += 1 }
            guard positives > 0 else {
                classes.append(ClassResult(categoryId: inputs.categoryIds[k], positives: 0, ap: nil, recall: [], precision: []))
                continue
            }
            let dets = Array(dt.order[dt.starts[k]..<dt.starts[k + 1]])
            let order = dets.indices.sorted { a, b in
                let sa = detections[dets[a]].score, sb = detections[dets[b]].score
                return sa > sb || (sa == sb && a < b)
            }
            var recall: [Double] = [], precision: [Double] = []
            recall.reserveCapacity(order.count); precision.reserveCapacity(order.count)
            var tp = 0.0, fp = 0.0
            for o in order {
                let n = dets[o], box = detections[n].box
                let key = k * I + inputs.dtImage[n]
                var ovmax = -Double.infinity, jmax = -1
                for g in gt.order[gt.starts[key]..<gt.starts[key + 1]] {
                    let v = BoxIoU.voc(box, groundTruth[g].box)
                    if v > ovmax { ovmax = v; jmax = g }  // np.argmax: the first of equal maxima
                }
                if ovmax > iouThreshold {
                    if !groundTruth[jmax].isDifficult {
                        if !taken[jmax] { tp += 1; taken[jmax] = true } else { fp += 1 }
                    }
                } else {
                    fp += 1
                }
                recall.append(tp / Double(positives))
                precision.append(tp / Swift.max(tp + fp, Double.ulpOfOne))
            }
            classes.append(ClassResult(categoryId: inputs.categoryIds[k], positives: positives,
                                       ap: averagePrecision(recall: recall, precision: precision, method: method),
                                       recall: recall, precision: precision))
        }
        return Result(classes: classes)
    }

    /// The devkit's `voc_ap(rec, prec, use_07_metric)`.
    public static func averagePrecision(recall rec: [Double], precision prec: [Double], method: Method) -> Double {
        precondition(rec.count == prec.count, "VOCEval.averagePrecision: \(rec.count) recalls, \(prec.count) precisions")
        switch method {
        case .elevenPoint:
            var ap = 0.0
            for i in 0...10 {
                let t = Double(i) * 0.1  // np.arange(0., 1.1, 0.1): 0.30000000000000004, not 0.3
                var p = 0.0, any = false
                for (r, q) in zip(rec, prec) where r >= t { p = any ? Swift.max(p, q) : q; any = true }
                ap = ap + p / 11
            }
            return ap
        case .allPoint:
            let mrec = [0.0] + rec + [1.0]
            var mpre = [0.0] + prec + [0.0]
            for i in stride(from: mpre.count - 1, to: 0, by: -1) { mpre[i - 1] = Swift.max(mpre[i - 1], mpre[i]) }
            var ap = 0.0
            for i in 0..<(mrec.count - 1) where mrec[i + 1] != mrec[i] { ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1] }
            return ap
        }
    }
}
