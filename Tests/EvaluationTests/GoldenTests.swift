import XCTest
import Foundation
import Datasets
@testable import Evaluation

/// Every case of scripts/golden/cocoeval.py (pycocotools 2.0.11 and the VOC devkit formula), read
/// through the same file readers the CLI uses.
final class GoldenTests: XCTestCase {
    /// The case's ground truth and results files, parsed by the readers the CLI uses.
    func load(_ c: Expected) throws -> (COCODataset, [DetectionResult]) {
        let gt = try COCODataset.parse(Data(c.gt.utf8), file: "\(c.name)/gt.json")
        return (gt, try COCOResults.parse(Data(c.results.utf8), file: "\(c.name)/results.json", groundTruth: gt))
    }

    /// JSONDecoder, not JSONSerialization: the latter reads some decimals as NSDecimalNumber and loses the last bit.
    struct Expected: Decodable {
        struct PerClass: Decodable {
            struct VOC: Decodable { var all: Double?; var voc07: Double? }
            var category_id: Int; var ap: Double; var ap50: Double; var voc_ap50: VOC
        }
        var name: String
        var gt: String
        var results: String
        var stats: [Double]
        var agnostic_stats: [Double]
        var per_class: [PerClass]
        var recall: [Double]
        var pr50: [[Double]]
        var precision: [Double]?
        var summary: String?
    }
    struct File: Decodable { var iou_thresholds: [Double]; var recall_thresholds: [Double]; var cases: [Expected] }

    static let expected: File = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/cocoeval_golden.json")
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url))
    }()

    func testThresholdsAreNumpysBitForBit() {
        XCTAssertEqual(COCOParams.iouThresholds, Self.expected.iou_thresholds)
        XCTAssertEqual(COCOParams.recallThresholds, Self.expected.recall_thresholds)
        XCTAssertEqual(COCOParams.iouThresholds[8], 0.8999999999999999)
        XCTAssertEqual(COCOParams.iouThresholds[5], 0.75)
    }

    func testEveryCaseMatchesPycocotoolsAndTheVOCDevkit() throws {
        XCTAssertGreaterThanOrEqual(Self.expected.cases.count, 24)
        var maxDiff = 0.0, compared = 0
        func check(_ got: Double?, _ want: Double?, _ what: @autoclosure () -> String) {
            compared += 1
            switch (got, want) {
            case (nil, nil): return
            case let (g?, w?):
                maxDiff = max(maxDiff, abs(g - w))
                XCTAssertEqual(g, w, accuracy: 1e-4, what())
            default: XCTFail("\(what()): got \(String(describing: got)), want \(String(describing: want))")
            }
        }
        for want in Self.expected.cases {
            let (gt, res) = try load(want)
            let name = want.name
            let r = try COCOEval.evaluate(gt, res)
            XCTAssertEqual(r.categoryIds, want.per_class.map(\.category_id), name)
            for (n, s) in want.stats.enumerated() { check(r.stats[n], s, "\(name) stats[\(n)] \(COCOEvalResult.statNames[n])") }
            for (k, p) in want.per_class.enumerated() {
                check(r.perClass[k].ap, p.ap == -1 ? nil : p.ap, "\(name) class \(p.category_id) AP")
                check(r.perClass[k].ap50, p.ap50 == -1 ? nil : p.ap50, "\(name) class \(p.category_id) AP50")
                let curve = r.precisionRecallCurve(category: k)
                if p.ap50 == -1 { XCTAssertNil(curve, name) } else {
                    XCTAssertEqual(curve?.recall, COCOParams.recallThresholds)
                    for (i, v) in want.pr50[k].enumerated() { check(curve?.precision[i], v, "\(name) class \(p.category_id) pr50[\(i)]") }
                }
            }
            XCTAssertEqual(r.recall.count, want.recall.count, name)
            for (i, v) in want.recall.enumerated() { check(r.recall[i], v, "\(name) recall[\(i)]") }
            if let full = want.precision {
                XCTAssertEqual(r.precision.count, full.count, name)
                for (i, v) in full.enumerated() { check(r.precision[i], v, "\(name) precision[\(i)]") }
            }
            if let text = want.summary { XCTAssertEqual(r.summary(), text, name) }

            let agnostic = try COCOEval.evaluate(gt, res, classAgnostic: true)
            XCTAssertEqual(agnostic.categoryIds, [COCOEvalResult.allCategories])
            for (n, s) in want.agnostic_stats.enumerated() { check(agnostic.stats[n], s, "\(name) class-agnostic stats[\(n)]") }

            for (method, key) in [(VOCEval.Method.allPoint, "all"), (.elevenPoint, "voc07")] {
                let voc = try VOCEval.evaluate(gt, res, iouThreshold: 0.5, method: method)
                for (k, p) in want.per_class.enumerated() {
                    XCTAssertEqual(voc.classes[k].categoryId, p.category_id)
                    check(voc.classes[k].ap, key == "all" ? p.voc_ap50.all : p.voc_ap50.voc07, "\(name) class \(p.category_id) VOC AP50 \(key)")
                }
            }
        }
        print("GoldenTests: \(Self.expected.cases.count) cases, \(compared) numbers, max |difference| to pycocotools/devkit = \(maxDiff)")
    }
}
