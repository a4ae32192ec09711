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
        let (l, m) = Augment.letterbox(s, size: 40)
        XCTAssertEqual(m, Letterbox(scale: 2, dx: 0, dy: 8, originalWidth: 20, originalHeight: 12))
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

    /// The bright rectangle is an ignore region (no objects): every geometric augmentation must move it
    /// exactly as it moves boxes.
    func testIgnoreRegionsMoveExactlyLikeBoxes() {
        let b = sample()
        let s = Sample(image: b.image, ignoreBoxes: b.boxes, imageId: 42)
        var p = Augment.Policy(); p.scaleCrop = 1; p.scaleRange = (1, 1)
        var outs = [Augment.flipHorizontal(s), Augment.flipVertical(s), Augment.rotate90(s, quarterTurns: 1),
                    Augment.rotate90(s, quarterTurns: 3), Augment.resize(s, width: 40, height: 24), Augment.letterbox(s, size: 40).sample]
        for seed in 0..<12 { var rng = RNG(seed: UInt64(seed)); outs.append(Augment.apply(p, to: s, rng: &rng)) }
        for (i, t) in outs.enumerated() {
            XCTAssertTrue(t.boxes.isEmpty && t.labels.isEmpty, "case \(i)")
            XCTAssertEqual(t.imageId, 42, "case \(i)")
            XCTAssertEqual(t.ignoreBoxes.count, 1, "case \(i)")
            let bb = brightBox(t.image)
            for k in 0..<4 { XCTAssertEqual(t.ignoreBoxes[0][k], bb[k], accuracy: 1, "case \(i)") }
        }
        // The same geometry applied to a sample carrying the rectangle as both: identical numbers.
        let both = Sample(image: b.image, boxes: b.boxes, labels: [7], ignoreBoxes: b.boxes)
        for t in [Augment.flipHorizontal(both), Augment.flipVertical(both), Augment.rotate90(both, quarterTurns: 1),
                  Augment.resize(both, width: 33, height: 17), Augment.letterbox(both, size: 37).sample] {
            XCTAssertEqual(t.ignoreBoxes, t.boxes)
        }
    }

    func testCropTurnsCutBoxesIntoIgnoreRegions() {
        var s = sample()   // box [3, 2, 6, 4]
        s.ignoreBoxes = [[12, 2, 4, 4], [0, 10, 2, 2]]
        // Window x 7..17, y 0..8: the box keeps 2 of 6 columns (1/3 < 0.5): an ignore region now.
        let c = Augment.crop(s, x: 7, y: 0, width: 10, height: 8, minVisible: 0.5)
        XCTAssertTrue(c.boxes.isEmpty); XCTAssertTrue(c.labels.isEmpty)
        // cut box [0, 2, 2, 4]; first ignore region clipped to the window; the second is outside: gone.
        XCTAssertEqual(c.ignoreBoxes, [[0, 2, 2, 4], [5, 2, 4, 4]])
        // A box thinner than one pixel after the cut is an ignore region too, however visible.
        let t = Augment.crop(Sample(image: s.image, boxes: [[6.5, 2, 1, 4]], labels: [1]), x: 7, y: 0, width: 10, height: 8, minVisible: 0.1)
        XCTAssertTrue(t.boxes.isEmpty); XCTAssertEqual(t.ignoreBoxes, [[0, 2, 0.5, 4]])
        // A box wholly outside the window is not in the picture: neither object nor ignore region.
        let u = Augment.crop(s, x: 10, y: 0, width: 10, height: 8)
        XCTAssertTrue(u.boxes.isEmpty); XCTAssertEqual(u.ignoreBoxes, [[2, 2, 4, 4]])
        // Fully visible boxes stay objects (classification chips' full-frame box survives every crop size).
        let v = Augment.crop(s, x: 2, y: 1, width: 10, height: 8)
        XCTAssertEqual(v.boxes, [[1, 1, 6, 4]]); XCTAssertEqual(v.labels, [7])
    }

    func testClipDropsAndCountsDegenerateBoxes() {
        let img = Image(width: 20, height: 10, channels: 3)
        let s = Sample(image: img, boxes: [[-2, 1, 5, 3], [4, 4, 0.5, 3], [19.5, 2, 3, 3], [30, 2, 3, 3], [5, 5, 2, 2]], labels: [0, 1, 2, 3, 4],
                       ignoreBoxes: [[-5, -5, 3, 3], [18, 8, 5, 5]])
        let (c, dropped) = Augment.clip(s, x: 0, y: 0, width: 20, height: 10)
        XCTAssertEqual(c.boxes, [[0, 1, 3, 3], [5, 5, 2, 2]]); XCTAssertEqual(c.labels, [0, 4])
        XCTAssertEqual(dropped, 3, "0.5 px wide, 0.5 px left inside, wholly outside")
        XCTAssertEqual(c.ignoreBoxes, [[18, 8, 2, 2]])
    }

    func testLetterboxMapsBackToTheOriginalImage() {
        // 301 x 203 into 256: the short side rounds (203 * 256 / 301 = 172.6 -> 173), so the exact
        // vertical factor differs from the nominal scale; the mapping must use the rounded size.
        let m = Letterbox(originalWidth: 301, originalHeight: 203, size: 256)
        XCTAssertEqual(m.width, 256); XCTAssertEqual(m.height, 173); XCTAssertEqual(m.dx, 0); XCTAssertEqual(m.dy, 41)
        XCTAssertEqual(m.scale, 256.0 / 301, accuracy: 1e-15)
        for b in [[0.0, 0, 301, 203], [10.5, 20.25, 30, 40], [290, 190, 11, 13]] {
            let back = m.toOriginal(m.toInput(b))
            for k in 0..<4 { XCTAssertEqual(back[k], b[k], accuracy: 1e-9) }
        }
        // Predictions reaching into the padding are clipped to the image; one wholly in it has no area.
        XCTAssertEqual(m.toOriginal([-10, 30, 30, 300]), [0, 0, 20 * 301.0 / 256, 203])
        XCTAssertEqual(m.toOriginal([10, 0, 20, 30])[3], 0)
        // The letterboxed pixels agree with the mapping: the bright rectangle maps back to where it was.
        let s = sample(w: 61, h: 37, box: [13, 9, 17, 11])
        let (l, lm) = Augment.letterbox(s, size: 50)
        XCTAssertEqual(lm, Letterbox(originalWidth: 61, originalHeight: 37, size: 50))
        XCTAssertEqual(l.boxes[0], lm.toInput(s.boxes[0]))
        let seen = lm.toOriginal(brightBox(l.image))
        for k in 0..<4 { XCTAssertEqual(seen[k], s.boxes[0][k], accuracy: 2) }
        // An image already at the input size is not touched.
        let (same, id) = Augment.letterbox(sample(w: 16, h: 16, box: [1, 1, 4, 4]), size: 16)
        XCTAssertEqual(id, Letterbox(scale: 1, dx: 0, dy: 0, originalWidth: 16, originalHeight: 16)); XCTAssertEqual(same.boxes, [[1, 1, 4, 4]])
    }
}
