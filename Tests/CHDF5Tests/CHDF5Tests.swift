import XCTest
import Foundation
import CHDF5

/// The shim's getters for HDF5's macro constants work: a float dataset round-trips through a file.
final class CHDF5Tests: XCTestCase {
    func testFloatDatasetRoundTrip() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("qat-chdf5-\(getpid()).h5").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let values: [Float] = [1.5, -2, 3.25, 0]
        let file = H5Fcreate(path, qat_H5F_ACC_TRUNC(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT())
        XCTAssertGreaterThanOrEqual(file, 0)
        var dims: [hsize_t] = [2, 2]
        let space = H5Screate_simple(2, &dims, nil)
        let ds = H5Dcreate2(file, "w", qat_H5T_NATIVE_FLOAT(), space, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT())
        XCTAssertGreaterThanOrEqual(ds, 0)
        XCTAssertGreaterThanOrEqual(values.withUnsafeBufferPointer { H5Dwrite(ds, qat_H5T_NATIVE_FLOAT(), qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), $0.baseAddress) }, 0)
        H5Dclose(ds); H5Sclose(space); H5Fclose(file)

        let f2 = H5Fopen(path, qat_H5F_ACC_RDONLY(), qat_H5P_DEFAULT())
        XCTAssertGreaterThanOrEqual(f2, 0)
        let d2 = H5Dopen2(f2, "w", qat_H5P_DEFAULT())
        var back = [Float](repeating: 0, count: 4)
        _ = back.withUnsafeMutableBufferPointer { H5Dread(d2, qat_H5T_NATIVE_FLOAT(), qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), $0.baseAddress) }
        H5Dclose(d2); H5Fclose(f2)
        XCTAssertEqual(back, values)
    }
}
