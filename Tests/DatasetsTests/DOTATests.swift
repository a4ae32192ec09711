import XCTest
import Foundation
@testable import Datasets

final class DOTATests: XCTestCase {
    let text = """
    imagesource:GoogleEarth
    gsd:0.146343590398

    10 10 30 10 30 20 10 20 plane 0
    100 50 120 40 130 60 110 70 large-vehicle 1
    """

    func testParsesHeaderObjectsAndAxisAlignedBoxes() throws {
        let l = try DOTALabel.parse(text, file: "P0001.txt")
        XCTAssertEqual(l.imageSource, "GoogleEarth")
        XCTAssertEqual(l.gsd!, 0.146343590398, accuracy: 1e-12)
        XCTAssertEqual(l.objects.count, 2)
        XCTAssertEqual(l.objects[0].bbox, [10, 10, 20, 10])
        XCTAssertEqual(l.objects[1].bbox, [100, 40, 30, 30])
        XCTAssertTrue(l.objects[1].difficult); XCTAssertFalse(l.objects[0].difficult)
        XCTAssertNil(try DOTALabel.parse("gsd:null\n", file: "x").gsd)
    }

    func testErrorsNameFileAndLine() {
        func e(_ t: String) -> String { do { _ = try DOTALabel.parse(t, file: "P9.txt"); return "" } catch { return "\(error)" } }
        XCTAssertTrue(e("1 2 3 4 plane").hasPrefix("P9.txt: line 1: expected"))
        XCTAssertTrue(e("\n1 2 3 4 5 6 7 x plane 0").contains("line 2: the first 8 fields must be numbers"))
        XCTAssertTrue(e("1 1 1 1 1 1 1 1 plane 0").contains("degenerate"))
        XCTAssertTrue(e("0 0 1 0 1 1 0 1 plane 7").contains("difficult must be 0, 1 or 2"))
        // Found by fuzz/dota: finite corners whose box width overflows to infinity.
        XCTAssertTrue(e("-1e308 0 1e308 0 1e308 10 -1e308 10 plane 0").contains("line 1: the corners are too far apart"))
        XCTAssertTrue(e("0 -1e308 10 -1e308 10 1e308 0 1e308 plane").contains("too far apart"))
        XCTAssertThrowsError(try DOTALabel.load("/nonexistent/P1.txt")) { XCTAssertTrue("\($0)".contains("does not exist")) }
    }

    func testTilingCoversTheImageWithOverlapAndKeepsVisibleBoxes() throws {
        XCTAssertEqual(Tiling.origins(2500, size: 1024, stride: 824), [0, 824, 1476])
        XCTAssertEqual(Tiling.origins(900, size: 1024, stride: 824), [0])
        // Box A fully inside the first patch; box B straddles x = 1024 (the first patch's right edge), 50% visible there.
        let objs = [DOTALabel.Object(corners: [100, 100, 140, 100, 140, 120, 100, 120], category: "plane", difficult: false),
                    DOTALabel.Object(corners: [1004, 10, 1044, 10, 1044, 30, 1004, 30], category: "plane", difficult: false)]
        let tiles = try Tiling.tiles(imageWidth: 2000, imageHeight: 1000, objects: objs, size: 1024, gap: 200, minVisible: 0.5)
        // The DOTA devkit's walk: 0, 824, then the last patch flush with the right edge at 976.
        XCTAssertEqual(tiles.map(\.x), [0, 824, 976]); XCTAssertEqual(tiles.map(\.height), [1000, 1000, 1000])
        XCTAssertEqual(tiles[0].objects.count, 2)
        XCTAssertEqual(tiles[0].objects[1].bbox, [1004, 10, 20, 20]); XCTAssertTrue(tiles[0].objects[1].difficult)
        XCTAssertEqual(tiles[1].objects.count, 1)
        XCTAssertEqual(tiles[1].objects[0].bbox, [180, 10, 40, 20]); XCTAssertFalse(tiles[1].objects[0].difficult)
        XCTAssertEqual(tiles[2].objects.map(\.bbox), [[28, 10, 40, 20]])
        XCTAssertThrowsError(try Tiling.tiles(imageWidth: 10, imageHeight: 10, objects: [], size: 100, gap: 100))
        var img = Image(width: 6, height: 4, channels: 1)
        for i in 0..<24 { img.pixels[i] = UInt8(i) }
        let c = Tiling.crop(img, Tiling.Tile(x: 2, y: 1, width: 3, height: 2, objects: []))
        XCTAssertEqual(c.pixels, [8, 9, 10, 14, 15, 16])
    }

