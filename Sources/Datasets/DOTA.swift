import Foundation
import UserPaths

/// DOTA v1 labels (one text file per image): optional `imagesource:` / `gsd:` header lines, then one
/// object per line: `x1 y1 x2 y2 x3 y3 x4 y4 category difficult`. Boxes are converted to axis-aligned
/// [x, y, w, h] (the quadrilateral's bounding rectangle); the corners are kept for oriented work.
public struct DOTALabel: Sendable, Equatable {
    public struct Object: Sendable, Equatable {
        public var corners: [Double]          // 8 numbers, clockwise from the DOTA file
        public var category: String
        public var difficult: Bool
        /// 1-based line in the label file (0 when made in code), for error messages.
        public var line: Int = 0
        /// Axis-aligned box [x, y, w, h].
        public var bbox: [Double] {
            let xs = stride(from: 0, to: 8, by: 2).map { corners[$0] }, ys = stride(from: 1, to: 8, by: 2).map { corners[$0] }
            let x0 = xs.min()!, y0 = ys.min()!
            return [x0, y0, xs.max()! - x0, ys.max()! - y0]
        }
    }
    public var imageSource: String?
    public var gsd: Double?
    public var objects: [Object]

    /// The largest label file read (a DOTA label is a few KiB).
    public static let maxFileBytes = 64 << 20

    public static func load(_ path: String) throws -> DOTALabel {
        let d: Data
        do { d = try UserFile.read(path, maxBytes: maxFileBytes, what: "label file") } catch let e as PathError { throw DataError(file: path, e.cause) }
        return try parse(String(decoding: d, as: UTF8.self), file: path)
    }

    /// Parses label text; errors name the file and line.
    public static func parse(_ text: String, file: String) throws -> DOTALabel {
        var label = DOTALabel(imageSource: nil, gsd: nil, objects: [])
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty { continue }
            if line.hasPrefix("imagesource:") { label.imageSource = String(line.dropFirst("imagesource:".count)); continue }
            if line.hasPrefix("gsd:") {
                let v = line.dropFirst(4).trimmingCharacters(in: .whitespaces)
                label.gsd = Double(v)   // DOTA files use "gsd:null" where unknown
                continue
            }
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count == 9 || f.count == 10 else {
                throw DataError(file: file, "line \(n + 1): expected 'x1 y1 x2 y2 x3 y3 x4 y4 category difficult', got \(f.count) fields: \(line)")
            }
            let nums = f.prefix(8).map { Double($0) }
            guard nums.allSatisfy({ $0 != nil && $0!.isFinite }) else {
                throw DataError(file: file, "line \(n + 1): the first 8 fields must be numbers, got: \(line)")
            }
            var difficult = false
            if f.count == 10 {
                guard let d = Int(f[9]), d == 0 || d == 1 || d == 2 else {
                    throw DataError(file: file, "line \(n + 1): difficult must be 0, 1 or 2, got '\(f[9])'")
                }
                difficult = d != 0
            }
            let o = Object(corners: nums.map { $0! }, category: String(f[8]), difficult: difficult, line: n + 1)
            let b = o.bbox
            // Finite corners can still be so far apart that the width overflows to infinity (-1e308 and
            // 1e308; fuzz/dota checks it); such a box would poison every IoU and loss downstream.
            guard b[2].isFinite, b[3].isFinite else {
                throw DataError(file: file, "line \(n + 1): the corners are too far apart for a box (its width or height overflows): \(line)")
            }
            guard b[2] > 0, b[3] > 0 else { throw DataError(file: file, "line \(n + 1): degenerate box (zero width or height): \(line)") }
            label.objects.append(o)
        }
        return label
    }
}

/// DOTA-style tiling of large images into overlapping square patches (the DOTA devkit's ImgSplit:
/// patch `size`, overlap `gap`, the last patch of a row or column aligned to the image edge). A box is
/// kept in a patch when at least `minVisible` of its area lies inside; it is clipped to the patch and
/// marked difficult when it was cut. The clipped parts of boxes less visible than that are listed as
/// the tile's `ignoreBoxes` (the devkit drops them; a detector should not learn them as background).
public enum Tiling {
    public struct Tile: Sendable, Equatable {
        public var x: Int, y: Int, width: Int, height: Int
        public var objects: [(bbox: [Double], category: String, difficult: Bool)]
        /// Clipped parts [x, y, w, h] of boxes with less than `minVisible` of their area in the tile.
        public var ignoreBoxes: [[Double]] = []
        public static func == (a: Tile, b: Tile) -> Bool {
            a.x == b.x && a.y == b.y && a.width == b.width && a.height == b.height && a.objects.count == b.objects.count
                && a.ignoreBoxes == b.ignoreBoxes
                && zip(a.objects, b.objects).allSatisfy { $0.bbox == $1.bbox && $0.category == $1.category && $0.difficult == $1.difficult }
        }
    }

