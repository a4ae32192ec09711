import Foundation
import UserPaths
import CPNG
import CJPEG
import Files

/// A data-layer failure: which file (and where in it), what is wrong, and how to fix it.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

/// An 8-bit image, rows top to bottom, channels interleaved (1 gray, 3 RGB, 4 RGBA).
public struct Image: Equatable, Sendable {
    public var width: Int, height: Int, channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && [1, 2, 3, 4].contains(channels) && pixels.count == width * height * channels,
                     "Image: \(width)x\(height)x\(channels) needs \(width * height * channels) bytes, got \(pixels.count)")
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
    }

    public init(width: Int, height: Int, channels: Int, fill: UInt8 = 0) {
        self.init(width: width, height: height, channels: channels, pixels: [UInt8](repeating: fill, count: width * height * channels))
    }

    @inline(__always) public func index(x: Int, y: Int, c: Int) -> Int { (y * width + x) * channels + c }
}

/// The NUL-terminated message a C helper wrote.
func cMessage(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// PNG and JPEG through Debian's libpng and libjpeg(-turbo).
public enum ImageCodec {
    public enum Format: Sendable { case png, jpeg }

    /// Recognises the format by its signature (not by the file name).
    public static func format(of data: Data) -> Format? {
        if data.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if data.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    /// The most pixels (width x height) a decoded image may have: 2^29, e.g. 23,170 x 23,170 (DOTA's
    /// largest images are about 20,000 px square). Checked on the header, before any pixel buffer exists.
    public static let maxPixels = 1 << 29

    /// Decodes to `channels` (1 gray or 3 RGB; 4 RGBA for PNG). 16-bit PNGs are reduced to 8 bits.
    /// Images over `maxPixels` are refused from their header.
    public static func decode(_ data: Data, channels: Int = 3, file: String = "(memory)", maxPixels: Int = ImageCodec.maxPixels) throws -> Image {
        guard [1, 3, 4].contains(channels) else { throw DataError(file: file, "channels must be 1, 3 or 4, got \(channels)") }
        guard let fmt = format(of: data) else {
            throw DataError(file: file, "is neither PNG nor JPEG (unknown signature); convert it to PNG or JPEG")
        }
        if fmt == .jpeg && channels == 4 { throw DataError(file: file, "JPEG has no alpha channel; decode with 1 or 3 channels") }
        if fmt == .png, let problem = PNGChunks.problem(data) { throw DataError(file: file, "cannot decode PNG: \(problem)") }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var w: UInt32 = 0, h: UInt32 = 0
        var msg = [CChar](repeating: 0, count: 256)
        let rc: Int32 = data.withUnsafeBytes { raw in
            let p = raw.bindMemory(to: UInt8.self).baseAddress!
            switch fmt {
            case .png: return qat_png_decode(p, data.count, Int32(channels), max(maxPixels, 0), &out, &w, &h, &msg, msg.count)
            case .jpeg: return qat_jpeg_decode(p, data.count, Int32(channels), max(maxPixels, 0), &out, &w, &h, &msg, msg.count)
            }
        }
        guard rc == 0, let out else {
            let reason = cMessage(msg)
            throw DataError(file: file, "cannot decode \(fmt == .png ? "PNG" : "JPEG"): \(reason.isEmpty ? "corrupt or truncated" : reason)")
        }
        defer { free(out) }
        let n = Int(w) * Int(h) * channels
        return Image(width: Int(w), height: Int(h), channels: channels, pixels: Array(UnsafeBufferPointer(start: out, count: n)))
    }

    /// The largest image file read.
    public static let maxFileBytes = 1 << 30

    public static func decode(file path: String, channels: Int = 3) throws -> Image {
        let d: Data
        do { d = try UserFile.read(path, maxBytes: maxFileBytes, what: "image file") } catch let e as PathError { throw DataError(file: path, e.cause) }
        return try decode(d, channels: channels, file: path)
    }

    public static func encodePNG(_ img: Image) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var msg = [CChar](repeating: 0, count: 256)
        let rc = img.pixels.withUnsafeBufferPointer {
            qat_png_encode($0.baseAddress, UInt32(img.width), UInt32(img.height), Int32(img.channels), &out, &size, &msg, msg.count)
        }
        guard rc == 0, let out else { throw DataError(file: "(png encoder)", cMessage(msg)) }
        defer { free(out) }
        return Data(bytes: out, count: size)
    }

    public static func encodeJPEG(_ img: Image, quality: Int = 90) throws -> Data {
        guard img.channels == 1 || img.channels == 3 else { throw DataError(file: "(jpeg encoder)", "JPEG takes 1 or 3 channels, got \(img.channels)") }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var msg = [CChar](repeating: 0, count: 256)
        let rc = img.pixels.withUnsafeBufferPointer {
            qat_jpeg_encode($0.baseAddress, UInt32(img.width), UInt32(img.height), Int32(img.channels), Int32(max(1, min(100, quality))), &out, &size, &msg, msg.count)
        }
        guard rc == 0, let out else { throw DataError(file: "(jpeg encoder)", cMessage(msg)) }
        defer { free(out) }
        return Data(bytes: out, count: size)
    }

    /// Writes a PNG atomically (`AtomicFile`: temporary file + rename); as an output it never replaces a
    /// checkpoint, recipe or metrics file.
    public static func writePNG(_ img: Image, to path: String) throws {
        let d = try encodePNG(img)
        do { try AtomicFile.write(d, to: path) }
        catch let e as FileError { throw DataError(file: path, e.path == path ? e.message : e.description) }
    }
}