    func testImageFolderSortsClassesAndReportsEmptyOnes() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("qat-folder-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for c in ["b-747", "a-320"] { try FileManager.default.createDirectory(atPath: root + "/" + c, withIntermediateDirectories: true) }
        let png = try ImageCodec.encodePNG(Image(width: 2, height: 2, channels: 3))
        for f in ["a-320/2.png", "a-320/1.png", "b-747/x.jpg", "b-747/notes.txt"] { FileManager.default.createFile(atPath: root + "/" + f, contents: png) }
        let f = try ImageFolder.scan(root)
        XCTAssertEqual(f.classes, ["a-320", "b-747"])
        XCTAssertEqual(f.samples.map { ($0.path as NSString).lastPathComponent }, ["1.png", "2.png", "x.jpg"])
        XCTAssertEqual(f.samples.map(\.label), [0, 0, 1])
        try FileManager.default.createDirectory(atPath: root + "/c-empty", withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFolder.scan(root)) { XCTAssertTrue("\($0)".contains("c-empty")) }
        XCTAssertThrowsError(try ImageFolder.scan(root + "/missing"))
    }
}

final class DOTASourceTests: XCTestCase {
    func testFolderIsTiledIntoSamples() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("qat-dota-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for d in ["images", "labelTxt"] { try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true) }
        try ImageCodec.writePNG(Image(width: 300, height: 200, channels: 3, fill: 90), to: root + "/images/P0001.png")
        try "gsd:0.5\n10 10 40 10 40 30 10 30 plane 0\n250 150 280 150 280 170 250 170 ship 0\n".write(toFile: root + "/labelTxt/P0001.txt", atomically: true, encoding: .utf8)
        let src = try DOTASource(root: root, tile: 200, gap: 50)
        XCTAssertEqual(src.categories, ["plane", "ship"])
        XCTAssertEqual(src.patches.map(\.tile.x), [0, 100])
        let s0 = try src.sample(0)
        XCTAssertEqual(s0.image.width, 200); XCTAssertEqual(s0.labels, [0]); XCTAssertEqual(s0.boxes, [[10, 10, 30, 20]])
        XCTAssertEqual(try src.sample(1).labels, [1])
        XCTAssertThrowsError(try DOTASource(root: root, categories: ["plane"])) { XCTAssertTrue("\($0)".contains("unknown category 'ship'")) }
        try FileManager.default.removeItem(atPath: root + "/labelTxt/P0001.txt")
        XCTAssertThrowsError(try DOTASource(root: root)) { XCTAssertTrue("\($0)".contains("P0001.txt")) }
    }

    func dir(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("qat-dota-\(name)-\(getpid())-\(UUID().uuidString.prefix(8))").path
    }

    func makeSplit(_ root: String, _ split: String, labels: [String: String], width: Int = 300, height: Int = 200) throws {
        for d in ["images", "labelTxt"] { try FileManager.default.createDirectory(atPath: "\(root)/\(split)/\(d)", withIntermediateDirectories: true) }
        for (stem, text) in labels {
            try ImageCodec.writePNG(Image(width: width, height: height, channels: 3, fill: 90), to: "\(root)/\(split)/images/\(stem).png")
            try text.write(toFile: "\(root)/\(split)/labelTxt/\(stem).txt", atomically: true, encoding: .utf8)
        }
    }

    func testSplitsShareTheTrainCategoriesAndUnknownOnesNameFileAndLine() throws {
        let root = dir("splits")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeSplit(root, "train", labels: ["P1": "10 10 40 10 40 30 10 30 plane 0\n50 50 80 50 80 70 50 70 ship 0\n60 10 90 10 90 30 60 30 harbor 0\n"])
        try makeSplit(root, "val", labels: ["P2": "imagesource:x\n10 10 40 10 40 30 10 30 ship 0\n"])
        let train = try DOTASource(root: root, split: "train", tile: 256, gap: 64)
        XCTAssertEqual(train.categories, ["harbor", "plane", "ship"])
        // On its own, val would call ship category 0; with train's list it is 2 there too.
        XCTAssertEqual(try DOTASource(root: root, split: "val", tile: 256, gap: 64).categories, ["ship"])
        let val = try DOTASource(root: root, split: "val", tile: 256, gap: 64, categories: train.categories)
        XCTAssertEqual(try val.sample(0).labels, [2])
        try makeSplit(root, "test", labels: ["P3": "gsd:0.3\n10 10 40 10 40 30 10 30 plane 0\n\n50 50 80 50 80 70 50 70 helicopter 0\n"])
        do { _ = try DOTASource(root: root, split: "test", categories: train.categories); XCTFail("unknown category accepted") } catch {
            XCTAssertEqual("\(error)", "\(root)/test/labelTxt/P3.txt: line 4: unknown category 'helicopter'; known: harbor, plane, ship. "
                           + "Every split must use one list: pass the train split's categories to the others, or fix the label")
        }
        XCTAssertThrowsError(try DOTASource(root: root, split: "tset")) { XCTAssertTrue("\($0)".contains("/tset: does not exist; a DOTA dataset holds one folder per split")) }
        XCTAssertThrowsError(try DOTASource(root: root, split: "train", categories: ["plane", "ship", "plane", "harbor"])) {
            XCTAssertTrue("\($0)".contains("must not repeat"))
        }
    }

