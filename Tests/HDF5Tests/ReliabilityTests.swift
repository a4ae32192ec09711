import XCTest
import Foundation
import CHDF5
@testable import HDF5
import Files

/// Objects (files, groups, datasets, attributes) libhdf5 holds open in this process. A leaked file id
/// is what crashed the process at exit (`H5_term_library`) after a failed save.
func openHDF5Objects() -> Int {
    // H5F_OBJ_ALL is a macro of macros Swift does not import: file | dataset | group | datatype | attribute.
    let all = UInt32(H5F_OBJ_FILE | H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR)
    return Int(H5Fget_obj_count(hid_t(all), all))
}

func scratchDir() -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("qat-h5r-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// Adds a chunked float32 dataset of any declared shape to an existing file without writing data
/// (what h5py does lazily): a file that claims far more than it holds.
func addLazyDataset(_ file: String, _ path: String, dims: [hsize_t], chunk: [hsize_t]) {
    let f = H5Fopen(file, qat_H5F_ACC_RDWR(), qat_H5P_DEFAULT())
    precondition(f >= 0)
    var d = dims, c = chunk
    let space = H5Screate_simple(Int32(d.count), &d, nil)
    let dcpl = H5Pcreate(qat_H5P_DATASET_CREATE())
    H5Pset_chunk(dcpl, Int32(c.count), &c)
    let ds = H5Dcreate2(f, path, qat_H5T_NATIVE_FLOAT(), space, qat_H5P_DEFAULT(), dcpl, qat_H5P_DEFAULT())
    precondition(ds >= 0, "cannot create \(path)")
    H5Dclose(ds); H5Pclose(dcpl); H5Sclose(space); H5Fclose(f)
}

/// File offset of a contiguous dataset's data.
func dataOffset(_ file: String, _ path: String) -> Int {
    let f = H5Fopen(file, qat_H5F_ACC_RDONLY(), qat_H5P_DEFAULT())
    let ds = H5Dopen2(f, path, qat_H5P_DEFAULT())
    defer { H5Dclose(ds); H5Fclose(f) }
    return Int(H5Dget_offset(ds))
}

func flipByte(_ file: String, at offset: Int) throws {
    var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
    bytes[offset] ^= 0x10
    try bytes.write(to: URL(fileURLWithPath: file))
}

final class CRC32Tests: XCTestCase {
    func testMatchesZlib() {
        // The check value of CRC-32/ISO-HDLC (zlib.crc32(b"123456789")).
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([]), 0)
        // Slicing-by-8 against the bitwise definition at every length and alignment up to 40 bytes.
        func bitwise(_ b: ArraySlice<UInt8>) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for x in b { c ^= UInt32(x); for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 } }
            return ~c
        }
        var rng = SystemRandomNumberGenerator()
        let data = (0..<48).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for start in 0..<8 { for n in 0...40 {
            let s = data[start..<(start + n)]
            XCTAssertEqual(s.withUnsafeBytes { CRC32.checksum($0) }, bitwise(s), "start \(start) length \(n)")
        }}
        // Continuing over two buffers equals one pass.
        let whole = CRC32.checksum(data)
        let first = data[..<13].withUnsafeBytes { CRC32.checksum($0) }
        XCTAssertEqual(data[13...].withUnsafeBytes { CRC32.checksum($0, continuing: first) }, whole)
    }
}

final class ExtentTests: XCTestCase {
    func testOverflowingAndGiantShapesAreRefused() {
        func kind(_ dims: [hsize_t], size: Int = 4, cap: Int = 1 << 28) -> HDF5Error.Kind? {
            do { _ = try Extent.validate(dims: dims, elementSize: size, maxElements: cap, file: "f.h5", path: "/x"); return nil }
            catch let e as HDF5Error { XCTAssertTrue(e.description.contains("f.h5") && e.description.contains("/x"), e.description); return e.kind }
            catch { XCTFail("\(error)"); return nil }
        }
        XCTAssertNil(kind([2, 3]))
        XCTAssertNil(kind([]))                                   // scalar: one element
        XCTAssertNil(kind([0, hsize_t(1) << 62]))                // empty, even with a giant second dimension
        XCTAssertEqual(kind([1 << 31, 1 << 30, 2, 1]), .tooLarge)    // 2^62 elements: the h5py repro
        XCTAssertEqual(kind([1 << 32, 1 << 32]), .tooLarge)          // 2^64 wraps to 0 in unchecked Int arithmetic
        XCTAssertEqual(kind([1 << 40, 1 << 40, 0]), .tooLarge)       // overflows before the 0 arrives
        XCTAssertEqual(kind([hsize_t.max - 1]), .tooLarge)           // beyond Int.max
        XCTAssertEqual(kind([1 << 20], size: 1 << 50, cap: Int.max), .tooLarge)  // bytes overflow
        XCTAssertEqual(kind([10], cap: 9), .tooLarge)
        XCTAssertNil(kind([10], cap: 10))
        XCTAssertEqual(Extent.count([3, 4]), 12)
        XCTAssertNil(Extent.count([1 << 40, 1 << 40]))
        XCTAssertNil(Extent.count([-1, 2]))
    }
}

