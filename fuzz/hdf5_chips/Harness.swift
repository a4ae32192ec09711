// libFuzzer harness: bytes written to a file and loaded with HDF5ClassificationSource (the
// `hdf5_chips` data format), compiled against the Datasets module by scripts/fuzz.sh. Loads are capped
// at 2^20 bytes of pixels (the cap arithmetic is the same as at the default 4 GiB). Beyond "no crash"
// (and no out-of-bounds access: ASan), it traps when anything but DataError or HDF5Error escapes, or
// a loaded set breaks what training relies on: [N, H, W, C] within the caps, N labels (and clean labels)
// in range, every sample an H x W x C image with one full-frame box.
//
// QAT_FUZZ_SEEDS=DIR writes the seed files of fuzz/corpus/hdf5_chips into DIR and exits.
import Foundation
import CHDF5
import HDF5
import Datasets

private let maxImageBytes = 1 << 20
private let dir: String = {
    // In memory when the machine has /dev/shm: one file write per input, so a disk would set the pace.
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm/" : NSTemporaryDirectory()
    let d = base + "qat-fuzz-hdf5-chips-\(getpid())"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: dir) }
    return d
}()

/// A chips file as Chips.write lays it out (H5Writer: checksums and trailer), and one without the
/// trailer and checksums so that mutations reach libhdf5's decoding and our shape checks.
private func seeds(_ out: String) throws {
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    for (name, n, side, c, classes) in [("chips", 3, 4, 3, "a\nb"), ("gray-noclasses", 2, 3, 1, "")] {
        let w = try H5Writer(creating: "\(out)/\(name).h5")
        let root = try w.group("/")
        let pixels = (0..<(n * side * side * c)).map { UInt8($0 % 256) }
        let labels = (0..<n).map { Int64($0 % 2) }
        try pixels.withUnsafeBytes { try w.array(root, "images", shape: [n, side, side, c], type: qat_H5T_NATIVE_UINT8(), $0.baseAddress!) }
        try labels.withUnsafeBytes { try w.array(root, "labels", shape: [n], type: qat_H5T_NATIVE_INT64(), $0.baseAddress!) }
        try labels.withUnsafeBytes { try w.array(root, "clean_labels", shape: [n], type: qat_H5T_NATIVE_INT64(), $0.baseAddress!) }
        if !classes.isEmpty { try w.attr(root, "classes", string: classes) }
        try w.commit()
    }
    // h5py-style: plain HDF5 without our trailer or crc32 attributes.
    let f = H5Fcreate("\(out)/plain.h5", qat_H5F_ACC_TRUNC(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT())
    func dataset(_ name: String, _ dims: [hsize_t], _ type: hid_t, _ bytes: UnsafeRawPointer) {
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        let ds = H5Dcreate2(f, name, type, space, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT())
        H5Dwrite(ds, type, qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), bytes)
        H5Dclose(ds); H5Sclose(space)
    }
    let px = [UInt8](repeating: 7, count: 2 * 2 * 2 * 3), lb: [Int64] = [0, 1]
    px.withUnsafeBytes { dataset("images", [2, 2, 2, 3], qat_H5T_NATIVE_UINT8(), $0.baseAddress!) }
    lb.withUnsafeBytes { dataset("labels", [2], qat_H5T_NATIVE_INT64(), $0.baseAddress!) }
    H5Fclose(f)
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    if let out = ProcessInfo.processInfo.environment["QAT_FUZZ_SEEDS"] {
        do { try seeds(out); exit(0) } catch { fatalError("seeds: \(error)") }
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChips(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = dir + "/input.h5"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0 && write(fd, data, size) == size)
    close(fd)
    do {
        let s = try HDF5ClassificationSource(path: path, maxImageBytes: maxImageBytes)
        let (n, h, w, c) = (s.shape[0], s.shape[1], s.shape[2], s.shape[3])
        guard s.shape.count == 4, n >= 0, (1...HDF5ClassificationSource.maxSide).contains(h), (1...HDF5ClassificationSource.maxSide).contains(w),
              [1, 3, 4].contains(c), s.images.count == n * h * w * c, s.images.count <= maxImageBytes, s.labels.count == n, s.count == n else {
            fatalError("loaded shape \(s.shape) with \(s.images.count) bytes and \(s.labels.count) labels")
        }
        for l in s.labels + (s.cleanLabels ?? []) where l < 0 || (!s.classes.isEmpty && l >= s.classes.count) { fatalError("label \(l) out of range") }
        if let clean = s.cleanLabels, clean.count != n { fatalError("\(clean.count) clean labels for \(n) samples") }
        for i in [0, n - 1] where i >= 0 {
            let x = try s.sample(i)
            guard x.image.width == w, x.image.height == h, x.image.channels == c, x.labels == [s.labels[i]], x.boxes == [[0, 0, Double(w), Double(h)]] else {
                fatalError("sample \(i) does not match the set's layout")
            }
        }
    } catch is DataError {
    } catch is HDF5Error {
    } catch {
        fatalError("HDF5ClassificationSource threw \(type(of: error)), not DataError or HDF5Error: \(error)")
    }
    return 0
}