    func testDifficultAndCutObjectsBecomeIgnoreRegions() throws {
        let root = dir("ignore")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // 300 x 200 in tiles of 200 with gap 50: tiles at x 0 and 100. Objects: a plane (clean), a
        // difficult ship, a plane straddling x = 200 with 20 of 40 columns in tile 0 (50% < 70%: cut
        // below minVisible) and a plane at x 185..205 with 75% in tile 0 (kept by the devkit, marked
        // difficult because it was cut).
        let labels = """
        10 10 40 10 40 30 10 30 plane 0
        50 100 80 100 80 120 50 120 ship 1
        180 150 220 150 220 170 180 170 plane 0
        185 50 205 50 205 70 185 70 plane 0
        """
        try makeSplit(root, "train", labels: ["P0001": labels])
        let src = try DOTASource(root: root, split: "train", tile: 200, gap: 50)
        XCTAssertEqual(src.patches.map(\.tile.x), [0, 100])
        let s0 = try src.sample(0), s1 = try src.sample(1)
        XCTAssertEqual(s0.imageId, 0); XCTAssertEqual(s1.imageId, 1)
        XCTAssertEqual(s0.boxes, [[10, 10, 30, 20]]); XCTAssertEqual(s0.labels, [0])
        XCTAssertEqual(s0.ignoreBoxes, [[180, 150, 20, 20], [50, 100, 30, 20], [185, 50, 15, 20]])
        XCTAssertEqual(src.patches[0].tile.ignoreBoxes, [[180, 150, 20, 20]])
        // In tile 1 (x 100..300) both right-hand planes are whole.
        XCTAssertEqual(s1.boxes, [[80, 150, 40, 20], [85, 50, 20, 20]]); XCTAssertEqual(s1.ignoreBoxes, [])
    }

    func testImagesAndLabelsLinkedFromOutsideAreRefused() throws {
        let root = dir("links")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeSplit(root, "train", labels: ["P1": "10 10 40 10 40 30 10 30 plane 0\n"])
        try makeSplit(root, "elsewhere", labels: ["Q1": "10 10 40 10 40 30 10 30 plane 0\n"])
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: root + "/train/images/P2.png", withDestinationPath: root + "/elsewhere/images/Q1.png")
        try fm.createSymbolicLink(atPath: root + "/train/labelTxt/P2.txt", withDestinationPath: root + "/train/labelTxt/P1.txt")
        XCTAssertThrowsError(try DOTASource(root: root, split: "train")) {
            XCTAssertTrue("\($0)".hasPrefix(root + "/train/images/P2.png: resolves to ") && "\($0)".contains("symbolic link"), "\($0)")
        }
        // The image inside, the label linked from outside.
        try fm.removeItem(atPath: root + "/train/images/P2.png"); try fm.removeItem(atPath: root + "/train/labelTxt/P2.txt")
        try ImageCodec.writePNG(Image(width: 30, height: 30, channels: 3), to: root + "/train/images/P2.png")
        try fm.createSymbolicLink(atPath: root + "/train/labelTxt/P2.txt", withDestinationPath: root + "/elsewhere/labelTxt/Q1.txt")
        XCTAssertThrowsError(try DOTASource(root: root, split: "train")) { XCTAssertTrue("\($0)".hasPrefix(root + "/train/labelTxt/P2.txt: resolves to "), "\($0)") }
        // Links inside the split are fine.
        try fm.removeItem(atPath: root + "/train/labelTxt/P2.txt")
        try fm.createSymbolicLink(atPath: root + "/train/labelTxt/P2.txt", withDestinationPath: root + "/train/labelTxt/P1.txt")
        XCTAssertEqual(try DOTASource(root: root, split: "train").count, 2)
    }
}
