// libFuzzer harness: bytes as a DOTA v1 label file through DOTALabel.parse, then DOTA-style tiling
// (Tiling.tiles) of an image whose size comes from the input's first two bytes, compiled against the
// Datasets module by scripts/fuzz.sh. Beyond "no crash", it traps when
// - anything but DataError escapes;
// - a parsed object has a non-finite or non-positive box;
// - a tile leaves the image, or an object or ignore region of a tile is empty, non-finite or outside
//   its tile (what the detector's targets rely on).
import Foundation
import Datasets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDOTA(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let buf = UnsafeBufferPointer(start: data, count: size)
    // Image 1...2048 px a side, patches of 256 with a gap of 64: several tiles, edge-aligned last ones.
    let w = 1 + (size > 0 ? Int(buf[0]) * 8 : 0), h = 1 + (size > 1 ? Int(buf[1]) * 8 : 0)
    let text = String(decoding: buf, as: UTF8.self)
    let label: DOTALabel
    do { label = try DOTALabel.parse(text, file: "fuzz.txt") } catch is DataError { return 0 } catch {
        fatalError("DOTALabel.parse threw \(type(of: error)), not DataError: \(error)")
    }
    for o in label.objects {
        let b = o.bbox
        guard b.allSatisfy(\.isFinite), b[2] > 0, b[3] > 0 else { fatalError("line \(o.line): box \(b) from corners \(o.corners)") }
    }
    let tiles: [Tiling.Tile]
    do { tiles = try Tiling.tiles(imageWidth: w, imageHeight: h, objects: label.objects, size: 256, gap: 64) } catch {
        fatalError("Tiling.tiles threw on valid settings: \(error)")
    }
    for t in tiles {
        guard t.x >= 0, t.y >= 0, t.width > 0, t.height > 0, t.x + t.width <= w, t.y + t.height <= h else { fatalError("tile \(t) outside \(w)x\(h)") }
        for b in t.objects.map(\.bbox) + t.ignoreBoxes {
            guard b.allSatisfy(\.isFinite), b[2] > 0, b[3] > 0, b[0] >= 0, b[1] >= 0,
                  b[0] + b[2] <= Double(t.width) + 1e-9, b[1] + b[3] <= Double(t.height) + 1e-9 else {
                fatalError("box \(b) outside tile \(t.width)x\(t.height)")
            }
        }
    }
    return 0
}
