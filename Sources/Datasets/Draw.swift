import Foundation

/// Drawing for `qat data show`: box outlines and labels in a built-in 5x7 bitmap font (a-z, 0-9, '-').
public enum Draw {
    static let glyphs: [Character: [UInt8]] = [
        "a": [0, 0, 14, 1, 15, 17, 15], "b": [16, 16, 22, 25, 17, 17, 30], "c": [0, 0, 14, 16, 16, 17, 14],
        "d": [1, 1, 13, 19, 17, 17, 15], "e": [0, 0, 14, 17, 31, 16, 14], "f": [6, 9, 8, 28, 8, 8, 8],
        "g": [0, 15, 17, 17, 15, 1, 14], "h": [16, 16, 22, 25, 17, 17, 17], "i": [4, 0, 12, 4, 4, 4, 14],
        "j": [2, 0, 6, 2, 2, 18, 12], "k": [16, 16, 18, 20, 24, 20, 18], "l": [12, 4, 4, 4, 4, 4, 14],
        "m": [0, 0, 26, 21, 21, 17, 17], "n": [0, 0, 22, 25, 17, 17, 17], "o": [0, 0, 14, 17, 17, 17, 14],
        "p": [0, 0, 30, 17, 30, 16, 16], "q": [0, 0, 13, 19, 15, 1, 1], "r": [0, 0, 22, 25, 16, 16, 16],
        "s": [0, 0, 14, 16, 14, 1, 30], "t": [8, 8, 28, 8, 8, 9, 6], "u": [0, 0, 17, 17, 17, 19, 13],
        "v": [0, 0, 17, 17, 17, 10, 4], "w": [0, 0, 17, 17, 21, 21, 10], "x": [0, 0, 17, 10, 4, 10, 17],
        "y": [0, 0, 17, 17, 15, 1, 14], "z": [0, 0, 31, 2, 4, 8, 31],
        "0": [14, 17, 19, 21, 25, 17, 14], "1": [4, 12, 4, 4, 4, 4, 14], "2": [14, 17, 1, 2, 4, 8, 31],
        "3": [31, 2, 4, 2, 1, 17, 14], "4": [2, 6, 10, 18, 31, 2, 2], "5": [31, 16, 30, 1, 1, 17, 14],
        "6": [6, 8, 16, 30, 17, 17, 14], "7": [31, 1, 2, 4, 8, 8, 8], "8": [14, 17, 17, 14, 17, 17, 14],
        "9": [14, 17, 17, 15, 1, 2, 12], "-": [0, 0, 0, 31, 0, 0, 0],
    ]

    static func set(_ img: inout Image, _ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < img.width, y < img.height, img.channels >= 3 else { return }
        let i = img.index(x: x, y: y, c: 0)
        img.pixels[i] = c.0; img.pixels[i + 1] = c.1; img.pixels[i + 2] = c.2
    }

    public static func box(_ img: inout Image, _ b: [Double], color: (UInt8, UInt8, UInt8)) {
        let x0 = Int(b[0].rounded()), y0 = Int(b[1].rounded()), x1 = Int((b[0] + b[2]).rounded()), y1 = Int((b[1] + b[3]).rounded())
        for x in x0...max(x0, x1) { set(&img, x, y0, color); set(&img, x, y1, color) }
        for y in y0...max(y0, y1) { set(&img, x0, y, color); set(&img, x1, y, color) }
    }

    /// Text with a dark background strip; unknown characters draw as blanks.
    public static func text(_ img: inout Image, _ s: String, x: Int, y: Int, color: (UInt8, UInt8, UInt8)) {
        let chars = Array(s.lowercased())
        for yy in (y - 1)..<(y + 8) { for xx in (x - 1)..<(x + chars.count * 6) { set(&img, xx, yy, (20, 20, 20)) } }
        for (k, ch) in chars.enumerated() {
            guard let g = glyphs[ch] else { continue }
            for (r, bits) in g.enumerated() { for col in 0..<5 where bits & (16 >> col) != 0 { set(&img, x + k * 6 + col, y + r, color) } }
        }
    }

    /// Nearest-neighbour upscaling (labels stay crisp).
    public static func upscale(_ img: Image, _ k: Int) -> Image {
        guard k > 1 else { return img }
        var out = Image(width: img.width * k, height: img.height * k, channels: img.channels)
        for y in 0..<out.height { for x in 0..<out.width { for c in 0..<img.channels {
            out.pixels[out.index(x: x, y: y, c: c)] = img.pixels[img.index(x: x / k, y: y / k, c: c)]
        }}}
        return out
    }

    /// `qat data show`: image `id` of a COCO folder with its boxes and category names drawn.
    public static func show(dir: String, imageId: Int, scale: Int = 2) throws -> Image {
        for s in ["train", "val", "test"] {
            let path = dir + "/annotations/\(s).json"
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let d = try COCODataset.load(path)
            guard let info = d.images.first(where: { $0.id == imageId }) else { continue }
            var img = upscale(try ImageCodec.decode(file: dir + "/images/" + info.fileName, channels: 3), scale)
            let names = Dictionary(uniqueKeysWithValues: d.categories.map { ($0.id, $0.name) })
            let palette: [(UInt8, UInt8, UInt8)] = [(255, 80, 80), (80, 220, 80), (80, 160, 255), (255, 200, 40), (220, 80, 220), (40, 220, 220)]
            for a in d.annotations(forImage: imageId) {
                let col = palette[a.categoryId % palette.count]
                let b = a.bbox.map { $0 * Double(scale) }
                box(&img, b, color: col)
                var label = names[a.categoryId] ?? "\(a.categoryId)"
                if let c = a.cleanCategoryId, c != a.categoryId { label += "-noisy" }
                text(&img, label, x: Int(b[0]), y: max(1, Int(b[1]) - 9), color: col)
            }
            return img
        }
        throw DataError(file: dir, "has no image with id \(imageId) in annotations/{train,val,test}.json")
    }
}
