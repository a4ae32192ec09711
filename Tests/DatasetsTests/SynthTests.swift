import XCTest
import Foundation
import Kernels
@testable import Datasets

final class SynthTests: XCTestCase {
    func tmp(_ name: String) -> String { FileManager.default.temporaryDirectory.appendingPathComponent("qat-synth-\(getpid())-\(name)").path }

    func testGeneratesValidDeterministicCOCOWithTrainOnlyNoise() throws {
        var c = SyntheticAircraft.Config()
        c.images = 20; c.size = 96; c.seed = 4; c.labelNoise = 0.5; c.noiseMode = .similar; c.minLength = 12; c.maxLength = 40
        let a = tmp("a"), b = tmp("b")
        defer { try? FileManager.default.removeItem(atPath: a); try? FileManager.default.removeItem(atPath: b) }
        let s = try SyntheticAircraft.generate(c, to: a)
        try SyntheticAircraft.generate(c, to: b)
        XCTAssertEqual(s.images, 20); XCTAssertGreaterThan(s.objects, 20)
        for f in ["annotations/train.json", "annotations/val.json", "annotations/test.json", "images/000007.png"] {
            XCTAssertEqual(FileManager.default.contents(atPath: a + "/" + f), FileManager.default.contents(atPath: b + "/" + f), "\(f) differs")
        }
        // The COCO loader's validation accepts every split (boxes inside images, ids consistent).
        let train = try COCODataset.load(a + "/annotations/train.json"), val = try COCODataset.load(a + "/annotations/val.json")
        XCTAssertEqual(train.images.count, 14); XCTAssertEqual(train.categories.count, 12)
        XCTAssertTrue(val.annotations.allSatisfy { $0.categoryId == $0.cleanCategoryId }, "val labels must be clean")
        let noisy = train.annotations.filter { $0.categoryId != $0.cleanCategoryId }
        XCTAssertGreaterThan(noisy.count, 0)
        // "similar" noise only moves a label to a confusable sibling.
        let cat = AircraftType.catalog
        for n in noisy { XCTAssertTrue(cat[n.cleanCategoryId! - 1].siblings.contains(cat[n.categoryId - 1].name)) }
        let img = try ImageCodec.decode(file: a + "/images/000000.png")
        XCTAssertEqual([img.width, img.height, img.channels], [96, 96, 3])
        XCTAssertTrue(try SyntheticAircraft.stats(a).contains("measured label noise"))
        // Refuses to write into a non-empty folder, and bad settings name the flag.
        XCTAssertThrowsError(try SyntheticAircraft.generate(c, to: a)) { XCTAssertTrue("\($0)".contains("not empty")) }
        var bad = c; bad.imbalance = 0.5
        XCTAssertThrowsError(try SyntheticAircraft.generate(bad, to: tmp("c"))) { XCTAssertTrue("\($0)".contains("--imbalance")) }
    }

    func testLongTailWeights() {
        let w = SyntheticAircraft.weights(20)
        XCTAssertEqual(w.count, 12)
        XCTAssertEqual(w[0] / w[11], 20, accuracy: 1e-9)
        XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertEqual(SyntheticAircraft.weights(1)[5], 1.0 / 12, accuracy: 1e-12)
    }

    func testEveryTypeHasAValidSiblingAndDistinctGeometry() {
        let cat = AircraftType.catalog
        XCTAssertEqual(cat.count, 12)
        for t in cat { for s in t.siblings { XCTAssertTrue(cat.contains { $0.name == s }, "\(t.name) -> \(s)") } }
        let sheet = SyntheticAircraft.sampleSheet(cell: 48)
        XCTAssertEqual([sheet.width, sheet.height], [192, 144])
    }
}

