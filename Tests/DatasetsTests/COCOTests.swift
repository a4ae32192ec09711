import XCTest
import Foundation
@testable import Datasets

final class COCOTests: XCTestCase {
    let good = """
    {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}, {"id": 2, "file_name": "b.png", "width": 32, "height": 32}],
     "annotations": [{"id": 10, "image_id": 1, "category_id": 3, "bbox": [4, 5, 20, 10], "area": 200, "iscrowd": 0, "angle": 30, "clean_category_id": 4},
                     {"id": 11, "image_id": 1, "category_id": 4, "bbox": [0, 0, 64, 48], "iscrowd": 1},
                     {"id": 12, "image_id": 2, "category_id": 4, "bbox": [1.5, 2, 3, 4], "ignore": 1}],
     "categories": [{"id": 3, "name": "A320"}, {"id": 4, "name": "A321", "supercategory": "airliner"}]}
    """

    func testParsesImagesAnnotationsAndFlags() throws {
        let d = try COCODataset.parse(Data(good.utf8), file: "train.json")
        XCTAssertEqual(d.images.count, 2); XCTAssertEqual(d.categories.map(\.name), ["A320", "A321"])
        let a = d.annotations(forImage: 1)
        XCTAssertEqual(a.count, 2)
        XCTAssertEqual(a[0].bbox, [4, 5, 20, 10]); XCTAssertEqual(a[0].angle, 30); XCTAssertEqual(a[0].cleanCategoryId, 4)
        XCTAssertFalse(a[0].isIgnored); XCTAssertTrue(a[1].isIgnored)
        XCTAssertTrue(d.annotations(forImage: 2)[0].isIgnored)
    }

    func err(_ json: String) -> String {
        do { _ = try COCODataset.parse(Data(json.utf8), file: "val.json"); return "no error" } catch { return "\(error)" }
    }

    func testMalformedJSONNamesLineAndColumn() {
        let bad = "{\n  \"images\": [],\n  \"annotations\": [1, 2,\n   x],\n  \"categories\": []\n}"
        let e = err(bad)
        XCTAssertTrue(e.hasPrefix("val.json: malformed JSON at line 4, column"), e)
    }

    func testMissingKeysAndWrongTypesNameTheKeyPath() {
        XCTAssertTrue(err(good.replacingOccurrences(of: "\"bbox\": [4, 5, 20, 10], ", with: "")).contains("annotations[0].bbox"))
        XCTAssertTrue(err(good.replacingOccurrences(of: "\"width\": 64", with: "\"width\": \"wide\"")).contains("images[0].width"))
        XCTAssertTrue(err("{\"images\": [], \"annotations\": []}").contains("categories"))
    }

    func testInvalidBoxesAndReferences() {
        XCTAssertTrue(err(good.replacingOccurrences(of: "[4, 5, 20, 10]", with: "[50, 5, 20, 10]")).contains("lies outside image 1 (64x48)"))
        XCTAssertTrue(err(good.replacingOccurrences(of: "[4, 5, 20, 10]", with: "[4, 5, 0, 10]")).contains("non-positive"))
        XCTAssertTrue(err(good.replacingOccurrences(of: "[4, 5, 20, 10]", with: "[4, 5, 20]")).contains("4 finite numbers"))
        XCTAssertTrue(err(good.replacingOccurrences(of: "\"image_id\": 2", with: "\"image_id\": 9")).contains("image_id 9 is not in images"))
        XCTAssertTrue(err(good.replacingOccurrences(of: "\"category_id\": 3", with: "\"category_id\": 7")).contains("category_id 7"))
        XCTAssertTrue(err(good.replacingOccurrences(of: "\"id\": 11", with: "\"id\": 10")).contains("duplicate annotation id"))
        XCTAssertTrue(err(good.replacingOccurrences(of: "\"clean_category_id\": 4", with: "\"clean_category_id\": 99")).contains("clean_category_id 99"))
    }

    func testMissingFile() {
        XCTAssertThrowsError(try COCODataset.load("/nonexistent/train.json")) { XCTAssertTrue("\($0)".contains("does not exist")) }
    }
}

final class COCOSkipTests: XCTestCase {
    func testSkipInvalidDropsAndReportsBadAnnotations() throws {
        let json = """
        {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3]},
                         {"id": 2, "image_id": 1, "category_id": 1, "bbox": [8, 8, 5, 5]},
                         {"id": 3, "image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2]},
                         {"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 1, -2, 2]}],
         "categories": [{"id": 1, "name": "x"}]}
        """
        XCTAssertThrowsError(try COCODataset.parse(Data(json.utf8), file: "t.json"))
        let (d, skipped) = try COCODataset.parse(Data(json.utf8), file: "t.json", skipInvalid: true)
        XCTAssertEqual(d.annotations.map(\.id), [1])
        XCTAssertEqual(skipped.count, 3)
        XCTAssertTrue(skipped[0].contains("(id 2)") && skipped[0].contains("outside"), skipped[0])
        XCTAssertTrue(skipped[1].contains("category_id 9"))
    }
}
