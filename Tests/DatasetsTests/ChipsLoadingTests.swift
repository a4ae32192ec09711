import XCTest
import Foundation
import CHDF5
import HDF5
@testable import Datasets

/// `HDF5ClassificationSource` reads files it did not write: every declared shape is checked before a
/// buffer exists, and every problem names the file and dataset.
final class ChipsLoadingTests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("qat-chipsload-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A chips file with `n` 2x2 RGB images; `labels`/`clean` override the label datasets.
    func chips(_ name: String, n: Int = 3, labels: [Int64]? = nil, clean: [Int64]? = nil, classes: String = "a\nb\nc") throws -> String {
        let path = dir + "/" + name
        let w = try H5Writer(creating: path)
        let root = try w.group("/")
        let px = (0..<(n * 12)).map { UInt8($0 % 251) }
        try px.withUnsafeBytes { try w.array(root, "images", shape: [n, 2, 2, 3], type: qat_H5T_NATIVE_UINT8(), $0.baseAddress!) }
        let l = labels ?? (0..<n).map { Int64($0 % 3) }
        try l.withUnsafeBytes { try w.array(root, "labels", shape: [l.count], type: qat_H5T_NATIVE_INT64(), $0.baseAddress!) }
        if let clean { try clean.withUnsafeBytes { try w.array(root, "clean_labels", shape: [clean.count], type: qat_H5T_NATIVE_INT64(), $0.baseAddress!) } }
        try w.attr(root, "classes", string: classes)
        try w.commit()
        return path
    }

    func replaceImages(_ path: String, dims: [hsize_t], chunk: [hsize_t]) {
        let f = H5Fopen(path, qat_H5F_ACC_RDWR(), qat_H5P_DEFAULT())
        H5Ldelete(f, "/images", qat_H5P_DEFAULT())
        var d = dims, c = chunk
        let space = H5Screate_simple(Int32(d.count), &d, nil)
        let dcpl = H5Pcreate(qat_H5P_DATASET_CREATE())
        H5Pset_chunk(dcpl, Int32(c.count), &c)
        H5Dclose(H5Dcreate2(f, "/images", qat_H5T_NATIVE_UINT8(), space, qat_H5P_DEFAULT(), dcpl, qat_H5P_DEFAULT()))
        H5Pclose(dcpl); H5Sclose(space); H5Fclose(f)
    }

    func message(_ path: String) -> String? {
        do { _ = try HDF5ClassificationSource(path: path); return nil } catch { return "\(error)" }
    }

    func testValidFileLoads() throws {
        let src = try HDF5ClassificationSource(path: try chips("ok.h5", clean: [0, 1, 1]))
        XCTAssertEqual(src.shape, [3, 2, 2, 3]); XCTAssertEqual(src.labels, [0, 1, 2]); XCTAssertEqual(src.cleanLabels, [0, 1, 1])
        XCTAssertEqual(try src.sample(1).image.pixels, Array(12..<24).map(UInt8.init))
    }

    func testGiantDeclaredImagesAreRefusedBeforeAllocation() throws {
        let path = try chips("huge.h5")
        replaceImages(path, dims: [1 << 31, 1 << 30, 2, 1], chunk: [1, 1, 2, 1])
        XCTAssertThrowsError(try HDF5ClassificationSource(path: path)) { e in
            XCTAssertEqual((e as? HDF5Error)?.kind, .tooLarge)
            XCTAssertTrue("\(e)".contains(path) && "\(e)".contains("/images"), "\(e)")
        }
        replaceImages(path, dims: [1 << 32, 1 << 32, 1, 3], chunk: [1, 1, 1, 3])   // 2^64 * 3 wraps
        XCTAssertTrue(message(path)?.contains("/images declares shape") == true, message(path) ?? "")
        // Within the byte cap but not an image: a side beyond 8192 pixels.
        replaceImages(path, dims: [1, 1 << 20, 1, 3], chunk: [1, 1024, 1, 3])
        XCTAssertTrue(message(path)?.contains("sides of 1...8192") == true, message(path) ?? "")
    }

    func testLabelShapesAndRangesNameTheDataset() throws {
        var m = message(try chips("short.h5", labels: [0, 1]))
        XCTAssertTrue(m?.contains("/labels has shape [2], expected [3]") == true, m ?? "")
        m = message(try chips("clean.h5", clean: [0, 1]))
        XCTAssertTrue(m?.contains("/clean_labels has shape [2], expected [3]") == true, m ?? "")
        m = message(try chips("range.h5", clean: [0, 5, 1]))
        XCTAssertTrue(m?.contains("/clean_labels holds 5, outside 0..<3") == true, m ?? "")
        m = message(try chips("neg.h5", labels: [0, -1, 1]))
        XCTAssertTrue(m?.contains("/labels holds -1") == true, m ?? "")
    }

    func testFlippedPixelFailsTheChecksum() throws {
        let path = try chips("flip.h5")
        let f = H5Fopen(path, qat_H5F_ACC_RDONLY(), qat_H5P_DEFAULT())
        let ds = H5Dopen2(f, "/images", qat_H5P_DEFAULT())
        let offset = Int(H5Dget_offset(ds))
        H5Dclose(ds); H5Fclose(f)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[offset + 5] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try HDF5ClassificationSource(path: path)) { e in
            XCTAssertEqual((e as? HDF5Error)?.kind, .checksum)
            XCTAssertTrue("\(e)".contains("/images"), "\(e)")
        }
    }
}
