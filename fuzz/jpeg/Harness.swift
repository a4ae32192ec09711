// libFuzzer harness: bytes through ImageCodec.decode as 1 and 3 channels (and as 4, which a JPEG
// refuses), compiled against the Datasets module by scripts/fuzz.sh. Decodes are capped at 2^22
// pixels (the same cap arithmetic as the default 2^29), so a declared giant image costs no time.
// Beyond "no crash", it traps when anything but DataError escapes or a decoded image does not match
// its declared layout.
//
// QAT_FUZZ_SEEDS=DIR writes the seed files of fuzz/corpus/jpeg into DIR and exits.
import Foundation
import Datasets

private let maxPixels = 1 << 22

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    guard let out = ProcessInfo.processInfo.environment["QAT_FUZZ_SEEDS"] else { return 0 }
    try! FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    for (w, h, c, q) in [(8, 8, 3, 90), (17, 5, 1, 50), (16, 16, 3, 10)] {
        var img = Image(width: w, height: h, channels: c)
        for i in img.pixels.indices { img.pixels[i] = UInt8((i * 29 + i / 5) % 256) }
        try! ImageCodec.encodeJPEG(img, quality: q).write(to: URL(fileURLWithPath: "\(out)/\(c == 1 ? "gray" : "rgb")-\(w)x\(h)-q\(q).jpg"))
    }
    exit(0)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJPEG(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    for channels in [1, 3, 4] {
        let img: Image
        do { img = try ImageCodec.decode(bytes, channels: channels, file: "fuzz.jpg", maxPixels: maxPixels) } catch is DataError { continue } catch {
            fatalError("ImageCodec.decode threw \(type(of: error)), not DataError: \(error)")
        }
        guard img.channels == channels, img.width * img.height <= maxPixels, img.pixels.count == img.width * img.height * channels else {
            fatalError("decoded \(img.width)x\(img.height)x\(img.channels) with \(img.pixels.count) bytes")
        }
    }
    return 0
}
