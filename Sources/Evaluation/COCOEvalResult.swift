import Foundation

/// pycocotools' `COCOeval.eval` and `stats`: precision, recall and score arrays over the parameter
/// grid (`COCOParams`), -1 where a category has no positive ground truth in an area range.
public struct COCOEvalResult: Sendable {
    /// The one class of a class-agnostic evaluation (pycocotools sets `catIds = [-1]` for `useCats = 0`).
    public static let allCategories = -1
    /// Keys of `stats`, in pycocotools' order.
    public static let statNames = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]

    /// Evaluated images, sorted.
    public let imageIds: [Int]
    /// The K classes, sorted ids (`[allCategories]` when class-agnostic); index k of the arrays.
    public let categoryIds: [Int]
    /// `eval['precision']`, T x R x K x A x M in C order (T IoU thresholds, R recall points, K classes,
    /// A area ranges, M maxDets); the precision envelope sampled at each recall point.
    public let precision: [Double]
    /// `eval['recall']`, T x K x A x M: the highest recall reached.
    public let recall: [Double]
    /// `eval['scores']`, T x R x K x A x M: the score of the detection where each recall point is read.
    public let scores: [Double]
    /// `COCOeval.stats`: the 12 summary numbers named by `statNames` (-1 where undefined).
    public let stats: [Double]

    public var iouThresholds: [Double] { COCOParams.iouThresholds }
    public var recallThresholds: [Double] { COCOParams.recallThresholds }
    public var areaRanges: [COCOAreaRange] { COCOParams.areaRanges }
    public var maxDets: [Int] { COCOParams.maxDets }
    public var isClassAgnostic: Bool { categoryIds == [Self.allCategories] }

    init(imageIds: [Int], categoryIds: [Int], precision: [Double], recall: [Double], scores: [Double]) {
        self.imageIds = imageIds; self.categoryIds = categoryIds
        self.precision = precision; self.recall = recall; self.scores = scores
        stats = Self.summarizeDets(precision: precision, recall: recall, classes: categoryIds.count)
    }

    private var shape: (T: Int, R: Int, K: Int, A: Int, M: Int) {
        (COCOParams.iouThresholds.count, COCOParams.recallThresholds.count, categoryIds.count, COCOParams.areaRanges.count, COCOParams.maxDets.count)
    }

    /// `precision[t, r, k, a, m]`.
    public func precision(iou t: Int, recall r: Int, category k: Int, area a: Int, maxDets m: Int) -> Double {
        let s = shape
        return precision[(((t * s.R + r) * s.K + k) * s.A + a) * s.M + m]
    }

    /// `recall[t, k, a, m]`.
    public func recall(iou t: Int, category k: Int, area a: Int, maxDets m: Int) -> Double {
        let s = shape
        return recall[((t * s.K + k) * s.A + a) * s.M + m]
    }

    /// AP of class index `k`: the mean precision over all recall points and IoU thresholds (or only
    /// threshold index `iou`), at area range `area` and maxDets index `maxDets` (default: all, 100);
    /// nil when the class has no positive ground truth there (detectron2's per-class AP).
    public func averagePrecision(category k: Int, iou: Int? = nil, area a: Int = 0, maxDets m: Int = 2) -> Double? {
        let s = shape
        var sum = 0.0, n = 0
        for t in iou.map({ [$0] }) ?? Array(0..<s.T) {
            for r in 0..<s.R {
                let v = precision(iou: t, recall: r, category: k, area: a, maxDets: m)
                if v > -1 { sum += v; n += 1 }
            }
        }
        return n == 0 ? nil : sum / Double(n)
    }

    /// AP (IoU 0.50:0.95) and AP50 of one class at area all, maxDets 100.
    public struct ClassAP: Sendable, Equatable {
        public var categoryId: Int
        /// nil when the class has no positive ground truth (pycocotools excludes it from the means).
        public var ap: Double?
        public var ap50: Double?
    }

    /// One entry per `categoryIds`.
    public var perClass: [ClassAP] {
        categoryIds.indices.map { ClassAP(categoryId: categoryIds[$0], ap: averagePrecision(category: $0), ap50: averagePrecision(category: $0, iou: 0)) }
    }

    /// The precision-recall curve pycocotools interpolates: `recallThresholds` against precision (the
    /// envelope, 0 past the highest recall reached) for class index `k` at IoU threshold index `iou`
    /// (default 0: IoU 0.5), area all, maxDets 100. nil when the class has no positive ground truth.
    public func precisionRecallCurve(category k: Int, iou t: Int = 0, area a: Int = 0, maxDets m: Int = 2) -> (recall: [Double], precision: [Double])? {
        let p = recallThresholds.indices.map { precision(iou: t, recall: $0, category: k, area: a, maxDets: m) }
        return p.allSatisfy({ $0 == -1 }) ? nil : (recallThresholds, p)
    }

    /// pycocotools' `summarize()` lines, exactly as it prints them.
    public func summary() -> String {
        Self.summaryRows.enumerated().map { n, row in
            let title = row.ap ? "Average Precision" : "Average Recall"
            let type = row.ap ? "(AP)" : "(AR)"
            let iou = row.iou.map { String(format: "%0.2f", $0) }
                ?? String(format: "%0.2f:%0.2f", COCOParams.iouThresholds.first!, COCOParams.iouThresholds.last!)
            // Python's '{:<18}', '{:>6s}': pad, never cut.
            func left(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
            func right(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
            return " \(left(title, 18)) \(type) @[ IoU=\(left(iou, 9)) | area=\(right(row.area, 6)) | maxDets=\(right(String(row.maxDets), 3)) ] = "
                + String(format: "%0.3f", stats[n])
        }.joined(separator: "\n") + "\n"
    }

    /// `_summarizeDets`: (AP or AR, IoU threshold or all, area label, maxDets).
    static let summaryRows: [(ap: Bool, iou: Double?, area: String, maxDets: Int)] = [
        (true, nil, "all", 100), (true, 0.5, "all", 100), (true, 0.75, "all", 100),
        (true, nil, "small", 100), (true, nil, "medium", 100), (true, nil, "large", 100),
        (false, nil, "all", 1), (false, nil, "all", 10), (false, nil, "all", 100),
        (false, nil, "small", 100), (false, nil, "medium", 100), (false, nil, "large", 100),
    ]

    /// `_summarize`: the mean of every entry > -1 at the selected thresholds, area and maxDets, over all
    /// classes and (for AP) recall points; -1 when there is none. Thresholds are found by `==` as
    /// pycocotools does (`np.where(iouThr == p.iouThrs)`), which `COCOParams.linspace` makes exact.
    static func summarizeDets(precision: [Double], recall: [Double], classes K: Int) -> [Double] {
        let p = COCOParams.self
        let T = p.iouThresholds.count, R = p.recallThresholds.count, A = p.areaRanges.count, M = p.maxDets.count
        return summaryRows.map { row in
            let ts = row.iou.map { v in p.iouThresholds.indices.filter { p.iouThresholds[$0] == v } } ?? Array(0..<T)
            let a = p.areaRanges.firstIndex { $0.label == row.area }!
            let m = p.maxDets.firstIndex(of: row.maxDets)!
            var sum = 0.0, n = 0
            for t in ts {
                for k in 0..<K {
                    if row.ap {
                        for r in 0..<R {
                            let v = precision[(((t * R + r) * K + k) * A + a) * M + m]
                            if v > -1 { sum += v; n += 1 }
                        }
                    } else {
                        let v = recall[((t * K + k) * A + a) * M + m]
                        if v > -1 { sum += v; n += 1 }
                    }
                }
            }
            return n == 0 ? -1 : sum / Double(n)
        }
    }
}
