import XCTest
import Foundation
import HDF5
@testable import Datasets

/// Caps on sizes from flags and file headers, checked before anything is created or allocated, and
/// the reasons a named file cannot be read.
final class SizeCapsTests: XCTestCase {
    func message(_ body: () throws -> Any) -> String {
        do { _ = try body(); return "no error" } catch { return "\(error)" }
    }

    func testSynthConfigIsCheckedBeforeTheOutputFolderExists() throws {
        let out = NSTemporaryDirectory() + "synth-caps-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        for (images, size, flag) in [(0, 256, "--images"), (SyntheticAircraft.Config.maxImages + 1, 256, "--images"),
                                     (10, 63, "--size"), (10, SyntheticAircraft.Config.maxSize + 1, "--size"), (10, Int.max, "--size")] {
            var c = SyntheticAircraft.Config()
            c.images = images; c.size = size
            let text = message { try SyntheticAircraft.generate(c, to: out) }
            XCTAssertTrue(text.hasPrefix(flag + ": must be"), text)
            XCTAssertTrue(text.contains("got \(flag == "--images" ? images : size)"), text)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
        var c = SyntheticAircraft.Config()
        c.minLength = .nan
        XCTAssertTrue(message { try c.validate() }.contains("--min-length"))
    }

    func testChipSizeAndTheChipsFileBoundAreCheckedUpFront() {
        XCTAssertEqual(message { try Chips.validate(size: 7, scenes: 10) }, "--chip-size: must be 8...\(Chips.maxSize) px (the cap on the chip side), got 7")
        XCTAssertTrue(message { try Chips.validate(size: Chips.maxSize + 1, scenes: 10) }.contains("must be 8...256"))
        // 100,000 scenes x 8 aircraft x 48^2 x 3 bytes can exceed what a chips file may hold; 32 px cannot.
        XCTAssertTrue(message { try Chips.validate(size: 48, scenes: 100_000) }.contains("4 GiB"))
        XCTAssertEqual(message { try Chips.validate(size: 32, scenes: 100_000) }, "no error")
        XCTAssertTrue(message { try Chips.validate(size: 256, scenes: Int.max) }.contains("4 GiB"), "overflow-checked, not a trap")
    }

    /// Width x height from a header is capped before any pixel buffer exists: a 29-byte PNG header or a
    /// JPEG's SOF marker can declare a billion pixels.
    func testDecodeRefusesHugeDeclaredImagesFromTheHeader() throws {
        var img = Image(width: 64, height: 48, channels: 3)
        for i in img.pixels.indices { img.pixels[i] = UInt8(i % 251) }
        let png = try ImageCodec.encodePNG(img), jpg = try ImageCodec.encodeJPEG(img)
        XCTAssertEqual(try ImageCodec.decode(png, maxPixels: 64 * 48).width, 64)
        for (data, kind) in [(png, "PNG"), (jpg, "JPEG")] {
            let text = message { try ImageCodec.decode(data, file: "a", maxPixels: 64 * 48 - 1) }
            XCTAssertEqual(text, "a: cannot decode \(kind): declares 64x48 = 3072 pixels, above the cap of 3071 pixels; downscale or tile it")
        }
        // A PNG whose header declares 1,000,000 x 1,000,000 pixels (libpng's own limit), CRC fixed up.
        var big = [UInt8](png)
        for (k, v) in [UInt32(1_000_000), 1_000_000].enumerated() { withUnsafeBytes(of: v.bigEndian) { big.replaceSubrange((16 + 4 * k)..<(20 + 4 * k), with: $0) } }
        let crc = big[12..<29].withUnsafeBytes { CRC32.checksum($0) }
        withUnsafeBytes(of: crc.bigEndian) { big.replaceSubrange(29..<33, with: $0) }
        XCTAssertTrue(message { try ImageCodec.decode(Data(big), file: "big.png") }.contains("declares 1000000x1000000 = 1000000000000 pixels, above the cap of \(ImageCodec.maxPixels)"))
        // A JPEG whose SOF0 declares 65,000 x 65,000.
        var bj = [UInt8](jpg)
        let sof = try XCTUnwrap((0..<(bj.count - 1)).first { bj[$0] == 0xFF && bj[$0 + 1] == 0xC0 })
        bj[sof + 5] = 0xFD; bj[sof + 6] = 0xE8; bj[sof + 7] = 0xFD; bj[sof + 8] = 0xE8
        XCTAssertTrue(message { try ImageCodec.decode(Data(bj), file: "big.jpg") }.contains("declares 65000x65000"))
    }

    /// Found by fuzz/png: 106 bytes whose third chunk declares a 1.2 GB tEXt chunk; libpng allocated and
    /// zeroed that much before noticing the data was missing (over 5 s under ASan). The chunk layout is
    /// now checked against the file's length first.
    func testAPNGChunkLongerThanTheFileIsRefusedBeforeLibpngAllocatesIt() throws {
        let hex = "89504e470d0a1a0a0000000d4948445200000003000000070806000000cdb9f7a9000000017352474200aece1ce94948445274455874494441540899636650f5ca9fb27ccba4e1cb50347dcf43369dc0b2d9079e720100868c2a9c52e8a25b0000000049454e4452b982"
        let bytes = Data(stride(from: 0, to: hex.count, by: 2).map { i -> UInt8 in
            let s = hex.index(hex.startIndex, offsetBy: i)
            return UInt8(hex[s..<hex.index(s, offsetBy: 2)], radix: 16)!
        })
        XCTAssertEqual(bytes.count, 106)
        let start = Date()
        XCTAssertEqual(message { try ImageCodec.decode(bytes, file: "t.png") },
                       "t.png: cannot decode PNG: chunk 'tEXt' at byte 46 declares 1229472850 bytes of data but the file has 48 after it: truncated or corrupt")
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
        // A complete PNG passes the check; one cut inside a chunk is refused naming the chunk.
        var img = Image(width: 5, height: 4, channels: 3)
        for i in img.pixels.indices { img.pixels[i] = UInt8(i) }
        let png = try ImageCodec.encodePNG(img)
        XCTAssertNil(PNGChunks.problem(png))
        XCTAssertNotNil(PNGChunks.problem(png.prefix(png.count - 20)))
    }

    func testDataFilesThatAreDirectoriesOrLoopsAreNamedAsSuch() throws {
        let dir = NSTemporaryDirectory() + "datafiles-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/d.json", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createSymbolicLink(atPath: dir + "/a", withDestinationPath: dir + "/b")
        try FileManager.default.createSymbolicLink(atPath: dir + "/b", withDestinationPath: dir + "/a")
        XCTAssertTrue(message { try COCODataset.load(dir + "/d.json") }.contains("d.json: is a directory"))
        XCTAssertTrue(message { try COCODataset.load(dir + "/a") }.contains("symlink loop"))
        XCTAssertTrue(message { try DOTALabel.load(dir + "/d.json") }.contains("is a directory"))
        XCTAssertTrue(message { try DOTALabel.load(dir + "/a") }.contains("symlink loop"))
        XCTAssertTrue(message { try ImageCodec.decode(file: dir + "/d.json") }.contains("is a directory"))
        XCTAssertTrue(message { try ImageCodec.decode(file: dir + "/a") }.contains("symlink loop"))
        XCTAssertTrue(message { try ImageCodec.decode(file: dir + "/none.png") }.contains("image file does not exist"))
    }
}
