import XCTest
import Foundation
import Datasets
@testable import Evaluation

final class COCOResultsTests: XCTestCase {
    let groundTruth = try! COCODataset.parse(Data("""
        {"images": [{"id": 4, "file_name": "a.png", "width": 100, "height": 80}, {"id": 9, "file_name": "b.png", "width": 100, "height": 80}],
         "annotations": [{"id": 1, "image_id": 4, "category_id": 2, "bbox": [1, 2, 30, 40], "area": 900, "iscrowd": 0},
                         {"id": 2, "image_id": 9, "category_id": 5, "bbox": [10, 10, 20, 20], "iscrowd": 1},
                         {"id": 3, "image_id": 9, "category_id": 2, "bbox": [50, 10, 20, 20], "area": 400, "ignore": 1}],
         "categories": [{"id": 2, "name": "jet"}, {"id": 5, "name": "prop"}]}
        """.utf8), file: "gt.json")

    func temp(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("COCOResultsTests-\(ProcessInfo.processInfo.processIdentifier)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    func testWriteThenLoadIsExact() throws {
        let results = [DetectionResult(imageId: 4, categoryId: 2, box: COCOBox(x: 0.1 + 0.2, y: 1e-7, width: 12.345678901234567, height: 0), score: 1.0 / 3),
                       DetectionResult(imageId: 9, categoryId: 5, box: COCOBox(x1: 10, y1: 20, x2: 30, y2: 25), score: 0)]
        let path = temp("roundtrip.json")
        try COCOResults.write(results, to: path)
        XCTAssertEqual(try COCOResults.load(path, groundTruth: groundTruth), results)
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [[String: Any]]
        XCTAssertEqual(Set(obj?.first?.keys.map { $0 } ?? []), ["image_id", "category_id", "bbox", "score"])
        XCTAssertEqual(try COCOResults.parse(Data("[]".utf8), file: "empty.json", groundTruth: groundTruth), [])
    }

    func message(_ text: String) -> String {
        do { _ = try COCOResults.parse(Data(text.utf8), file: "dets.json", groundTruth: groundTruth); return "no error" }
        catch { return "\(error)" }
    }

    func testBadEntriesAreNamedByFileAndIndex() {
        let ok = #"{"image_id": 4, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5}"#
        let cases: [(String, [String])] = [
            (#"[\#(ok), {"image_id": 7, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5}]"#, ["dets.json", "entry 1", "image_id 7"]),
            (#"[{"image_id": 4, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5}]"#, ["entry 0", "category_id 3", "[2, 5]"]),
            (#"[\#(ok), \#(ok), {"image_id": 4, "category_id": 2, "bbox": [1, 2, 3], "score": 0.5}]"#, ["entry 2", "bbox", "4 numbers"]),
            (#"[{"image_id": 4, "category_id": 2, "bbox": [1, 2, -3, 4], "score": 0.5}]"#, ["entry 0", "w >= 0"]),
            (#"[{"image_id": 4, "category_id": 2, "bbox": [1, 2, 3, 4]}]"#, ["entry 0", "missing key 'score'"]),
            (#"[{"image_id": "4", "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5}]"#, ["entry 0", "image_id", "an integer"]),
            (#"{"image_id": 4}"#, ["dets.json", "JSON array"]),
            (#"[\#(ok), {"image_id": 4.5, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5}]"#, ["entry 1", "must be integers"]),
            ("[\(ok),\n \(ok),\n {\"image_id\": 4, \"category_id\": 2, \"bbox\": [1, 2, 3, 4], \"score\": NaN}]", ["malformed JSON at line 3, column", "NaN", "non-finite"]),
            ("[\(ok),\n {\"image_id\": 4 \"category_id\": 2}]", ["dets.json", "malformed JSON at line 2, column"]),
        ]
        for (text, expected) in cases {
            let m = message(text)
            for e in expected { XCTAssertTrue(m.contains(e), "\(e) missing from: \(m)") }
        }
        XCTAssertEqual(message("[\(ok)]"), "no error")
        XCTAssertThrowsError(try COCOResults.load(temp("missing.json"), groundTruth: groundTruth)) {
            XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
        }
    }

    func testGroundTruthFromAnnotationFileReadsAreaAndFlags() {
        let g = GroundTruth.from(groundTruth)
        XCTAssertEqual(g.map(\.area), [900, 400, 400], "the file's area; w*h only where it has none")
        XCTAssertEqual(g.map(\.isCrowd), [false, true, false])
        XCTAssertEqual(g.map(\.ignore), [false, false, true])
        XCTAssertEqual(g.map(\.isDifficult), [false, true, true])
        XCTAssertEqual(g[0].box, COCOBox(x: 1, y: 2, width: 30, height: 40))
    }
}
