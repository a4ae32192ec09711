import XCTest
import Foundation
@testable import Datasets

final class CodecTests: XCTestCase {
    func gradient(_ w: Int, _ h: Int, _ c: Int) -> Image {
        var img = Image(width: w, height: h, channels: c)
        for y in 0..<h { for x in 0..<w { for k in 0..<c { img.pixels[img.index(x: x, y: y, c: k)] = UInt8((x * 7 + y * 13 + k * 50) % 256) } } }
        return img
    }

    func testPNGRoundTripsGrayRGBAndRGBA() throws {
        for c in [1, 3, 4] {
            let img = gradient(13, 7, c)
            let png = try ImageCodec.encodePNG(img)
            XCTAssertEqual(ImageCodec.format(of: png), .png)
            XCTAssertEqual(try ImageCodec.decode(png, channels: c), img, "channels \(c)")
        }
        // RGB -> gray and gray -> RGB conversions come out with the requested layout.
        let rgb = try ImageCodec.decode(try ImageCodec.encodePNG(gradient(5, 4, 1)), channels: 3)
        XCTAssertEqual(rgb.channels, 3)
        XCTAssertEqual(rgb.pixels[0], rgb.pixels[1]); XCTAssertEqual(rgb.pixels[1], rgb.pixels[2])
    }

    /// A 16-bit PNG written by hand (IHDR bit depth 16) decodes to the high bytes' 8-bit values.
    func testSixteenBitPNGIsReducedToEightBits() throws {
        // 2x1 gray 16-bit: samples 0xFFFF and 0x0000, written with zlib "stored" blocks.
        func crc32(_ d: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in d { c ^= UInt32(b); for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) } }
            return ~c
        }
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 255), UInt8((v >> 8) & 255), UInt8(v & 255)] }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] { let td = Array(type.utf8) + data; return be(UInt32(data.count)) + td + be(crc32(td)) }
        let raw: [UInt8] = [0, 0xFF, 0xFF, 0x00, 0x00]            // filter byte + two 16-bit samples
        var adler: (UInt32, UInt32) = (1, 0)
        for b in raw { adler.0 = (adler.0 + UInt32(b)) % 65521; adler.1 = (adler.1 + adler.0) % 65521 }
        let len = UInt16(raw.count)
        let zlib: [UInt8] = [0x78, 0x01, 0x01, UInt8(len & 255), UInt8(len >> 8), UInt8(~len & 255), UInt8(~len >> 8)] + raw + be((adler.1 << 16) | adler.0)
        let png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", be(2) + be(1) + [16, 0, 0, 0, 0]) + chunk("IDAT", zlib) + chunk("IEND", [])
        let img = try ImageCodec.decode(Data(png), channels: 1)
        XCTAssertEqual(img.width, 2); XCTAssertEqual(img.pixels, [255, 0])
    }

    func testJPEGDecodesCloseToTheOriginal() throws {
        var img = Image(width: 32, height: 24, channels: 3)     // smooth: JPEG's home ground
        for y in 0..<24 { for x in 0..<32 { for k in 0..<3 { img.pixels[img.index(x: x, y: y, c: k)] = UInt8(x * 4 + y * 3 + k * 20) } } }
        let jpg = try ImageCodec.encodeJPEG(img, quality: 95)
        XCTAssertEqual(ImageCodec.format(of: jpg), .jpeg)
        let back = try ImageCodec.decode(jpg, channels: 3)
        XCTAssertEqual(back.width, 32); XCTAssertEqual(back.height, 24)
        let err = zip(back.pixels, img.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +) / img.pixels.count
        XCTAssertLessThan(err, 3)
        XCTAssertEqual(try ImageCodec.decode(jpg, channels: 1).channels, 1)
    }

    func testCorruptAndUnknownFilesAreErrorsNotCrashes() throws {
        let jpg = try ImageCodec.encodeJPEG(gradient(16, 16, 3))
        XCTAssertThrowsError(try ImageCodec.decode(jpg.prefix(40), file: "cut.jpg")) { e in
            XCTAssertTrue("\(e)".hasPrefix("cut.jpg: cannot decode JPEG"), "\(e)")
        }
        let png = try ImageCodec.encodePNG(gradient(16, 16, 3))
        XCTAssertThrowsError(try ImageCodec.decode(png.prefix(png.count / 2), file: "cut.png")) { e in
            XCTAssertTrue("\(e)".hasPrefix("cut.png: cannot decode PNG"), "\(e)")
        }
        XCTAssertThrowsError(try ImageCodec.decode(Data("GIF89a".utf8), file: "x.gif")) { XCTAssertTrue("\($0)".contains("neither PNG nor JPEG")) }
        XCTAssertThrowsError(try ImageCodec.decode(file: "/nonexistent/a.png")) { XCTAssertTrue("\($0)".contains("does not exist")) }
        XCTAssertThrowsError(try ImageCodec.decode(jpg, channels: 4, file: "a.jpg")) { XCTAssertTrue("\($0)".contains("no alpha")) }
    }

    func testWritePNGIsAtomicAndReadable() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("qat-img-\(getpid()).png").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let img = gradient(9, 9, 3)
        try ImageCodec.writePNG(img, to: path)
        XCTAssertEqual(try ImageCodec.decode(file: path), img)
    }
}
