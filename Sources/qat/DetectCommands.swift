import ArgumentParser
import Foundation
import Datasets
import Evaluation
import Training

struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect", abstract: "Object detection: score detections against ground truth.",
        subcommands: [Score.self])

    struct Score: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "score",
            abstract: "COCO bbox metrics of a results file, equal to pycocotools' COCOeval: the 12-line summary and per-class AP / AP50.")

        @Argument(help: "Ground truth: a COCO annotation file (images with id, file_name, width, height; annotations; categories).")
        var groundTruth: String
        @Argument(help: "Detections: a COCO results file, [{\"image_id\", \"category_id\", \"bbox\": [x, y, w, h], \"score\"}, ...].")
        var results: String
        @Flag(help: "Count every category as one (pycocotools' useCats=0): does it find the objects at all, whatever their type?")
        var classAgnostic = false
        @Option(name: .customLong("merge-iou"), help: ArgumentHelp(
            "With --class-agnostic: first merge each image's detections across classes by class-agnostic NMS at this IoU (one box per object, its best score), as `qat eval` does for agnostic_map50 at the recipe's detector.test.nms_iou.",
            valueName: "iou"))
        var mergeIoU: Double?
        @Flag(help: "Print one JSON object (stats by name, per-class AP and AP50; null where a class has no ground truth).")
        var json = false

        func validate() throws {
            if let m = mergeIoU {
                guard classAgnostic else { throw ValidationError("--merge-iou merges detections across classes and is only meaningful with --class-agnostic") }
                guard m.isFinite, m >= 0, m <= 1 else { throw ValidationError("--merge-iou \(m): expected an IoU in [0, 1], e.g. 0.5") }
            }
        }

        func run() throws {
            let clock = ContinuousClock(), start = clock.now
            let (gt, detections) = try guarded { () throws -> (COCODataset, [DetectionResult]) in
                let gt = try COCODataset.load(groundTruth)
                let loaded = try COCOResults.load(results, groundTruth: gt)
                return (gt, mergeIoU.map { ClassAgnosticMerge.merge(loaded, iouThreshold: $0) } ?? loaded)
            }
            let loaded = clock.now
            let r = try COCOEval.evaluate(gt, detections, classAgnostic: classAgnostic)
            let readSeconds = (loaded - start) / .seconds(1), evalSeconds = (clock.now - loaded) / .seconds(1)

            let names = Dictionary(uniqueKeysWithValues: gt.categories.map { ($0.id, $0.name) })
            var gtCount: [Int: Int] = [:], detCount: [Int: Int] = [:]
            for a in gt.annotations where (a.iscrowd ?? 0) == 0 { gtCount[r.isClassAgnostic ? COCOEvalResult.allCategories : a.categoryId, default: 0] += 1 }
            for d in detections { detCount[r.isClassAgnostic ? COCOEvalResult.allCategories : d.categoryId, default: 0] += 1 }
            let rows = r.perClass.map { c in
                Row(categoryId: c.categoryId, name: r.isClassAgnostic ? "(all categories)" : names[c.categoryId] ?? "?",
                    groundTruth: gtCount[c.categoryId, default: 0], detections: detCount[c.categoryId, default: 0], ap: c.ap, ap50: c.ap50)
            }
            if json {
                let report = Report(groundTruth: groundTruth, results: results, classAgnostic: classAgnostic, mergeIoU: mergeIoU, images: r.imageIds.count,
                                    detections: detections.count, stats: r.stats, classes: rows)
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try enc.encode(report), as: UTF8.self))
                return
            }
            print(r.summary(), terminator: "")
            print("\nPer class (area all, maxDets 100; AP over IoU 0.50:0.95, AP50 at IoU 0.50; gt counts non-crowd boxes):")
            let width = max(8, rows.map(\.name.count).max() ?? 0)
            print("  " + "id".leftPad(6) + "  " + "category".rightPad(width) + "gt".leftPad(8) + "dets".leftPad(8) + "AP".leftPad(8) + "AP50".leftPad(8))
            for row in rows {
                func f(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "-" }
                print("  " + String(row.categoryId).leftPad(6) + "  " + row.name.rightPad(width) + String(row.groundTruth).leftPad(8)
                      + String(row.detections).leftPad(8) + f(row.ap).leftPad(8) + f(row.ap50).leftPad(8))
            }
            print(String(format: "\n%d images, %d detections: files read in %.3f s, evaluated in %.3f s",
                         r.imageIds.count, detections.count, readSeconds, evalSeconds))
        }
    }

    struct Row: Encodable {
        var categoryId: Int, name: String, groundTruth: Int, detections: Int, ap: Double?, ap50: Double?
        enum CodingKeys: String, CodingKey { case categoryId = "category_id", name, groundTruth = "ground_truth", detections, ap, ap50 }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(categoryId, forKey: .categoryId); try c.encode(name, forKey: .name)
            try c.encode(groundTruth, forKey: .groundTruth); try c.encode(detections, forKey: .detections)
            try c.encode(ap, forKey: .ap); try c.encode(ap50, forKey: .ap50)  // null, not omitted, when undefined
        }
    }

    struct Report: Encodable {
        var groundTruth: String, results: String, classAgnostic: Bool, mergeIoU: Double?, images: Int, detections: Int, stats: [Double], classes: [Row]
        enum CodingKeys: String, CodingKey {
            case groundTruth = "ground_truth", results, classAgnostic = "class_agnostic", mergeIoU = "merge_iou", images, detections, stats, classes
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(groundTruth, forKey: .groundTruth); try c.encode(results, forKey: .results)
            try c.encode(classAgnostic, forKey: .classAgnostic); try c.encode(mergeIoU, forKey: .mergeIoU)   // null without a merge
            try c.encode(images, forKey: .images)
            try c.encode(detections, forKey: .detections); try c.encode(classes, forKey: .classes)
            // pycocotools' -1 ("no ground truth in this range") as null.
            let named = Dictionary(uniqueKeysWithValues: zip(COCOEvalResult.statNames, stats.map { $0 == -1 ? nil : $0 }))
            try c.encode(named, forKey: .stats)
        }
    }
}

private extension String {
    func leftPad(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
    func rightPad(_ n: Int) -> String { self + String(repeating: " ", count: max(0, n - count)) }
}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Run a detector checkpoint on images: PNGs with boxes, type names and scores drawn, and a COCO results file.")

    @Argument(help: "Detector checkpoint written by qat train on a detection recipe (e.g. runs/NAME/1/checkpoints/best.h5).")
    var checkpoint: String
    @Argument(help: "Images (.png, .jpg) or folders of images.")
    var inputs: [String]
    @Option(help: "Output folder: one PNG per image, results.json (COCO results) and images.json (image ids and categories).")
    var out: String
    @Option(help: "Draw and write detections with at least this score.")
    var score = 0.3
    @Option(help: "int8: run the quantized detector's dense part on the integer engine.")
    var engine: String?

    func run() throws {
        guard !inputs.isEmpty else { throw ValidationError("name at least one image or folder") }
        if let engine, engine != "int8" { throw ValidationError("--engine takes int8 (the integer engine); leave it out for the fake-quant model, got \(engine)") }
        _ = try guarded { try Prediction.run(checkpoint: checkpoint, inputs: inputs, out: out, score: score, int8: engine != nil) }
    }
}