    /// Patch origins along one axis of length `n`.
    static func origins(_ n: Int, size: Int, stride: Int) -> [Int] {
        if n <= size { return [0] }
        var o: [Int] = []
        var p = 0
        while true {
            if p + size >= n { o.append(max(n - size, 0)); break }
            o.append(p); p += stride
        }
        return o
    }

    public static func tiles(imageWidth w: Int, imageHeight h: Int, objects: [DOTALabel.Object],
                             size: Int = 1024, gap: Int = 200, minVisible: Double = 0.7) throws -> [Tile] {
        guard size > 0, gap >= 0, gap < size else { throw DataError(file: "(tiling)", "need 0 <= gap < size, got size \(size), gap \(gap)") }
        guard minVisible > 0, minVisible <= 1 else { throw DataError(file: "(tiling)", "minVisible must be in (0, 1], got \(minVisible)") }
        var out: [Tile] = []
        for ty in origins(h, size: size, stride: size - gap) {
            for tx in origins(w, size: size, stride: size - gap) {
                let tw = min(size, w - tx), th = min(size, h - ty)
                var objs: [(bbox: [Double], category: String, difficult: Bool)] = []
                var ignore: [[Double]] = []
                for o in objects {
                    let b = o.bbox
                    let x0 = max(b[0], Double(tx)), y0 = max(b[1], Double(ty))
                    let x1 = min(b[0] + b[2], Double(tx + tw)), y1 = min(b[1] + b[3], Double(ty + th))
                    guard x1 > x0, y1 > y0 else { continue }
                    let visible = (x1 - x0) * (y1 - y0) / (b[2] * b[3])
                    let clipped = [x0 - Double(tx), y0 - Double(ty), x1 - x0, y1 - y0]
                    if visible >= minVisible { objs.append((clipped, o.category, o.difficult || visible < 1)) } else { ignore.append(clipped) }
                }
                out.append(Tile(x: tx, y: ty, width: tw, height: th, objects: objs, ignoreBoxes: ignore))
            }
        }
        return out
    }

    /// Cuts a tile's pixels out of an image.
    public static func crop(_ img: Image, _ t: Tile) -> Image {
        var out = Image(width: t.width, height: t.height, channels: img.channels)
        for y in 0..<t.height {
            let src = img.index(x: t.x, y: t.y + y, c: 0), dst = out.index(x: 0, y: y, c: 0)
            out.pixels.replaceSubrange(dst..<(dst + t.width * img.channels), with: img.pixels[src..<(src + t.width * img.channels)])
        }
        return out
    }
}

/// An image-classification folder: `root/<class name>/<image>.{png,jpg,jpeg}`; classes sorted by name
/// (torchvision's ImageFolder convention), files sorted within a class.
public struct ImageFolder: Sendable, Equatable {
    public var classes: [String]
    public var samples: [(path: String, label: Int)]
    public static func == (a: ImageFolder, b: ImageFolder) -> Bool {
        a.classes == b.classes && a.samples.map(\.path) == b.samples.map(\.path) && a.samples.map(\.label) == b.samples.map(\.label)
    }

    public static func scan(_ root: String) throws -> ImageFolder {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw DataError(file: root, "is not a folder; expected root/<class>/<image>.png")
        }
        let classes = try fm.contentsOfDirectory(atPath: root).filter {
            var d: ObjCBool = false
            return !$0.hasPrefix(".") && fm.fileExists(atPath: root + "/" + $0, isDirectory: &d) && d.boolValue
        }.sorted()
        guard !classes.isEmpty else { throw DataError(file: root, "has no class folders; expected root/<class>/<image>.png") }
        var samples: [(String, Int)] = []
        for (i, c) in classes.enumerated() {
            let files = try fm.contentsOfDirectory(atPath: root + "/" + c).filter {
                ["png", "jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased())
            }.sorted()
            guard !files.isEmpty else { throw DataError(file: root + "/" + c, "class folder has no .png/.jpg images") }
            samples += files.map { (root + "/" + c + "/" + $0, i) }
        }
        return ImageFolder(classes: classes, samples: samples)
    }
}
