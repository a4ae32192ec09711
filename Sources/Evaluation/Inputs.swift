// The evaluation inputs, as COCO files hold them: boxes `[x, y, w, h]` in pixels (continuous
// coordinates, no VOC +1), `Double` throughout because pycocotools computes IoU in double and a
// `Float` round trip moves IoUs across thresholds.

/// A box as COCO's `[x, y, width, height]` (top-left corner, size).
public struct COCOBox: Sendable, Hashable {
    public var x: Double
    public var y: Double
    public var width: Double
    public var height: Double

    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }

    /// From `[x, y, w, h]`.
    public init(xywh v: [Double]) {
        precondition(v.count == 4, "COCOBox: [x, y, w, h] needs 4 values, got \(v)")
        self.init(x: v[0], y: v[1], width: v[2], height: v[3])
    }

    /// From corners `(x1, y1, x2, y2)` (the Detection layer's `XYXYBoxes` convention).
    public init(x1: Double, y1: Double, x2: Double, y2: Double) {
        self.init(x: x1, y: y1, width: x2 - x1, height: y2 - y1)
    }

    public var xywh: [Double] { [x, y, width, height] }

    /// `w * h`: what pycocotools' `loadRes` stores as a detection's `area`.
    public var area: Double { width * height }

    var isValid: Bool { x.isFinite && y.isFinite && width.isFinite && height.isFinite && width >= 0 && height >= 0 }
}

/// One ground-truth object.
public struct GroundTruth: Sendable, Equatable {
    public var imageId: Int
    public var categoryId: Int
    public var box: COCOBox
    /// COCO's `area` field, which decides the small/medium/large range (pycocotools reads the field, not
    /// the box: for COCO itself it is the segmentation mask's area).
    public var area: Double
    /// `iscrowd`: a region of many objects. COCO: detections inside it are neither TP nor FP, and it is
    /// never a positive; VOC: treated as difficult.
    public var isCrowd: Bool
    /// The `ignore` key (DOTA's and VOC's "difficult"). pycocotools' `_prepare` overwrites `ignore` with
    /// `iscrowd`, so COCO evaluation counts such a box as a normal positive; VOC evaluation treats it as
    /// difficult (excluded from the positives, its detections neither TP nor FP).
    public var ignore: Bool

    /// `area` defaults to the box's `w * h` (what torchvision's `convert_to_coco_api` writes).
    public init(imageId: Int, categoryId: Int, box: COCOBox, area: Double? = nil, isCrowd: Bool = false, ignore: Bool = false) {
        self.imageId = imageId; self.categoryId = categoryId; self.box = box
        self.area = area ?? box.area; self.isCrowd = isCrowd; self.ignore = ignore
    }

    /// VOC's difficult flag: crowd or ignored (mmdet maps COCO's crowd boxes to `bboxes_ignore` the same way).
    public var isDifficult: Bool { isCrowd || ignore }
}

/// One detection, as an entry of a COCO results file (`{image_id, category_id, bbox, score}`).
public struct DetectionResult: Sendable, Equatable, Codable {
    public var imageId: Int
    public var categoryId: Int
    public var box: COCOBox
    public var score: Double

    public init(imageId: Int, categoryId: Int, box: COCOBox, score: Double) {
        self.imageId = imageId; self.categoryId = categoryId; self.box = box; self.score = score
    }

    enum CodingKeys: String, CodingKey { case imageId = "image_id", categoryId = "category_id", bbox, score }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        imageId = try c.decode(Int.self, forKey: .imageId)
        categoryId = try c.decode(Int.self, forKey: .categoryId)
        let b = try c.decode([Double].self, forKey: .bbox)
        guard b.count == 4 else {
            throw DecodingError.dataCorruptedError(forKey: .bbox, in: c, debugDescription: "bbox must be 4 numbers [x, y, w, h], got \(b.count)")
        }
        box = COCOBox(xywh: b)
        score = try c.decode(Double.self, forKey: .score)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(imageId, forKey: .imageId)
        try c.encode(categoryId, forKey: .categoryId)
        try c.encode(box.xywh, forKey: .bbox)
        try c.encode(score, forKey: .score)
    }
}

/// Inputs that do not fit the images and categories being evaluated, or are not finite.
public struct EvaluationError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Image and category indices of the inputs (sorted unique ids, as pycocotools' `np.unique`), checked.
struct IndexedInputs {
    let imageIds: [Int]
    let categoryIds: [Int]
    /// Per ground truth / detection: image index, category index.
    let gtImage: [Int], gtCategory: [Int]
    let dtImage: [Int], dtCategory: [Int]

    init(imageIds: [Int], categoryIds: [Int], groundTruth: [GroundTruth], detections: [DetectionResult]) throws {
        self.imageIds = Array(Set(imageIds)).sorted()
        self.categoryIds = Array(Set(categoryIds)).sorted()
        var imageIndex: [Int: Int] = [:], categoryIndex: [Int: Int] = [:]
        for (i, id) in self.imageIds.enumerated() { imageIndex[id] = i }
        for (k, id) in self.categoryIds.enumerated() { categoryIndex[id] = k }
        var gi = [Int](), gk = [Int](), di = [Int](), dk = [Int]()
        gi.reserveCapacity(groundTruth.count); gk.reserveCapacity(groundTruth.count)
        di.reserveCapacity(detections.count); dk.reserveCapacity(detections.count)
        for (n, g) in groundTruth.enumerated() {
            guard let i = imageIndex[g.imageId] else { throw EvaluationError("groundTruth[\(n)]: image id \(g.imageId) is not among the \(self.imageIds.count) evaluated images") }
            guard let k = categoryIndex[g.categoryId] else { throw EvaluationError("groundTruth[\(n)]: category id \(g.categoryId) is not among the evaluated categories \(self.categoryIds)") }
            guard g.box.isValid, g.area.isFinite else { throw EvaluationError("groundTruth[\(n)]: box \(g.box.xywh) / area \(g.area) must be finite with non-negative width and height") }
            gi.append(i); gk.append(k)
        }
        for (n, d) in detections.enumerated() {
            guard let i = imageIndex[d.imageId] else { throw EvaluationError("detections[\(n)]: image id \(d.imageId) is not among the \(self.imageIds.count) evaluated images") }
            guard let k = categoryIndex[d.categoryId] else { throw EvaluationError("detections[\(n)]: category id \(d.categoryId) is not among the evaluated categories \(self.categoryIds)") }
            guard d.box.isValid else { throw EvaluationError("detections[\(n)]: box \(d.box.xywh) must be 4 finite numbers with non-negative width and height") }
            guard d.score.isFinite else { throw EvaluationError("detections[\(n)]: score \(d.score) is not finite") }
            di.append(i); dk.append(k)
        }
        gtImage = gi; gtCategory = gk; dtImage = di; dtCategory = dk
    }
}

/// Indices `0..<keys.count` ordered by key, ties in input order (a stable counting sort), with the start
/// of every key's run: `order[starts[key]..<starts[key + 1]]` are the inputs with that key.
func groupByKey(_ keys: [Int], keyCount: Int) -> (order: [Int], starts: [Int]) {
    var starts = [Int](repeating: 0, count: keyCount + 1)
    for k in keys { starts[k + 1] += 1 }
    for k in 0..<keyCount { starts[k + 1] += starts[k] }
    var next = starts
    var order = [Int](repeating: 0, count: keys.count)
    for (n, k) in keys.enumerated() { order[next[k]] = n; next[k] += 1 }
    return (order, starts)
}
