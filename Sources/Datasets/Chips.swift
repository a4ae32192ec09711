import Foundation
import CHDF5
import HDF5
import Files

/// Single-aircraft classification chips for fast QAT experiments: every (non-ignored) box of a COCO
/// split cropped as a square window (1.2 x its longest side, centred, zero-padded at image borders),
/// resized to `size` x `size`, stored as HDF5: `images` uint8 [N, size, size, 3], `labels` int64 [N]
/// (0-based category index, the possibly noisy label) and `clean_labels` int64 [N].
public enum Chips {
    /// The largest chip side (recipes' `Cap.chipSize`).
    public static let maxSize = 256

    /// Checks a chip size, and that the chips of `scenes` synthetic scenes (each with up to
    /// `SyntheticAircraft.Config.maxAircraftPerScene` aircraft) fit what `HDF5ClassificationSource`
    /// reads, before any scene is rendered. Errors name `qat data synth`'s flags.
    public static func validate(size: Int, scenes: Int) throws {
        guard (8...maxSize).contains(size) else {
            throw DataError(file: "--chip-size", "must be 8...\(maxSize) px (the cap on the chip side), got \(size)")
        }
        let (perScene, o1) = (size * size * 3).multipliedReportingOverflow(by: SyntheticAircraft.Config.maxAircraftPerScene)
        let (bound, o2) = perScene.multipliedReportingOverflow(by: max(scenes, 0))
        guard !o1, !o2, bound <= HDF5ClassificationSource.maxImageBytes else {
            throw DataError(file: "--chip-size", "\(scenes) scenes x up to \(SyntheticAircraft.Config.maxAircraftPerScene) aircraft x \(size)x\(size)x3 bytes can exceed the "
                            + "\(HDF5ClassificationSource.maxImageBytes) bytes (4 GiB) a chips file may hold; use fewer --images or a smaller --chip-size")
        }
    }

    /// Writes the chips file atomically (temporary file + rename). Returns the number of chips.
    @discardableResult
    public static func write(cocoRoot: String, split: String, size: Int = 48, to path: String) throws -> Int {
        guard (1...maxSize).contains(size) else { throw DataError(file: path, "chip size must be 1...\(maxSize) px, got \(size)") }
        let src = try COCOSource(root: cocoRoot, split: split)
        // The pixels are gathered in memory before the file is written: count first, allocate after.
        let boxes = src.dataset.annotations.filter { !$0.isIgnored }.count
        guard boxes <= HDF5ClassificationSource.maxImageBytes / (size * size * 3) else {
            throw DataError(file: cocoRoot + "/annotations/\(split).json", "\(boxes) boxes as \(size)x\(size) chips exceed the \(HDF5ClassificationSource.maxImageBytes) bytes "
                            + "a chips file may hold; use a smaller chip size")
        }
        var pixels: [UInt8] = [], labels: [Int64] = [], clean: [Int64] = []
        pixels.reserveCapacity(boxes * size * size * 3)
        for (i, info) in src.dataset.images.enumerated() {
            let img = try src.sample(i).image
            for a in src.dataset.annotations(forImage: info.id) where !a.isIgnored {
                let side = max(a.bbox[2], a.bbox[3]) * 1.2
                let cx = a.bbox[0] + a.bbox[2] / 2, cy = a.bbox[1] + a.bbox[3] / 2
                let x0 = Int((cx - side / 2).rounded()), y0 = Int((cy - side / 2).rounded()), s = max(1, Int(side.rounded()))
                var win = Image(width: s, height: s, channels: 3)
                for y in 0..<s { for x in 0..<s {
                    let sx = x0 + x, sy = y0 + y
                    guard sx >= 0, sy >= 0, sx < img.width, sy < img.height else { continue }
                    for k in 0..<3 { win.pixels[win.index(x: x, y: y, c: k)] = img.pixels[img.index(x: sx, y: sy, c: k)] }
                }}
                pixels += Augment.resize(Sample(image: win), width: size, height: size).image.pixels
                labels.append(Int64(src.categoryIndex[a.categoryId]!))
                clean.append(Int64(src.categoryIndex[a.cleanCategoryId ?? a.categoryId] ?? src.categoryIndex[a.categoryId]!))
            }
        }
        let n = labels.count
        guard n > 0 else { throw DataError(file: cocoRoot + "/annotations/\(split).json", "has no boxes to cut chips from") }
        // The writer builds the file in memory and writes `path` atomically (temporary file + rename); as
        // a command's output it never replaces a checkpoint, recipe or metrics file.
        let w = try H5Writer(creating: path)
        let root = try w.group("/")
        try pixels.withUnsafeBytes { try w.array(root, "images", shape: [n, size, size, 3], type: qat_H5T_NATIVE_UINT8(), $0.baseAddress!) }
        try labels.withUnsafeBytes { try w.array(root, "labels", shape: [n], type: qat_H5T_NATIVE_INT64(), $0.baseAddress!) }
        try clean.withUnsafeBytes { try w.array(root, "clean_labels", shape: [n], type: qat_H5T_NATIVE_INT64(), $0.baseAddress!) }
        try w.attr(root, "classes", string: src.dataset.categories.sorted { $0.id < $1.id }.map(\.name).joined(separator: "\n"))
        try w.commit(replacing: .outputsOnly)
        return n
    }
}

