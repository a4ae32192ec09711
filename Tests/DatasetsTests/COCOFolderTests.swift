import XCTest
import Foundation
@testable import Datasets

/// `COCOSource` on real folders: ignore regions, image ids, file names that try to leave `images/`,
/// and bad annotations end to end through the loader.
final class COCOFolderTests: XCTestCase {
    var root = ""
    let fm = FileManager.default

    override func setUpWithError() throws {
        root = fm.temporaryDirectory.appendingPathComponent("qat-coco-src-\(getpid())-\(UUID().uuidString.prefix(8))").path
        for d in ["images/sub", "annotations", "outside"] { try fm.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true) }
        for f in ["images/a.png", "images/sub/b.png", "outside/secret.png"] {
            try ImageCodec.writePNG(Image(width: 64, height: 48, channels: 3, fill: 7), to: root + "/" + f)
        }
    }

    override func tearDownWithError() throws { try? fm.removeItem(atPath: root) }

    /// Writes annotations/<split>.json with the given images (id, file_name) and annotation objects.
    func write(_ split: String = "train", images: [(Int, String)] = [(1, "a.png"), (2, "sub/b.png")], annotations: [String]) throws {
        let ims = images.map { "{\"id\": \($0.0), \"file_name\": \"\($0.1)\", \"width\": 64, \"height\": 48}" }.joined(separator: ", ")
        let json = "{\"images\": [\(ims)], \"annotations\": [\(annotations.joined(separator: ", "))], "
            + "\"categories\": [{\"id\": 5, \"name\": \"A320\"}, {\"id\": 3, \"name\": \"B737\"}]}"
        try json.write(toFile: root + "/annotations/\(split).json", atomically: true, encoding: .utf8)
    }

    func ann(_ id: Int, image: Int = 1, category: Int = 5, _ bbox: [Double], extra: String = "") -> String {
        "{\"id\": \(id), \"image_id\": \(image), \"category_id\": \(category), \"bbox\": \(bbox)\(extra)}"
    }

    func error(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    func testCrowdAndIgnoredBoxesBecomeIgnoreRegions() throws {
        try write(annotations: [ann(1, [4, 5, 20, 10]), ann(2, category: 3, [30, 5, 10, 10]), ann(3, [0, 20, 30, 20], extra: ", \"iscrowd\": 1"),
                                ann(4, image: 2, [1, 2, 3, 4], extra: ", \"ignore\": 1")])
        let src = try COCOSource(root: root, split: "train")
        let a = try src.sample(0), b = try src.sample(1)
        XCTAssertEqual(a.imageId, 1); XCTAssertEqual(b.imageId, 2)
        XCTAssertEqual(a.boxes, [[4, 5, 20, 10], [30, 5, 10, 10]])
        XCTAssertEqual(a.labels, [1, 0], "labels index the categories sorted by id (3 -> 0, 5 -> 1)")
        XCTAssertEqual(a.ignoreBoxes, [[0, 20, 30, 20]])
        XCTAssertEqual(b.boxes, []); XCTAssertEqual(b.ignoreBoxes, [[1, 2, 3, 4]])
        XCTAssertEqual(src.skipped, [])
        // The chips (classification) path still cuts only the two real objects.
        let chips = root + "/chips.h5"
        XCTAssertEqual(try Chips.write(cocoRoot: root, split: "train", size: 8, to: chips), 2)
    }

    func testFileNamesLeavingTheImagesFolderAreRefused() throws {
        try write(images: [(1, "a.png"), (7, "../outside/secret.png")], annotations: [])
        let dotdot = error { _ = try COCOSource(root: root, split: "train") }
        XCTAssertTrue(dotdot.hasPrefix(root + "/annotations/train.json: image id 7: file_name '../outside/secret.png' contains '..'"), dotdot)
        XCTAssertTrue(dotdot.contains("relative to that folder"), dotdot)

        try write(images: [(8, root + "/outside/secret.png")], annotations: [])
        let absolute = error { _ = try COCOSource(root: root, split: "train") }
        XCTAssertTrue(absolute.contains("annotations/train.json: image id 8") && absolute.contains("is an absolute path"), absolute)

        // A symlink inside images/ that points out of it (the name looks harmless).
        try fm.createSymbolicLink(atPath: root + "/images/link.png", withDestinationPath: root + "/outside/secret.png")
        try write(images: [(1, "a.png"), (9, "link.png")], annotations: [])
        let link = error { _ = try COCOSource(root: root, split: "train") }
        XCTAssertTrue(link.contains("annotations/train.json: image id 9: file_name 'link.png' resolves to") && link.contains("symbolic link"), link)
        // A directory symlink escaping is caught the same way.
        try fm.createSymbolicLink(atPath: root + "/images/out", withDestinationPath: root + "/outside")
        try write(images: [(10, "out/secret.png")], annotations: [])
        XCTAssertTrue(error { _ = try COCOSource(root: root, split: "train") }.contains("image id 10"))

        // Links that stay inside, and subfolders, are fine; missing files keep their message.
        try fm.createSymbolicLink(atPath: root + "/images/alias.png", withDestinationPath: root + "/images/sub/b.png")
        try write(images: [(1, "alias.png"), (2, "sub/b.png")], annotations: [ann(1, [1, 1, 5, 5])])
        XCTAssertEqual(try COCOSource(root: root, split: "train").sample(0).boxes, [[1, 1, 5, 5]])
        try write(images: [(3, "nothere.png")], annotations: [])
        XCTAssertTrue(error { _ = try COCOSource(root: root, split: "train") }.contains("nothere.png: is listed in annotations/train.json (image id 3) but missing"))
    }

    func testBadAnnotationsAreErrorsOrSkippedNeverCrashes() throws {
        // Outside the image: the COCODataset message, through the source; skipInvalid drops and reports it.
        try write(annotations: [ann(1, [1, 1, 5, 5]), ann(2, [60, 40, 10, 10])])
        let outside = error { _ = try COCOSource(root: root, split: "train") }
        XCTAssertTrue(outside.contains("annotations[1] (id 2): bbox [60.0, 40.0, 10.0, 10.0] lies outside image 1 (64x48); clip it or drop the annotation"), outside)
        let skipping = try COCOSource(root: root, split: "train", skipInvalid: true)
        XCTAssertEqual(skipping.skipped.count, 1); XCTAssertTrue(skipping.skipped[0].contains("(id 2)"))
        XCTAssertEqual(try skipping.sample(0).boxes, [[1, 1, 5, 5]])
        // Zero-size boxes: an error, or skipped.
        try write(annotations: [ann(1, [1, 1, 0, 5]), ann(2, [1, 1, 5, 5])])
        XCTAssertTrue(error { _ = try COCOSource(root: root, split: "train") }.contains("non-positive width or height"))
        XCTAssertEqual(try COCOSource(root: root, split: "train", skipInvalid: true).sample(0).boxes, [[1, 1, 5, 5]])
        // A category id not in categories: an error naming it, or skipped.
        try write(annotations: [ann(1, category: 4, [1, 1, 5, 5])])
        XCTAssertTrue(error { _ = try COCOSource(root: root, split: "train") }.contains("annotations[0] (id 1): category_id 4 is not in categories"))
        XCTAssertEqual(try COCOSource(root: root, split: "train", skipInvalid: true).sample(0).boxes, [])
    }

    func testImagesWithoutBoxesManyBoxesAndSubPixelBoxesThroughTheLoader() throws {
        // Image 1: 300 boxes (a 20 x 15 grid of 3 x 3 px boxes); image 2: none; plus a 0.4 px wide box.
        var anns: [String] = []
        for k in 0..<300 { anns.append(ann(k + 1, category: k % 2 == 0 ? 5 : 3, [Double(k % 20) * 3, Double(k / 20) * 3, 3, 3])) }
        anns.append(ann(301, [62, 40, 0.4, 5]))
        try write(annotations: anns)
        let src = try COCOSource(root: root, split: "train")
        XCTAssertEqual(try src.sample(0).boxes.count, 301); XCTAssertEqual(try src.sample(1).boxes.count, 0)
        var c = Loader.Config(); c.batchSize = 2; c.size = 64; c.shuffle = false
        let b = try Loader(src, config: c).makeBatch(epoch: 0, indices: [0, 1])
        XCTAssertEqual(b.boxes[0].count, 300, "every box of at least 1 px survives")
        XCTAssertEqual(b.labels[0], (0..<300).map { $0 % 2 == 0 ? 1 : 0 })
        XCTAssertEqual(b.boxes[0][299], [57, 8 + 42, 3, 3], "64 x 48 letterboxed into 64: dy 8")
        XCTAssertEqual(b.boxes[1], []); XCTAssertEqual(b.labels[1], [])
        XCTAssertEqual(b.droppedBoxes, 1, "the 0.4 px box")
        XCTAssertEqual(b.imageIds, [1, 2])
    }
}
