import XCTest
import Kernels
@testable import Datasets

final class AugmentTests: XCTestCase {
    /// A black image with one white rectangle and its box.
    func sample(w: Int = 20, h: Int = 12, box: [Int] = [3, 2, 6, 4]) -> Sample {
        var img = Image(width: w, height: h, channels: 3)
        for y in box[1]..<(box[1] + box[3]) { for x in box[0]..<(box[0] + box[2]) { for k in 0..<3 { img.pixels[img.index(x: x, y: y, c: k)] = 255 } } }
        return Sample(image: img, boxes: [box.map(Double.init)], labels: [7])
    }

    /// Bounding box [x, y, w, h] of the bright pixels.
    func brightBox(_ img: Image) -> [Double] {
        var x0 = Int.max, y0 = Int.max, x1 = -1, y1 = -1
        for y in 0..<img.height { for x in 0..<img.width where img.pixels[img.index(x: x, y: y, c: 0)] > 127 {
            x0 = min(x0, x); y0 = min(y0, y); x1 = max(x1, x); y1 = max(y1, y)
        }}
        return [Double(x0), Double(y0), Double(x1 - x0 + 1), Double(y1 - y0 + 1)]
    }

    func testFlipsAndRotationsMoveBoxesWithPixels() {
        let s = sample()
        for t in [Augment.flipHorizontal(s), Augment.flipVertical(s), Augment.rotate90(s, quarterTurns: 1),
                  Augment.rotate90(s, quarterTurns: 2), Augment.rotate90(s, quarterTurns: 3), Augment.rotate90(Augment.flipHorizontal(s), quarterTurns: 1)] {
            XCTAssertEqual(t.boxes[0], brightBox(t.image)); XCTAssertEqual(t.labels, [7])
        }
        let r = Augment.rotate90(s, quarterTurns: 1)
        XCTAssertEqual([r.image.width, r.image.height], [12, 20])
        XCTAssertEqual(Augment.rotate90(s, quarterTurns: 4), s)
    }

    func testResizeCropAndLetterbox() {
        let s = sample()
        let r = Augment.resize(s, width: 40, height: 24)
        XCTAssertEqual(r.boxes[0], [6, 4, 12, 8])
        let bb = brightBox(r.image)
        for i in 0..<4 { XCTAssertEqual(bb[i], r.boxes[0][i], accuracy: 1) }
        let c = Augment.crop(s, x: 5, y: 1, width: 10, height: 8, minVisible: 0.3)
        XCTAssertEqual(c.boxes, [[0, 1, 4, 4]]); XCTAssertEqual(c.boxes[0], brightBox(c.image))
        XCTAssertTrue(Augment.crop(s, x: 7, y: 0, width: 10, height: 8, minVisible: 0.5).boxes.isEmpty, "a box with 1/3 visible is dropped")
        let (l, k, dx, dy) = Augment.letterbox(s, size: 40)
        XCTAssertEqual(k, 2); XCTAssertEqual(dx, 0); XCTAssertEqual(dy, 8)
        XCTAssertEqual(l.boxes[0], [6, 12, 12, 8])
        XCTAssertEqual(l.image.pixels[0], 114)
    }

    func testRandomPolicyIsDeterministicAndKeepsBoxesConsistent() {
        var p = Augment.Policy(); p.scaleCrop = 1; p.colorJitter = 1; p.scaleRange = (1, 1)
        let s = sample(w: 24, h: 24, box: [4, 6, 8, 5])
        var r1 = RNG(seed: 3), r2 = RNG(seed: 3)
        let a = Augment.apply(p, to: s, rng: &r1), b = Augment.apply(p, to: s, rng: &r2)
        XCTAssertEqual(a, b)
        var seen = Set<[Double]>()
        for seed in 0..<20 {
            var rng = RNG(seed: UInt64(seed))
            var q = Augment.Policy(); q.colorJitter = 0
            let t = Augment.apply(q, to: s, rng: &rng)
            XCTAssertEqual(t.boxes[0], brightBox(t.image), "seed \(seed)")
            seen.insert(t.boxes[0])
        }
        XCTAssertGreaterThan(seen.count, 3, "the policy should produce several distinct placements")
        var rng = RNG(seed: 1)
        let j = Augment.colorJitter(s, brightness: 0.2, contrast: 0.2, saturation: 0.2, rng: &rng)
        XCTAssertEqual(j.boxes, s.boxes); XCTAssertNotEqual(j.image, s.image)
    }
}