/// An HDF5 classification set (`images` uint8 [N, H, W, C], `labels` int [N], optional `clean_labels`)
/// as a `SampleSource`: each sample is the whole image with one full-frame box carrying its label.
public struct HDF5ClassificationSource: SampleSource {
    public let images: [UInt8]
    public let shape: [Int]
    public let labels: [Int]
    public let cleanLabels: [Int]?
    public let classes: [String]
    public var count: Int { shape[0] }

    /// Caps on what a file may declare, checked before anything is allocated: image sides up to 8192
    /// pixels and 2^32 bytes of pixels (4 GiB) per file.
    public static let maxSide = 8192
    public static let maxImageBytes = 1 << 32

    /// `maxImageBytes`: a tighter cap for callers that know their data is smaller (the fuzzer).
    public init(path: String, maxImageBytes: Int = HDF5ClassificationSource.maxImageBytes) throws {
        // In the qat command, a child process reads the file first (libhdf5 crashes on crafted files).
        try H5Sandbox.vet(path, kind: "hdf5_chips", arguments: ["\(maxImageBytes)"])
        let r = try H5Reader(opening: path)
        let root = try r.group("/")
        // The shape first, from the dataspace alone: only a plausible [N, H, W, C] gets a buffer.
        let s = try r.shape(root, "images", type: qat_H5T_NATIVE_UINT8(), where: "/images", maxElements: maxImageBytes)
        guard s.count == 4, [1, 3, 4].contains(s[3]), (1...Self.maxSide).contains(s[1]), (1...Self.maxSide).contains(s[2]) else {
            throw DataError(file: path, "/images must be uint8 [N, H, W, C] with C in {1, 3, 4} and sides of 1...\(Self.maxSide) pixels, has shape \(s)")
        }
        let (_, px) = try r.array(root, "images", type: qat_H5T_NATIVE_UINT8(), where: "/images", maxElements: maxImageBytes, expected: s)
        func ints(_ name: String) throws -> [Int] {
            let (_, b) = try r.array(root, name, type: qat_H5T_NATIVE_INT64(), where: "/" + name, expected: [s[0]])
            return b.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)).map(Int.init) }
        }
        images = px; shape = s
        labels = try ints("labels")
        cleanLabels = r.exists("/clean_labels") ? try ints("clean_labels") : nil
        classes = r.hasAttr(root, "classes") ? (try r.string(root, "classes")).split(separator: "\n").map(String.init) : []
        for (name, values) in [("labels", labels), ("clean_labels", cleanLabels ?? [])] {
            if let bad = values.first(where: { $0 < 0 || (!classes.isEmpty && $0 >= classes.count) }) {
                throw DataError(file: path, "/\(name) holds \(bad), outside 0..<\(classes.isEmpty ? "N" : "\(classes.count)")")
            }
        }
    }

    public func sample(_ i: Int) throws -> Sample {
        let (h, w, c) = (shape[1], shape[2], shape[3])
        let n = h * w * c
        let img = Image(width: w, height: h, channels: c, pixels: Array(images[(i * n)..<((i + 1) * n)]))
        return Sample(image: img, boxes: [[0, 0, Double(w), Double(h)]], labels: [labels[i]])
    }
}
