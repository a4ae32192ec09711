import Foundation
import Files
import Datasets

/// COCO results files (`[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`, what
/// detectors write for pycocotools' `loadRes`), checked against their ground truth. Errors are
/// `DataError`s naming the file and the entry index.
public enum COCOResults {
    /// Reads and checks a results file against `groundTruth` (the annotation file it was made for).
    public static func load(_ path: String, groundTruth: COCODataset) throws -> [DetectionResult] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DataError(file: path, "results file does not exist; expected a JSON array [{image_id, category_id, bbox, score}, ...]")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError(file: path, "cannot be read (permissions?)") }
        return try parse(data, file: path, groundTruth: groundTruth)
    }

    /// Parses and checks results; `file` names the source in errors. Every image id and category id
    /// must be in `groundTruth` (pycocotools asserts the images and silently drops unknown categories;
    /// both here are mistakes worth a message), every bbox 4 finite numbers with w, h >= 0, every
    /// score finite. An empty array is valid (every AP is then 0).
    public static func parse(_ data: Data, file: String, groundTruth: COCODataset) throws -> [DetectionResult] {
        let results: [DetectionResult]
        do { results = try JSONDecoder().decode([DetectionResult].self, from: data) } catch let e as DecodingError {
            throw DataError(file: file, explain(e, data))
        }
        let images = Set(groundTruth.images.map(\.id))
        let categories = Set(groundTruth.categories.map(\.id))
        for (n, r) in results.enumerated() {
            guard images.contains(r.imageId) else {
                throw DataError(file: file, "entry \(n): image_id \(r.imageId) is not an image of the ground truth (\(images.count) images); were the results made for another split?")
            }
            guard categories.contains(r.categoryId) else {
                throw DataError(file: file, "entry \(n): category_id \(r.categoryId) is not a category of the ground truth (ids \(categories.sorted()))")
            }
            guard r.box.isValid else {
                throw DataError(file: file, "entry \(n): bbox \(r.box.xywh) must be 4 finite numbers [x, y, w, h] with w >= 0 and h >= 0 (not corners x1, y1, x2, y2?)")
            }
            guard r.score.isFinite else { throw DataError(file: file, "entry \(n): score \(r.score) is not a finite number") }
        }
        return results
    }

    /// The results as a JSON array (numbers in their shortest round-trip form).
    public static func encode(_ results: [DetectionResult]) throws -> Data {
        for (n, r) in results.enumerated() where !r.box.isValid || !r.score.isFinite {
            throw DataError(file: "(results)", "entry \(n): bbox \(r.box.xywh) and score \(r.score) must be finite, w and h >= 0")
        }
        return try JSONEncoder().encode(results)
    }

    /// Writes the results atomically (`AtomicFile`: a temporary file renamed into place; a checkpoint,
    /// recipe or metrics file at `path` is refused, never replaced).
    public static func write(_ results: [DetectionResult], to path: String) throws {
        do { try AtomicFile.write(try encode(results), to: path) } catch let e as DataError {
            throw DataError(file: path, e.message)
        } catch let e as FileError {
            throw DataError(file: path, "cannot be written: \(e.message)")
        } catch {
            throw DataError(file: path, "cannot be written: \(error.localizedDescription)")
        }
    }

    /// JSONDecoder (one pass, no object tree: a 600k-entry file would take gigabytes through
    /// JSONSerialization) says only "not valid JSON" for syntax errors and for a non-integer id; on
    /// that path JSONSerialization finds the line and column, or each entry is decoded alone to find
    /// the one that fails.
    static func explain(_ e: DecodingError, _ data: Data) -> String {
        guard case .dataCorrupted(let c) = e, c.codingPath.isEmpty else { return describe(e) }
        do { _ = try JSONSerialization.jsonObject(with: data) } catch {
            return "malformed JSON" + COCODataset.location(of: error, in: data) + nonFiniteHint(error, data)
                + "; fix the syntax (a missing comma? an unquoted key?)"
        }
        if let probes = try? JSONDecoder().decode([Probe].self, from: data), let n = probes.firstIndex(where: \.failed) {
            return "entry \(n): a value has the wrong form; image_id and category_id must be integers, bbox 4 numbers, score a number"
        }
        return describe(e)
    }

    /// One entry decoded on its own, noting failure instead of failing the array.
    struct Probe: Decodable {
        var failed: Bool
        init(from decoder: any Decoder) { failed = (try? DetectionResult(from: decoder)) == nil }
    }

    /// Python's `json.dump` writes non-finite floats as the bare tokens NaN / Infinity, which are not JSON.
    static func nonFiniteHint(_ error: Error, _ data: Data) -> String {
        let text = (error as NSError).userInfo["NSDebugDescription"] as? String ?? ""
        guard let r = text.range(of: "character "), let n = Int(text[r.upperBound...].prefix { $0.isNumber }), n < data.count else { return "" }
        let rest = String(decoding: data[data.index(data.startIndex, offsetBy: n)...].prefix(9), as: UTF8.self)
        for token in ["NaN", "Infinity", "-Infinity"] where rest.hasPrefix(token) {
            return " (\(token): a non-finite score or bbox value; Python's json.dump writes these, JSON has no such numbers)"
        }
        return ""
    }

    static func describe(_ e: DecodingError) -> String {
        func at(_ path: [CodingKey]) -> String {
            guard let first = path.first, let n = first.intValue else { return "" }
            let rest = path.dropFirst().map(\.stringValue).joined(separator: ".")
            return "entry \(n)" + (rest.isEmpty ? "" : " (\(rest))") + ": "
        }
        switch e {
        case .keyNotFound(let k, let c):
            return at(c.codingPath + [k]) + "missing key '\(k.stringValue)'; every result needs image_id, category_id, bbox [x, y, w, h] and score"
        case .typeMismatch(let t, let c):
            if c.codingPath.isEmpty { return "expected a JSON array of results [{image_id, category_id, bbox, score}, ...]" }
            return at(c.codingPath) + "wrong type (expected \(t == Int.self ? "an integer" : t == Double.self ? "a number" : "\(t)"))"
        case .valueNotFound(let t, let c): return at(c.codingPath) + "null (expected \(t))"
        case .dataCorrupted(let c): return at(c.codingPath) + c.debugDescription
        @unknown default: return "\(e)"
        }
    }
}

