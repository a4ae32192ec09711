// libFuzzer harness: bytes through ImageCodec.decode as 1, 3 and 4 channels, compiled against the
// Datasets module by scripts/fuzz.sh. Every chunk's CRC is recomputed first (as libpng's own fuzzer
// ignores CRCs), so a mutation reaches the chunk's decoder instead of stopping at "CRC error". Decodes
// are capped at 2^22 pixels (the cap arithmetic is the same as at the default 2^29), so a declared
// giant image costs no time. Beyond "no crash", it traps when anything but DataError escapes, a
// decoded image does not match its declared layout, or a decoded image does not survive PNG encoding
// and decoding unchanged (PNG is lossless).
//
// QAT_FUZZ_SEEDS=DIR writes the seed files of fuzz/corpus/png into DIR and exits.
import Foundation
import Datasets
import HDF5

private let maxPixels = 1 << 22

private func pattern(_ w: Int, _ h: Int, _ c: Int) -> Image {
    var img = Image(width: w, height: h, channels: c)
    for i in img.pixels.indices { img.pixels[i] = UInt8((i * 37 + i / 7) % 256) }
    return img
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    guard let out = ProcessInfo.processInfo.environment["QAT_FUZZ_SEEDS"] else { return 0 }
    try! FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    for (name, img) in [("gray-5x3", pattern(5, 3, 1)), ("rgb-8x8", pattern(8, 8, 3)), ("rgba-3x7", pattern(3, 7, 4)), ("ga-4x4", pattern(4, 4, 2))] {
        try! ImageCodec.encodePNG(img).write(to: URL(fileURLWithPath: "\(out)/\(name).png"))
    }
    exit(0)
}

/// The input with each complete chunk's CRC (over type and data) set to the right value.
private func fixingCRCs(_ data: UnsafePointer<UInt8>, _ size: Int) -> Data {
    var b = [UInt8](UnsafeBufferPointer(start: data, count: size))
    var at = 8
    while at + 12 <= b.count {
        let length = Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
        guard length <= b.count - at - 12 else { break }
        let crc = b[(at + 4)..<(at + 8 + length)].withUnsafeBytes { CRC32.checksum($0) }
        for k in 0..<4 { b[at + 8 + length + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * k)) }
        at += 12 + length
    }
    return Data(b)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPNG(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fixingCRCs(data, size)
    for channels in [1, 3, 4] {
        let img: Image
        do { img = try ImageCodec.decode(bytes, channels: channels, file: "fuzz.png", maxPixels: maxPixels) } catch is DataError { continue } catch {
            fatalError("ImageCodec.decode threw \(type(of: error)), not DataError: \(error)")
        }
        guard img.channels == channels, img.width * img.height <= maxPixels, img.pixels.count == img.width * img.height * channels else {
            fatalError("decoded \(img.width)x\(img.height)x\(img.channels) with \(img.pixels.count) bytes")
        }
        do {
            let back = try ImageCodec.decode(try ImageCodec.encodePNG(img), channels: channels, file: "again.png", maxPixels: maxPixels)
            if back != img { fatalError("a decoded PNG does not survive encoding and decoding") }
        } catch { fatalError("re-encoding a decoded image failed: \(error)") }
    }
    return 0
}