final class DrawTests: XCTestCase {
    func testTextAndBoxesChangePixelsWhereExpected() {
        var img = Image(width: 40, height: 20, channels: 3)
        Draw.text(&img, "a1-", x: 2, y: 2, color: (255, 255, 255))
        // 'a' row 2 is 01110: pixels x = 3..5 at y = 4 are lit, x = 2 is not.
        XCTAssertEqual(img.pixels[img.index(x: 3, y: 4, c: 0)], 255)
        XCTAssertEqual(img.pixels[img.index(x: 2, y: 4, c: 0)], 20)
        Draw.box(&img, [10, 10, 5, 5], color: (0, 255, 0))
        XCTAssertEqual(img.pixels[img.index(x: 12, y: 10, c: 1)], 255)
        XCTAssertEqual(img.pixels[img.index(x: 12, y: 12, c: 1)], 0)
        XCTAssertEqual(Draw.upscale(img, 2).width, 80)
        XCTAssertEqual(Draw.glyphs.count, 37)
    }
}

final class COCOSourceTests: XCTestCase {
    func testSynthFolderLoadsThroughTheLoader() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qat-cocosrc-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = SyntheticAircraft.Config(); c.images = 10; c.size = 64; c.minLength = 8; c.maxLength = 24
        try SyntheticAircraft.generate(c, to: dir)
        let src = try COCOSource(root: dir, split: "train")
        XCTAssertEqual(src.count, 7)
        let s = try src.sample(0)
        XCTAssertEqual(s.image.width, 64)
        XCTAssertEqual(s.boxes.count, src.dataset.annotations(forImage: src.dataset.images[0].id).count)
        XCTAssertTrue(s.labels.allSatisfy { (0..<12).contains($0) })
        var cfg = Loader.Config(); cfg.batchSize = 3; cfg.size = 64
        let it = try Loader(src, config: cfg).epoch(0)
        var n = 0
        while let b = try it.next() { n += b.indices.count }
        XCTAssertEqual(n, 7)
        try FileManager.default.removeItem(atPath: dir + "/images/000000.png")
        XCTAssertThrowsError(try COCOSource(root: dir, split: "train")) { XCTAssertTrue("\($0)".contains("000000.png")) }
    }
}

final class ChipsTests: XCTestCase {
    func testChipsRoundTripThroughHDF5() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qat-chips-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = SyntheticAircraft.Config(); c.images = 8; c.size = 64; c.minLength = 8; c.maxLength = 24; c.labelNoise = 0.5
        try SyntheticAircraft.generate(c, to: dir)
        let n = try Chips.write(cocoRoot: dir, split: "train", size: 16, to: dir + "/train.h5")
        let src = try HDF5ClassificationSource(path: dir + "/train.h5")
        XCTAssertEqual(src.count, n)
        XCTAssertEqual(src.shape, [n, 16, 16, 3])
        XCTAssertEqual(src.classes.count, 12); XCTAssertEqual(src.classes[0], "narrowbody-twin")
        let coco = try COCODataset.load(dir + "/annotations/train.json")
        XCTAssertEqual(n, coco.annotations.count)
        XCTAssertEqual(src.labels.count, n); XCTAssertNotNil(src.cleanLabels)
        XCTAssertEqual(zip(src.labels, src.cleanLabels!).filter { $0 != $1 }.count, coco.annotations.filter { $0.categoryId != $0.cleanCategoryId }.count)
        let s = try src.sample(0)
        XCTAssertEqual(s.image.width, 16); XCTAssertEqual(s.labels, [src.labels[0]])
        XCTAssertThrowsError(try HDF5ClassificationSource(path: dir + "/annotations/train.json")) { XCTAssertTrue("\($0)".contains("HDF5")) }
    }
}

final class SynthNoiseRateTests: XCTestCase {
    /// The measured train noise rate is within a few binomial standard deviations of p.
    func testNoiseRateMatchesP() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qat-noise-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = SyntheticAircraft.Config(); c.images = 80; c.size = 64; c.minLength = 6; c.maxLength = 16; c.labelNoise = 0.3; c.seed = 11
        try SyntheticAircraft.generate(c, to: dir)
        let t = try COCODataset.load(dir + "/annotations/train.json")
        let n = Double(t.annotations.count), k = Double(t.annotations.filter { $0.categoryId != $0.cleanCategoryId }.count)
        let sd = (0.3 * 0.7 / n).squareRoot()
        XCTAssertGreaterThan(n, 100)
        XCTAssertEqual(k / n, 0.3, accuracy: 4 * sd)
    }
}