extension GroundTruth {
    /// pycocotools' view of a COCO annotation file's objects: `area` from the file (the box's w * h
    /// where the file has none, as pycocotools would fail), `iscrowd` and `ignore` read as flags.
    public static func from(_ dataset: COCODataset) -> [GroundTruth] {
        dataset.annotations.map { a in
            let box = COCOBox(xywh: a.bbox)
            return GroundTruth(imageId: a.imageId, categoryId: a.categoryId, box: box, area: a.area ?? box.area,
                               isCrowd: (a.iscrowd ?? 0) != 0, ignore: (a.ignore ?? 0) != 0)
        }
    }
}

extension COCOEval {
    /// Evaluates against a COCO annotation file's images, categories and objects.
    public static func evaluate(_ groundTruth: COCODataset, _ detections: [DetectionResult], classAgnostic: Bool = false) throws -> COCOEvalResult {
        try evaluate(imageIds: groundTruth.images.map(\.id), categoryIds: groundTruth.categories.map(\.id),
                     groundTruth: GroundTruth.from(groundTruth), detections: detections, classAgnostic: classAgnostic)
    }
}

extension VOCEval {
    /// VOC AP against a COCO annotation file (difficult = `iscrowd` or `ignore`).
    public static func evaluate(_ groundTruth: COCODataset, _ detections: [DetectionResult],
                                iouThreshold: Double = 0.5, method: Method = .allPoint) throws -> Result {
        try evaluate(imageIds: groundTruth.images.map(\.id), categoryIds: groundTruth.categories.map(\.id),
                     groundTruth: GroundTruth.from(groundTruth), detections: detections, iouThreshold: iouThreshold, method: method)
    }
}