final class HDF5ReliabilityTests: XCTestCase {
    var dir: String!
    override func setUp() { dir = scratchDir() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ path: String, _ body: (H5Writer, H5Handle) throws -> Void) throws {
        let w = try H5Writer(creating: path)
        let root = try w.group("/")
        try body(w, root)
        try w.commit()
    }

    func testHugeDeclaredShapeFailsBeforeAllocation() throws {
        let path = dir + "/huge.h5"
        try write(path) { w, root in try w.attr(root, "note", string: "x") }
        addLazyDataset(path, "/w", dims: [1 << 31, 1 << 30, 2, 1], chunk: [1, 1, 2, 1])
        addLazyDataset(path, "/wraps", dims: [1 << 32, 1 << 32], chunk: [1, 1])
        let r = try H5Reader(opening: path)
        let root = try r.group("/")
        for name in ["w", "wraps"] {
            XCTAssertThrowsError(try r.floats(root, name, where: "/" + name)) { e in
                XCTAssertEqual((e as? HDF5Error)?.kind, .tooLarge)
                XCTAssertTrue("\(e)".contains(path) && "\(e)".contains("/" + name), "\(e)")
            }
            XCTAssertThrowsError(try r.array(root, name, type: qat_H5T_NATIVE_FLOAT(), where: "/" + name)) { XCTAssertEqual(($0 as? HDF5Error)?.kind, .tooLarge) }
        }
    }

    func testDeclaredShapeMustMatchWhatTheCallerExpects() throws {
        let path = dir + "/rng.h5"
        try write(path) { w, root in try w.uint64s(root, "r", [1, 2, 3]) }
        let r = try H5Reader(opening: path)
        let root = try r.group("/")
        XCTAssertEqual(try r.uint64s(root, "r", where: "/r", expected: [3]), [1, 2, 3])
        XCTAssertThrowsError(try r.uint64s(root, "r", where: "/r", expected: [2])) { XCTAssertEqual(($0 as? HDF5Error)?.kind, .shapeMismatch) }
        XCTAssertThrowsError(try r.floats(root, "r", where: "/r")) { XCTAssertTrue("\($0)".contains("integer"), "\($0)") }
    }

    func testAttributeHoldingSeveralValuesIsRefused() throws {
        // H5Aread fills as many values as the attribute holds; reading [5] into one Int64 would write
        // past the variable on the stack.
        let path = dir + "/attr.h5"
        try write(path) { _, _ in }
        let f = H5Fopen(path, qat_H5F_ACC_RDWR(), qat_H5P_DEFAULT())
        var dims: [hsize_t] = [5]
        let space = H5Screate_simple(1, &dims, nil)
        let a = H5Acreate2(f, "step", qat_H5T_NATIVE_INT64(), space, qat_H5P_DEFAULT(), qat_H5P_DEFAULT())
        var values: [Int64] = [1, 2, 3, 4, 5]
        H5Awrite(a, qat_H5T_NATIVE_INT64(), &values)
        H5Aclose(a); H5Sclose(space); H5Fclose(f)
        let r = try H5Reader(opening: path)
        XCTAssertThrowsError(try r.int64(try r.group("/"), "step")) { e in
            XCTAssertEqual((e as? HDF5Error)?.kind, .tooLarge)
            XCTAssertTrue("\(e)".contains("step"), "\(e)")
        }
        XCTAssertThrowsError(try r.string(try r.group("/"), "step")) { XCTAssertTrue("\($0)".contains("not a string"), "\($0)") }
    }

    func testDirectoryIsAClearError() throws {
        XCTAssertThrowsError(try H5Reader(opening: dir)) { e in
            XCTAssertEqual((e as? HDF5Error)?.kind, .notAFile)
            XCTAssertTrue("\(e)".contains("is a directory"), "\(e)")
        }
        try FileManager.default.createDirectory(atPath: dir + "/checkpoints", withIntermediateDirectories: true)
        try write(dir + "/checkpoints/last.h5") { _, _ in }
        XCTAssertThrowsError(try H5Reader(opening: dir)) { XCTAssertTrue("\($0)".contains("did you mean \(self.dir!)/checkpoints/last.h5"), "\($0)") }
        XCTAssertThrowsError(try H5Writer(creating: dir).commit()) { XCTAssertEqual(($0 as? HDF5Error)?.kind, .notAFile) }
    }

