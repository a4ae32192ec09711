import XCTest
import Foundation
import CHDF5
import HDF5
import Kernels
import NN
import Quant
@testable import Checkpoint

/// Objects libhdf5 holds open in this process; a leaked file id crashed the process at exit after a
/// failed save. (H5F_OBJ_ALL is a macro of macros Swift does not import.)
private func openHDF5Objects() -> Int {
    let all = UInt32(H5F_OBJ_FILE | H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR)
    return Int(H5Fget_obj_count(hid_t(all), all))
}

private func kind(_ body: () throws -> Any) -> (CheckpointError.Kind, String)? {
    do { _ = try body(); return nil } catch let e as CheckpointError { return (e.kind, e.description) } catch { return nil }
}

/// Edits a saved file with the C API, as a damaged or hand-made file would be.
private func edit(_ path: String, _ body: (hid_t) -> Void) {
    let f = H5Fopen(path, qat_H5F_ACC_RDWR(), qat_H5P_DEFAULT())
    precondition(f >= 0)
    body(f)
    H5Fclose(f)
}

final class CheckpointReliabilityTests: XCTestCase {
    var dir: String!
    override func setUp() { dir = tempDir() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func saved(_ name: String = "c.h5") throws -> (String, Checkpoint) {
        let c = Checkpoint.capture(model: try smallModel(seed: 1))
        try c.save(to: dir + "/" + name)
        return (dir + "/" + name, c)
    }

    /// The repro: a weight declared float32 (2^31, 2^30, 2, 1), chunked and never written.
    func testGiantDeclaredWeightIsAnErrorNotACrash() throws {
        let (path, _) = try saved()
        edit(path) { f in
            var dims: [hsize_t] = [1 << 31, 1 << 30, 2, 1], chunk: [hsize_t] = [1, 1, 2, 1]
            let space = H5Screate_simple(4, &dims, nil)
            let dcpl = H5Pcreate(qat_H5P_DATASET_CREATE())
            H5Pset_chunk(dcpl, 4, &chunk)
            H5Dclose(H5Dcreate2(f, "/params/huge.weight", qat_H5T_NATIVE_FLOAT(), space, qat_H5P_DEFAULT(), dcpl, qat_H5P_DEFAULT()))
            H5Pclose(dcpl); H5Sclose(space)
        }
        let e = kind { try Checkpoint.load(from: path) }
        XCTAssertEqual(e?.0, .tooLarge)
        XCTAssertTrue(e?.1.contains("/params/huge.weight") == true && e?.1.contains(path) == true, e?.1 ?? "no error")
    }

    func testLimitsCoverOneEntryAndTheWholeFile() throws {
        let (path, c) = try saved()
        let biggest = c.params.values.map(\.values.count).max()!
        let total = [c.params, c.buffers].flatMap(\.values).map(\.values.count).reduce(0, +)
        XCTAssertNoThrow(try Checkpoint.load(from: path, limits: LoadLimits(maxEntryElements: biggest, maxTotalElements: total)))
        XCTAssertEqual(kind { try Checkpoint.load(from: path, limits: LoadLimits(maxEntryElements: biggest - 1)) }?.0, .tooLarge)
        XCTAssertEqual(kind { try Checkpoint.load(from: path, limits: LoadLimits(maxTotalElements: total - 1)) }?.0, .tooLarge)
    }

    func testRNGEntryOfTheWrongShapeIsRefused() throws {
        let (path, _) = try saved()
        edit(path) { f in
            var dims: [hsize_t] = [1000]
            let space = H5Screate_simple(1, &dims, nil)
            H5Dclose(H5Dcreate2(f, "/rng/extra", qat_H5T_NATIVE_UINT64(), space, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT()))
            H5Sclose(space)
        }
        let e = kind { try Checkpoint.load(from: path) }
        XCTAssertEqual(e?.0, .shapeMismatch)
        XCTAssertTrue(e?.1.contains("/rng/extra") == true, e?.1 ?? "no error")
    }

    /// A full disk while saving: a clean error, the previous checkpoint byte for byte, no temporary file,
    /// and no HDF5 object left open (the leaked file id is what crashed at exit). The injected failure
    /// always runs; a real 64 KiB tmpfs runs too where this process may mount one (root).
    func testDiskFullKeepsPreviousCheckpoint() throws {
        func check(_ folder: String, options: SaveOptions) throws {
            var first = Checkpoint(); first.params["a"] = .init(shape: [2], values: [1, 2])
            try first.save(to: folder + "/last.h5")
            let before = try Data(contentsOf: URL(fileURLWithPath: folder + "/last.h5"))
            var big = Checkpoint.capture(model: try smallModel(seed: 2))
            big.params["filler"] = .init(shape: [64, 1024], values: [Float](repeating: 0.5, count: 64 * 1024))  // 256 KiB
            let baseline = openHDF5Objects()
            XCTAssertThrowsError(try big.save(to: folder + "/last.h5", options: options)) { e in
                XCTAssertEqual((e as? CheckpointError)?.kind, .io)
                XCTAssertTrue("\(e)".contains("No space left on device") && "\(e)".contains("last.h5 is unchanged"), "\(e)")
            }
            XCTAssertEqual(openHDF5Objects(), baseline, "HDF5 objects left open after a failed save")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: folder + "/last.h5")), before)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["last.h5"], "temporary file left behind")
            XCTAssertEqual(try Checkpoint.load(from: folder + "/last.h5"), first)
        }
        try check(dir, options: SaveOptions(failWriteAfterBytes: 4096))

        let mnt = dir + "/tmpfs"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        guard mount("tmpfs", mnt, "tmpfs", 0, "size=64k") == 0 else { return }  // not root: the injected variant stands
        defer { umount(mnt) }
        try check(mnt, options: SaveOptions())
    }

    func testFlippedByteInAWeightIsDetected() throws {
        let (path, _) = try saved()
        // Read-only: libhdf5 opened read-write cuts the file at its end of address space, trailer included.
        let f = H5Fopen(path, qat_H5F_ACC_RDONLY(), qat_H5P_DEFAULT())
        let ds = H5Dopen2(f, "/params/0.weight", qat_H5P_DEFAULT())
        let offset = Int(H5Dget_offset(ds))
        H5Dclose(ds); H5Fclose(f)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[offset + 41] ^= 0x01  // the lowest mantissa bit of one weight: finite, plausible, wrong
        try bytes.write(to: URL(fileURLWithPath: path))
        let e = kind { try Checkpoint.load(from: path) }
        XCTAssertEqual(e?.0, .checksum)
        XCTAssertTrue(e?.1.contains("/params/0.weight") == true && e?.1.contains(path) == true, e?.1 ?? "no error")
    }

    /// A changed byte in HDF5 metadata (here inside the stored recipe text, in HDF5's global heap, where
    /// the fuzzer's libhdf5 overflow was) is refused by the trailer check before libhdf5 decodes it.
    func testDamagedMetadataIsRefusedBeforeLibHDF5() throws {
        var c = Checkpoint.capture(model: try smallModel(seed: 1))
        c.recipe = "name: needle-in-the-heap\n"
        try c.save(to: dir + "/m.h5")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/m.h5"))
        let at = try XCTUnwrap(bytes.range(of: Data("needle-in-the-heap".utf8))).lowerBound
        bytes[at] ^= 0x20
        try bytes.write(to: URL(fileURLWithPath: dir + "/m.h5"))
        let e = kind { try Checkpoint.load(from: self.dir + "/m.h5") }
        XCTAssertEqual(e?.0, .checksum)
        XCTAssertTrue(e?.1.contains("damaged HDF5 metadata") == true, e?.1 ?? "no error")
    }

    /// Files from before checksums (no `checksum` on `/`, no `crc32` on datasets) still load; a file that
    /// declares checksums but lost one on a dataset does not.
    func testCheckpointsWithoutChecksumsStillLoad() throws {
        let (path, c) = try saved()
        let stripped = dir + "/stripped.h5"
        try FileManager.default.copyItem(atPath: path, toPath: stripped)
        edit(stripped) { f in
            H5Adelete(f, "checksum")
            for p in ["/params/0.weight", "/buffers/1.runningMean"] {
                let ds = H5Dopen2(f, p, qat_H5P_DEFAULT()); H5Adelete(ds, "crc32"); H5Dclose(ds)
            }
        }
        XCTAssertEqual(try Checkpoint.load(from: stripped), c)
        edit(path) { f in let ds = H5Dopen2(f, "/params/0.weight", qat_H5P_DEFAULT()); H5Adelete(ds, "crc32"); H5Dclose(ds) }
        let e = kind { try Checkpoint.load(from: path) }
        XCTAssertEqual(e?.0, .checksum)
        XCTAssertTrue(e?.1.contains("/params/0.weight") == true, e?.1 ?? "no error")
    }

    func testNonFiniteAndAbsurdValuesAreLoadErrors() throws {
        let m = try smallModel(seed: 1)
        try quantize(m, plan: QuantPlan())
        let good = Checkpoint.capture(model: m)
        func loadError(_ edit: (inout Checkpoint) -> Void) throws -> (CheckpointError.Kind, String)? {
            var c = good
            edit(&c)
            try c.save(to: dir + "/v.h5")
            return kind { try Checkpoint.load(from: self.dir + "/v.h5") }
        }
        XCTAssertNil(try loadError { _ in })
        var e = try loadError { $0.params["0.weight"]!.values[5] = .nan }
        XCTAssertEqual(e?.0, .nonFinite); XCTAssertTrue(e?.1.contains("/params/0.weight holds nan at index 5") == true, e?.1 ?? "")
        e = try loadError { $0.buffers["1.runningVar"]!.values[0] = .infinity }
        XCTAssertEqual(e?.0, .nonFinite); XCTAssertTrue(e?.1.contains("/buffers/1.runningVar") == true, e?.1 ?? "")
        e = try loadError { $0.quant["0.inputQuantizer"]!["scale"]!.values[0] = 1e-40 }  // subnormal: 1/scale is inf
        XCTAssertEqual(e?.0, .invalid); XCTAssertTrue(e?.1.contains("/quant/0.inputQuantizer/scale") == true, e?.1 ?? "")
        e = try loadError { $0.quant["0.inputQuantizer"]!["scale"]!.values[0] = 1e35 }
        XCTAssertEqual(e?.0, .invalid)
        e = try loadError { $0.quant["0.weightQuantizer"]!["zeroPoint"]!.values[2] = 1e9 }
        XCTAssertEqual(e?.0, .invalid); XCTAssertTrue(e?.1.contains("/quant/0.weightQuantizer/zeroPoint") == true, e?.1 ?? "")
        e = try loadError { $0.quant["0.weightQuantizer"]!["zeroPoint"]!.values[2] = -.infinity }
        XCTAssertEqual(e?.0, .nonFinite)
    }

    func testDirectoryGivenForACheckpoint() throws {
        let e = kind { try Checkpoint.load(from: self.dir) }
        XCTAssertEqual(e?.0, .notAFile)
        XCTAssertTrue(e?.1.contains("is a directory") == true, e?.1 ?? "no error")
        XCTAssertEqual(kind { try Checkpoint().save(to: self.dir) }?.0, .notAFile)
    }

    /// A 0-d or empty weight, or scales that do not match the weight, has no clipped share; the report
    /// says so instead of dividing by zero or indexing past the scales.
    func testQuantReportSurvivesOddWeights() {
        var c = Checkpoint()
        let attrs = ["bits": "8", "scheme": "s", "mode": "m", "qmin": "-128", "qmax": "127"]
        let perChannel: [String: Checkpoint.Entry] = ["scale": .init(shape: [4], values: [0.1, 0.1, 0.1, 0.1]),
                                                      "zeroPoint": .init(shape: [4], values: [0, 0, 0, 0])]
        c.params["scalar.weight"] = .init(shape: [], values: [0.5])
        c.params["empty.weight"] = .init(shape: [0, 3], values: [])
        c.params["short.weight"] = .init(shape: [3, 1], values: [1, 2, 3])
        c.params["ok.weight"] = .init(shape: [4, 2], values: [0, 0.1, 0.2, 0.3, -0.1, 100, 0, 0])
        for p in ["scalar", "empty", "short", "ok"] { c.quant[p + ".weightQuantizer"] = perChannel; c.quantAttributes[p + ".weightQuantizer"] = attrs }
        c.quant["tensor.weightQuantizer"] = ["scale": .init(shape: [1], values: [0.1]), "zeroPoint": .init(shape: [1], values: [0])]
        c.quantAttributes["tensor.weightQuantizer"] = attrs
        c.params["tensor.weight"] = .init(shape: [0], values: [])
        let rows = Dictionary(uniqueKeysWithValues: QuantReport(c).rows.map { ($0.path, $0) })
        XCTAssertNil(rows["scalar.weightQuantizer"]!.clipped)
        XCTAssertEqual(rows["scalar.weightQuantizer"]!.note, "n/a (4 scales for weight [])")
        XCTAssertEqual(rows["empty.weightQuantizer"]!.note, "n/a (empty weight)")
        XCTAssertEqual(rows["tensor.weightQuantizer"]!.note, "n/a (empty weight)")
        XCTAssertNil(rows["short.weightQuantizer"]!.clipped)
        XCTAssertEqual(rows["ok.weightQuantizer"]!.clipped!, 1.0 / 8, accuracy: 1e-12)  // 100 is far off the grid
        XCTAssertTrue(QuantReport(c).format().contains("n/a (empty weight)"))
    }
}
