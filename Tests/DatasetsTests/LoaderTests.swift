import XCTest
import Kernels
@testable import Datasets

/// Samples whose pixels encode their index, with one box each.
struct CountingSource: SampleSource {
    var count: Int
    var failAt: Int? = nil
    func sample(_ i: Int) throws -> Sample {
        if i == failAt { throw DataError(file: "img\(i).png", "cannot decode PNG: corrupt") }
        let img = Image(width: 16, height: 8, channels: 3, fill: UInt8(i))
        return Sample(image: img, boxes: [[2, 1, 4, 3]], labels: [i % 5])
    }
}

/// 160 x 80 images: an object that survives the 16 px letterbox (scale 0.1), one that shrinks below a
/// pixel, an ignore region; every third image has no objects at all. Image ids are 1000 + index.
struct DetectionSource: SampleSource {
    var count: Int
    func sample(_ i: Int) throws -> Sample {
        let img = Image(width: 160, height: 80, channels: 3, fill: 50)
        if i % 3 == 0 { return Sample(image: img, imageId: 1000 + i) }
        return Sample(image: img, boxes: [[20, 10, 40, 30], [100, 50, 5, 5]], labels: [1, 2], ignoreBoxes: [[120, 0, 40, 20]], imageId: 1000 + i)
    }
}

final class LoaderTests: XCTestCase {
    func config() -> Loader.Config {
        var c = Loader.Config(); c.batchSize = 4; c.size = 16; c.mean = [0, 0, 0]; c.std = [1, 1, 1]; c.seed = 9
        return c
    }

    func drain(_ l: Loader, epoch: Int) throws -> [Batch] {
        let it = l.epoch(epoch)
        var out: [Batch] = []
        while let b = try it.next() { out.append(b) }
        return out
    }

    func testEpochCoversEverySampleOnceInASeededOrder() throws {
        let l = try Loader(CountingSource(count: 10), config: config())
        let e0 = try drain(l, epoch: 0), again = try drain(l, epoch: 0), e1 = try drain(l, epoch: 1)
        XCTAssertEqual(e0.map(\.indices.count), [4, 4, 2])
        XCTAssertEqual(e0.flatMap(\.indices).sorted(), Array(0..<10))
        XCTAssertEqual(e0.flatMap(\.indices), again.flatMap(\.indices))
        XCTAssertNotEqual(e0.flatMap(\.indices), e1.flatMap(\.indices))
        // Pixels follow the index (letterbox: 16x8 -> 16x16 with rows 4..11 holding the image).
        let b = e0[0]
        XCTAssertEqual(b.shape, [4, 3, 16, 16])
        XCTAssertEqual(b.images.pointer[5 * 16 + 3], Float(b.indices[0]))
        XCTAssertEqual(b.boxes[0], [[2, 5, 4, 3]])
        var d = config(); d.dropLast = true
        XCTAssertEqual(try drain(try Loader(CountingSource(count: 10), config: d), epoch: 0).count, 2)
    }

    func testAugmentedBatchesAreReproducible() throws {
        var c = config(); c.policy = Augment.Policy()
        let a = try drain(try Loader(CountingSource(count: 8), config: c), epoch: 3)
        let b = try drain(try Loader(CountingSource(count: 8), config: c), epoch: 3)
        XCTAssertEqual(a.map(\.boxes), b.map(\.boxes))
        XCTAssertEqual(a.map { $0.images.array }, b.map { $0.images.array })
    }

    func testDecodeErrorsSurfaceFromTheBackgroundThread() throws {
        var c = config(); c.shuffle = false
        let it = try Loader(CountingSource(count: 10, failAt: 5), config: c).epoch(0)
        XCTAssertNotNil(try it.next())
        XCTAssertThrowsError(try it.next()) { XCTAssertTrue("\($0)".contains("img5.png")) }
        // An abandoned iterator is released (its worker holds it only weakly).
        weak var abandoned: Loader.EpochIterator?
        do {
            let it2 = try Loader(CountingSource(count: 40), config: config()).epoch(0)
            _ = try it2.next()
            abandoned = it2
        }
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertNil(abandoned)
        var bad = config(); bad.std = [1, 0, 1]
        XCTAssertThrowsError(try Loader(CountingSource(count: 1), config: bad))
    }

    func testBatchCarriesDetectionTargetsAndTheMappingBack() throws {
        var c = config(); c.shuffle = false; c.batchSize = 3
        let l = try Loader(DetectionSource(count: 6), config: c)
        let b = try l.makeBatch(epoch: 0, indices: [0, 1, 2])
        XCTAssertEqual(b.imageIds, [1000, 1001, 1002])
        let m = Letterbox(scale: 0.1, dx: 0, dy: 4, originalWidth: 160, originalHeight: 80)
        XCTAssertEqual(b.letterboxes, [m, m, m])
        XCTAssertEqual(b.boxes[0], []); XCTAssertEqual(b.labels[0], []); XCTAssertEqual(b.ignoreBoxes[0], [])
        for k in 1...2 {
            XCTAssertEqual(b.labels[k], [1], "the 5 px object is 0.5 px at input size: dropped")
            for (x, y) in zip(b.boxes[k][0], [2.0, 5, 4, 3]) { XCTAssertEqual(x, y, accuracy: 1e-12) }
            for (x, y) in zip(b.ignoreBoxes[k][0], [12.0, 4, 4, 2]) { XCTAssertEqual(x, y, accuracy: 1e-12) }
            let back = b.letterboxes[k].toOriginal(b.boxes[k][0])
            for (x, y) in zip(back, [20.0, 10, 40, 30]) { XCTAssertEqual(x, y, accuracy: 1e-9) }
        }
        XCTAssertEqual(b.droppedBoxes, 2)
        // A source without ids: the sample index stands in.
        XCTAssertEqual(try Loader(CountingSource(count: 5), config: c).makeBatch(epoch: 0, indices: [4, 2]).imageIds, [4, 2])
        // With augmentation the targets stay inside the image part of the input and at least 1 px.
        var a = c; a.policy = Augment.Policy(); a.policy!.scaleCrop = 1; a.size = 64
        for batch in try drain(try Loader(DetectionSource(count: 12), config: a), epoch: 1) {
            XCTAssertEqual(batch.boxes.map(\.count), batch.labels.map(\.count))
            for (boxes, lb) in zip(batch.boxes, batch.letterboxes) {
                for x in boxes {
                    XCTAssertTrue(x[2] >= 1 && x[3] >= 1 && x[0] >= Double(lb.dx) && x[1] >= Double(lb.dy), "\(x)")
                    XCTAssertTrue(x[0] + x[2] <= Double(lb.dx + lb.width) + 1e-9 && x[1] + x[3] <= Double(lb.dy + lb.height) + 1e-9, "\(x)")
                }
            }
        }
    }
}
