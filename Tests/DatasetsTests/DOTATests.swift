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
}
