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
}