    func testFlippedDataByteFailsTheChecksum() throws {
        let path = dir + "/c.h5"
        let values: [Float] = (0..<64).map { Float($0) * 0.25 }
        try write(path) { w, root in
            let g = try w.group("/params")
            try values.withUnsafeBufferPointer { try w.floats(g, "w", shape: [8, 8], $0.baseAddress!) }
            try w.floats(root, "s", shape: [], [Float(2)])
        }
        var r = try H5Reader(opening: path)
        r.requireChecksums = true
        XCTAssertEqual(try r.floats(try r.group("/params"), "w", where: "/params/w").1, values)
        XCTAssertEqual(try r.floats(try r.group("/"), "s", where: "/s").0, [])
        try flipByte(path, at: dataOffset(path, "/params/w") + 77)
        r = try H5Reader(opening: path)
        XCTAssertThrowsError(try r.floats(try r.group("/params"), "w", where: "/params/w")) { e in
            XCTAssertEqual((e as? HDF5Error)?.kind, .checksum)
            XCTAssertTrue("\(e)".contains("/params/w") && "\(e)".contains(path), "\(e)")
        }
    }

    /// Every single changed byte of a file written by H5Writer is an error before anything is decoded
    /// from it (metadata: the trailer; data: the dataset's crc32; the trailer: its own crc), except the
    /// trailer's magic, without which the unchanged file reads as one from before trailers.
    func testEveryFlippedByteIsCaught() throws {
        let path = dir + "/small.h5"
        let values: [Float] = [1, 2, 3, 4, 5, 6]
        try write(path) { w, root in
            try values.withUnsafeBufferPointer { try w.floats(root, "w", shape: [2, 3], $0.baseAddress!) }
            try w.attr(root, "note", string: "some text")
        }
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        let magic = (original.count - 8)..<original.count
        XCTAssertTrue(try H5Reader(opening: path).hasTrailer)
        var caught = 0
        for offset in 0..<original.count {
            var bytes = original
            bytes[offset] ^= 0x01
            try bytes.write(to: URL(fileURLWithPath: path))
            do {
                var r = try H5Reader(opening: path)
                r.requireChecksums = true
                let root = try r.group("/")
                let w = try r.floats(root, "w", where: "/w").1, note = try r.string(root, "note")
                XCTAssertEqual(w, values, "offset \(offset)")
                XCTAssertEqual(note, "some text", "offset \(offset)")
                XCTAssertTrue(magic.contains(offset), "a flip at \(offset) went unnoticed")
            } catch let e as HDF5Error {
                XCTAssertTrue([.checksum, .notHDF5].contains(e.kind), "offset \(offset): \(e)")
                caught += 1
            }
        }
        XCTAssertEqual(caught, original.count - magic.count)
    }

    func testMissingChecksumIsRefusedOnlyWhenRequired() throws {
        let path = dir + "/old.h5"
        try write(path) { w, root in try w.floats(root, "w", shape: [2], [Float(1), 2]) }
        let f = H5Fopen(path, qat_H5F_ACC_RDWR(), qat_H5P_DEFAULT())
        let ds = H5Dopen2(f, "w", qat_H5P_DEFAULT())
        H5Adelete(ds, "crc32")
        H5Dclose(ds); H5Fclose(f)
        var r = try H5Reader(opening: path)
        XCTAssertEqual(try r.floats(try r.group("/"), "w", where: "/w").1, [1, 2])
        r.requireChecksums = true
        XCTAssertThrowsError(try r.floats(try r.group("/"), "w", where: "/w")) { XCTAssertEqual(($0 as? HDF5Error)?.kind, .checksum) }
    }

    /// A failed commit (the disk fills up) or an abandoned writer leaves no HDF5 object open, leaves the
    /// previous file as it was and leaves no temporary file.
    func testFailedWriteClosesEverythingAndKeepsThePreviousFile() throws {
        let path = dir + "/f.h5"
        try write(path) { w, root in try w.attr(root, "version", int64: 1) }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let baseline = openHDF5Objects()
        do {
            let w = try H5Writer(creating: path)
            let root = try w.group("/")
            let g = try w.group("/params")
            try w.floats(g, "w", shape: [1000], [Float](repeating: 1, count: 1000))
            try w.attr(root, "version", int64: 2)
            XCTAssertGreaterThan(openHDF5Objects(), baseline)
            XCTAssertThrowsError(try w.commit(faults: WriteFaults(failAfterBytes: 1000))) { e in
                XCTAssertEqual((e as? HDF5Error)?.kind, .io)
                XCTAssertTrue("\(e)".contains("No space left on device") && "\(e)".contains("unchanged"), "\(e)")
            }
            XCTAssertEqual(openHDF5Objects(), baseline, "commit closes every object even when the write fails")
            XCTAssertFalse(g.isOpen)
        }
        do {
            let w = try H5Writer(creating: path)
            _ = try w.group("/params")
            // Abandoned mid-way (an error thrown by the caller): deinit closes groups, then the file.
        }
        XCTAssertEqual(openHDF5Objects(), baseline)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["f.h5"], "temporary file left behind")
        XCTAssertThrowsError(try H5Writer(creating: dir + "/no-such-folder/x.h5").commit()) { XCTAssertTrue("\($0)".contains("does not exist"), "\($0)") }
    }
}
