import Foundation
import UserPaths

/// A COCO-format detection dataset (the `instances_*.json` layout): images, annotations with `bbox`
/// [x, y, w, h] in pixels, categories. Crowd (`iscrowd: 1`) and `ignore: 1` boxes are kept and flagged
/// so matching can treat them as neither positives nor negatives. The synthetic aircraft set adds
/// `angle` (oriented box, degrees) and `clean_category_id` (the true type under injected label noise).
public struct COCODataset: Sendable, Equatable {
    public struct ImageInfo: Codable, Sendable, Equatable {
        public var id: Int
        public var fileName: String
        public var width: Int
        public var height: Int
        enum CodingKeys: String, CodingKey { case id, fileName = "file_name", width, height }
        public init(id: Int, fileName: String, width: Int, height: Int) { self.id = id; self.fileName = fileName; self.width = width; self.height = height }
    }
    public struct Annotation: Codable, Sendable, Equatable {
        public var id: Int
        public var imageId: Int
        public var categoryId: Int
        public var bbox: [Double]
        public var area: Double?
        public var iscrowd: Int?
        public var ignore: Int?
        public var angle: Double?
        public var cleanCategoryId: Int?
        enum CodingKeys: String, CodingKey {
            case id, imageId = "image_id", categoryId = "category_id", bbox, area, iscrowd, ignore, angle, cleanCategoryId = "clean_category_id"
        }
        public init(id: Int, imageId: Int, categoryId: Int, bbox: [Double], area: Double? = nil, iscrowd: Int? = nil, ignore: Int? = nil,
                    angle: Double? = nil, cleanCategoryId: Int? = nil) {
            self.id = id; self.imageId = imageId; self.categoryId = categoryId; self.bbox = bbox; self.area = area
            self.iscrowd = iscrowd; self.ignore = ignore; self.angle = angle; self.cleanCategoryId = cleanCategoryId
        }
        /// Crowd or explicitly ignored: neither a positive nor a negative for matching and evaluation.
        public var isIgnored: Bool { (iscrowd ?? 0) != 0 || (ignore ?? 0) != 0 }
    }
    public struct Category: Codable, Sendable, Equatable {
        public var id: Int
        public var name: String
        public var supercategory: String?
        public init(id: Int, name: String, supercategory: String? = nil) { self.id = id; self.name = name; self.supercategory = supercategory }
    }
    struct File: Codable { var images: [ImageInfo]; var annotations: [Annotation]; var categories: [Category] }

    public var images: [ImageInfo]
    public var annotations: [Annotation]
    public var categories: [Category]

    public init(images: [ImageInfo], annotations: [Annotation], categories: [Category]) {
        self.images = images; self.annotations = annotations; self.categories = categories
    }

    /// Annotations of each image id, in file order.
    public func annotations(forImage id: Int) -> [Annotation] { annotations.filter { $0.imageId == id } }

    /// The largest annotation file read: 1 GiB (COCO 2017's train annotations are 448 MiB).
    public static let maxFileBytes = 1 << 30

    /// Loads and validates a COCO annotation file. Errors name the file and, for malformed JSON, the
    /// line and column; for bad entries, the key path (`annotations[3].bbox`) and the fix.
    public static func load(_ path: String) throws -> COCODataset {
        try load(path, skipInvalid: false).dataset
    }

    /// With `skipInvalid`, annotations that fail validation (box outside the image or degenerate,
    /// unknown image or category id) are dropped instead of failing the load; `skipped` lists each with
    /// its reason. Structural problems (malformed JSON, missing keys, duplicate ids) always fail.
    public static func load(_ path: String, skipInvalid: Bool) throws -> (dataset: COCODataset, skipped: [String]) {
        let data: Data
        do { data = try UserFile.read(path, maxBytes: maxFileBytes, what: "annotation file") } catch let e as PathError {
            throw DataError(file: path, e.isNotFound ? "annotation file does not exist; expected a COCO JSON (annotations/{train,val,test}.json)" : e.cause)
        }
        return try parse(data, file: path, skipInvalid: skipInvalid)
    }

    public static func parse(_ data: Data, file: String) throws -> COCODataset {
        try parse(data, file: file, skipInvalid: false).dataset
    }

