import XCTest
import Foundation
import CHDF5
@testable import HDF5

final class HDF5Tests: XCTestCase {
    func testArraysAttributesAndErrors() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("qat-h5-\(getpid()).h5").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let w = try H5Writer(creating: path)
            let root = try w.group("/")
            let bytes: [UInt8] = [1, 2, 3, 4, 5, 6]
            try bytes.withUnsafeBytes { try w.array(root, "u8", shape: [2, 3], type: qat_H5T_NATIVE_UINT8(), $0.baseAddress!) }
            let ints: [Int64] = [-5, 7]
            try ints.withUnsafeBytes { try w.array(root, "i64", shape: [2], type: qat_H5T_NATIVE_INT64(), $0.baseAddress!) }
            try w.attr(root, "note", string: "héllo")
            try w.commit()
        }
        let r = try H5Reader(opening: path)
        let root = try r.group("/")
        let (s, b) = try r.array(root, "u8", type: qat_H5T_NATIVE_UINT8(), where: "/u8")
        XCTAssertEqual(s, [2, 3]); XCTAssertEqual(b, [1, 2, 3, 4, 5, 6])
        let (_, ib) = try r.array(root, "i64", type: qat_H5T_NATIVE_INT64(), where: "/i64")
        XCTAssertEqual(ib.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }, [-5, 7])
        XCTAssertEqual(try r.string(root, "note"), "héllo")
        XCTAssertThrowsError(try r.array(root, "nope", type: qat_H5T_NATIVE_UINT8(), where: "/nope")) {
            XCTAssertEqual(($0 as? HDF5Error)?.kind, .invalid)
        }
        XCTAssertThrowsError(try H5Reader(opening: path + ".missing")) { XCTAssertEqual(($0 as? HDF5Error)?.kind, .missingFile) }
    }
}
