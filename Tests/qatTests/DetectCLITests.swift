import XCTest
import Foundation

/// `qat detect score` on the single-image case of the Evaluation golden fixture: the printed summary
/// must be pycocotools' own text.
final class DetectCLITests: XCTestCase {
    struct Case: Decodable { var name: String; var gt: String; var results: String; var stats: [Double]; var summary: String? }
    struct Fixture: Decodable { var cases: [Case] }

    func files() throws -> (gt: String, results: String, expected: Case) {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../EvaluationTests/Fixtures/cocoeval_golden.json").standardizedFileURL
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        let c = try XCTUnwrap(fixture.cases.first { $0.summary != nil })
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("DetectCLITests-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let gt = dir.appendingPathComponent("gt.json"), res = dir.appendingPathComponent("results.json")
        try Data(c.gt.utf8).write(to: gt)
        try Data(c.results.utf8).write(to: res)
        return (gt.path, res.path, c)
    }

    func testScorePrintsPycocotoolsSummaryAndPerClassTable() throws {
        let (gt, res, expected) = try files()
        let (code, out, err) = try runQAT(["detect", "score", gt, res])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.hasPrefix(try XCTUnwrap(expected.summary)), out)
        XCTAssertTrue(out.contains("type_1"), out)
        XCTAssertTrue(out.contains("type_2"), out)
        XCTAssertTrue(out.contains("1 images, 5 detections: files read in"), out)
    }

    func testScoreJSONAndClassAgnostic() throws {
        let (gt, res, expected) = try files()
        let (code, out, err) = try runQAT(["detect", "score", gt, res, "--json"])
        XCTAssertEqual(code, 0, err)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let stats = try XCTUnwrap(obj["stats"] as? [String: Any])
        XCTAssertEqual(stats["AP"] as? Double ?? -9, expected.stats[0], accuracy: 1e-12)
        XCTAssertEqual(stats["AR100"] as? Double ?? -9, expected.stats[8], accuracy: 1e-12)
        XCTAssertTrue(stats["APl"] is NSNull, "no large object: null (pycocotools' -1)")
        let classes = try XCTUnwrap(obj["classes"] as? [[String: Any]])
        XCTAssertEqual(classes.map { $0["name"] as? String }, ["type_1", "type_2"])
        XCTAssertEqual(classes.map { $0["ground_truth"] as? Int }, [2, 1])

        let (c2, o2, e2) = try runQAT(["detect", "score", gt, res, "--json", "--class-agnostic"])
        XCTAssertEqual(c2, 0, e2)
        let agnostic = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(o2.utf8)) as? [String: Any])
        XCTAssertEqual(agnostic["class_agnostic"] as? Bool, true)
        XCTAssertEqual((agnostic["classes"] as? [Any])?.count, 1)
        XCTAssertTrue(agnostic["merge_iou"] is NSNull, "no merge asked")

        let (c3, o3, e3) = try runQAT(["detect", "score", gt, res, "--json", "--class-agnostic", "--merge-iou", "0.5"])
        XCTAssertEqual(c3, 0, e3)
        let merged = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(o3.utf8)) as? [String: Any])
        XCTAssertEqual(merged["merge_iou"] as? Double, 0.5)
        XCTAssertLessThanOrEqual(try XCTUnwrap(merged["detections"] as? Int), try XCTUnwrap(agnostic["detections"] as? Int))

        let (c4, _, e4) = try runQAT(["detect", "score", gt, res, "--merge-iou", "0.5"])
        XCTAssertNotEqual(c4, 0)
        XCTAssertTrue(e4.contains("--merge-iou") && e4.contains("--class-agnostic"), e4)
        let (c5, _, e5) = try runQAT(["detect", "score", gt, res, "--class-agnostic", "--merge-iou", "1.5"])
        XCTAssertNotEqual(c5, 0)
        XCTAssertTrue(e5.contains("expected an IoU in [0, 1]"), e5)
    }

    func testBadResultsFileIsReportedWithFileAndEntry() throws {
        let (gt, res, _) = try files()
        let bad = res.replacingOccurrences(of: "results.json", with: "bad.json")
        try Data(#"[{"image_id": 123456789, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]"#.utf8).write(to: URL(fileURLWithPath: bad))
        let (code, _, err) = try runQAT(["detect", "score", gt, bad])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(err.contains("bad.json") && err.contains("entry 0") && err.contains("image_id 123456789"), err)
        let (c2, _, e2) = try runQAT(["detect", "score", gt + ".missing", res])
        XCTAssertNotEqual(c2, 0)
        XCTAssertTrue(e2.contains("does not exist"), e2)
    }
}