    public static func parse(_ data: Data, file: String, skipInvalid: Bool) throws -> (dataset: COCODataset, skipped: [String]) {
        do { _ = try JSONSerialization.jsonObject(with: data) } catch {
            throw DataError(file: file, "malformed JSON" + location(of: error, in: data) + "; fix the syntax (a trailing comma? an unquoted key?)")
        }
        let f: File
        do { f = try JSONDecoder().decode(File.self, from: data) } catch let e as DecodingError {
            throw DataError(file: file, describe(e))
        }
        var ds = COCODataset(images: f.images, annotations: f.annotations, categories: f.categories)
        let skipped = try ds.validate(file: file, skipInvalid: skipInvalid)
        return (ds, skipped)
    }

    /// "at line L, column C" from Foundation's "around character N" (a byte offset).
    public static func location(of error: Error, in data: Data) -> String {
        let text = (error as NSError).userInfo["NSDebugDescription"] as? String ?? "\(error)"
        guard let r = text.range(of: "character "), let n = Int(text[r.upperBound...].prefix { $0.isNumber }) else { return "" }
        var line = 1, col = 1
        for b in data.prefix(n) { if b == UInt8(ascii: "\n") { line += 1; col = 1 } else { col += 1 } }
        return " at line \(line), column \(col)"
    }

    static func path(_ keys: [CodingKey]) -> String {
        var s = ""
        for k in keys {
            if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
        }
        return s.isEmpty ? "(top level)" : s
    }

    static func describe(_ e: DecodingError) -> String {
        switch e {
        case .keyNotFound(let k, let c): return "missing key \(path(c.codingPath + [k])); every COCO file needs images, annotations and categories with their required fields"
        case .typeMismatch(let t, let c): return "\(path(c.codingPath)) has the wrong type (expected \(t))"
        case .valueNotFound(let t, let c): return "\(path(c.codingPath)) is null (expected \(t))"
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    /// Checks everything; in skip mode drops invalid annotations and returns why each was dropped.
    mutating func validate(file: String, skipInvalid: Bool) throws -> [String] {
        var imageById: [Int: ImageInfo] = [:]
        for (i, im) in images.enumerated() {
            guard imageById[im.id] == nil else { throw DataError(file: file, "images[\(i)]: duplicate image id \(im.id)") }
            guard im.width > 0, im.height > 0 else { throw DataError(file: file, "images[\(i)] (id \(im.id)): width and height must be positive, got \(im.width)x\(im.height)") }
            imageById[im.id] = im
        }
        let categoryIds = Set(categories.map(\.id))
        guard categoryIds.count == categories.count else { throw DataError(file: file, "categories: duplicate category id") }
        var annIds = Set<Int>()
        var kept: [Annotation] = [], skipped: [String] = []
        for (i, a) in annotations.enumerated() {
            let here = "annotations[\(i)] (id \(a.id))"
            guard annIds.insert(a.id).inserted else { throw DataError(file: file, "\(here): duplicate annotation id") }
            do { try check(a, here: here, imageById: imageById, categoryIds: categoryIds, file: file); kept.append(a) }
            catch let e as DataError where skipInvalid { skipped.append(e.message) }
        }
        annotations = kept
        return skipped
    }

    func check(_ a: Annotation, here: String, imageById: [Int: ImageInfo], categoryIds: Set<Int>, file: String) throws {
        guard let im = imageById[a.imageId] else { throw DataError(file: file, "\(here): image_id \(a.imageId) is not in images") }
        guard categoryIds.contains(a.categoryId) else { throw DataError(file: file, "\(here): category_id \(a.categoryId) is not in categories") }
        guard a.bbox.count == 4, a.bbox.allSatisfy({ $0.isFinite }) else {
            throw DataError(file: file, "\(here): bbox must be 4 finite numbers [x, y, w, h], got \(a.bbox)")
        }
        let (x, y, w, h) = (a.bbox[0], a.bbox[1], a.bbox[2], a.bbox[3])
        guard w > 0, h > 0 else { throw DataError(file: file, "\(here): bbox \(a.bbox) has a non-positive width or height") }
        // Half a pixel of tolerance: rounding in converters often puts edges just past the border.
        guard x >= -0.5, y >= -0.5, x + w <= Double(im.width) + 0.5, y + h <= Double(im.height) + 0.5 else {
            throw DataError(file: file, "\(here): bbox \(a.bbox) lies outside image \(im.id) (\(im.width)x\(im.height)); clip it or drop the annotation")
        }
        if let c = a.cleanCategoryId, !categoryIds.contains(c) {
            throw DataError(file: file, "\(here): clean_category_id \(c) is not in categories")
        }
    }
}
