import Foundation
import CHDF5
import Files

/// Builds an HDF5 file in memory (HDF5's core driver without a backing store) and writes it with
/// `commit()`. libhdf5 never does disk I/O here: on a full disk its close path fails half-way, leaves
/// the file in its open-file table and crashes in `H5_term_library` at process exit. With the image in
/// memory, every disk error surfaces in `AtomicFile.write` as an ordinary `write(2)` errno.
///
/// Handles close in HDF5's order, each exactly once: datasets and attributes right after they are
/// written, groups (newest first) and then the file in `commit()` or, on an error path, in `deinit`.
/// Every dataset gets a `crc32` attribute: CRC-32 of its bytes as stored (see `CRC32`), and the file
/// a `Trailer` whose checksum covers everything else.
public final class H5Writer {
    /// The destination written by `commit()`.
    public let file: String
    private let fid: H5Handle
    private var groups: [(handle: H5Handle, path: String)] = []
    /// Where each dataset's data lies in the image, for the trailer.
    private var dataRanges: [(offset: Int, length: Int)] = []
    private var committed = false

    public init(creating path: String) throws {
        qat_H5_silence_errors()
        file = path
        let fapl = H5Handle(H5Pcreate(qat_H5P_FILE_ACCESS()), close: H5Pclose)
        // 4 MiB growth steps: large images grow by realloc (mremap), small checkpoints stay small.
        guard fapl.isOpen, H5Pset_fapl_core(fapl.id, 4 << 20, false) >= 0 else {
            throw HDF5Error(.io, file: path, "HDF5 cannot set up an in-memory file")
        }
        // The name only identifies the in-memory file inside libhdf5 (which refuses two open files of
        // one name); nothing is created under it.
        let id = H5Fcreate(path + ".in-memory-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", qat_H5F_ACC_TRUNC(), qat_H5P_DEFAULT(), fapl.id)
        guard id >= 0 else { throw HDF5Error(.io, file: path, "HDF5 cannot create an in-memory file (out of memory?)") }
        fid = H5Handle(id, close: H5Fclose)
    }

    deinit { closeAll() }

    /// Opens "/" or creates a group; it stays open until `commit()` (or the writer's end) closes it.
    public func group(_ path: String) throws -> H5Handle {
        precondition(!committed, "H5Writer: group after commit")
        let id = path == "/" ? H5Gopen2(fid.id, "/", qat_H5P_DEFAULT())
                             : H5Gcreate2(fid.id, path, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT())
        guard id >= 0 else { throw HDF5Error(.io, file: file, "cannot create group \(path)") }
        let h = H5Handle(id, close: H5Gclose)
        groups.append((h, path))
        return h
    }

    private func where_(_ parent: H5Handle, _ name: String) -> String {
        let p = groups.first { $0.handle === parent }?.path ?? ""
        return (p == "/" ? "" : p) + "/" + name
    }

    /// Float32 dataset `name` (no slashes) under `parent` with the given shape.
    public func floats(_ parent: H5Handle, _ name: String, shape: [Int], _ data: UnsafePointer<Float>) throws {
        try dataset(parent, name, shape: shape, type: qat_H5T_NATIVE_FLOAT(), UnsafeRawPointer(data))
    }

    /// Any numeric dataset of the given HDF5 memory type (uint8 images, int64 labels, ...).
    public func array(_ parent: H5Handle, _ name: String, shape: [Int], type: hid_t, _ data: UnsafeRawPointer) throws {
        try dataset(parent, name, shape: shape, type: type, data)
    }

    public func uint64s(_ parent: H5Handle, _ name: String, _ values: [UInt64]) throws {
        try values.withUnsafeBytes { try dataset(parent, name, shape: [values.count], type: qat_H5T_NATIVE_UINT64(), $0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!) }
    }

    private func dataset(_ parent: H5Handle, _ name: String, shape: [Int], type: hid_t, _ data: UnsafeRawPointer) throws {
        precondition(!committed, "H5Writer: dataset after commit")
        let path = where_(parent, name)
        guard let count = Extent.count(shape) else { preconditionFailure("H5Writer: shape \(shape) of \(path) is negative or overflows") }
        var dims = shape.map { hsize_t($0) }
        let space = H5Handle(shape.isEmpty ? qat_H5S_SCALAR_space() : H5Screate_simple(Int32(shape.count), &dims, nil), close: H5Sclose)
        guard space.isOpen else { throw HDF5Error(.io, file: file, "cannot describe the shape \(shape) of \(path)") }
        let ds = H5Handle(H5Dcreate2(parent.id, name, type, space.id, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT()), close: H5Dclose)
        guard ds.isOpen else { throw HDF5Error(.io, file: file, "cannot create dataset \(path)") }
        guard count == 0 || H5Dwrite(ds.id, type, qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), data) >= 0 else {
            throw HDF5Error(.io, file: file, "cannot write dataset \(path) (out of memory?)")
        }
        let offset = H5Dget_offset(ds.id), stored = H5Dget_storage_size(ds.id)
        if offset != haddr_t.max, stored > 0 { dataRanges.append((Int(offset), Int(stored))) }
        let crc = CRC32.checksum(UnsafeRawBufferPointer(start: data, count: count * H5Tget_size(type)))
        try scalar(ds, "crc32", UInt64(crc), type: qat_H5T_NATIVE_UINT64(), on: path)
        guard ds.close(), space.close() else { throw HDF5Error(.io, file: file, "cannot close dataset \(path)") }
    }

    public func attr(_ obj: H5Handle, _ name: String, int64 v: Int64) throws { try scalar(obj, name, v, type: qat_H5T_NATIVE_INT64(), on: nil) }
    public func attr(_ obj: H5Handle, _ name: String, uint64 v: UInt64) throws { try scalar(obj, name, v, type: qat_H5T_NATIVE_UINT64(), on: nil) }

    private func scalar<T: BitwiseCopyable>(_ obj: H5Handle, _ name: String, _ v: T, type: hid_t, on path: String?) throws {
        let space = H5Handle(qat_H5S_SCALAR_space(), close: H5Sclose)
        let a = H5Handle(H5Acreate2(obj.id, name, type, space.id, qat_H5P_DEFAULT(), qat_H5P_DEFAULT()), close: H5Aclose)
        var x = v
        guard a.isOpen, H5Awrite(a.id, type, &x) >= 0, a.close() else {
            throw HDF5Error(.io, file: file, "cannot write attribute \(name)" + (path.map { " of \($0)" } ?? ""))
        }
    }

    /// Variable-length UTF-8 string attribute (h5py reads it as `str`).
    public func attr(_ obj: H5Handle, _ name: String, string v: String) throws {
        let t = H5Handle(H5Tcopy(qat_H5T_C_S1()), close: H5Tclose)
        guard t.isOpen, H5Tset_size(t.id, qat_H5T_VARIABLE()) >= 0, H5Tset_cset(t.id, H5T_CSET_UTF8) >= 0 else {
            throw HDF5Error(.io, file: file, "cannot write attribute \(name)")
        }
        let space = H5Handle(qat_H5S_SCALAR_space(), close: H5Sclose)
        let a = H5Handle(H5Acreate2(obj.id, name, t.id, space.id, qat_H5P_DEFAULT(), qat_H5P_DEFAULT()), close: H5Aclose)
        let ok = a.isOpen && v.withCString { cs -> Bool in
            var p: UnsafePointer<CChar>? = cs
            return H5Awrite(a.id, t.id, &p) >= 0
        }
        guard ok, a.close() else { throw HDF5Error(.io, file: file, "cannot write attribute \(name)") }
    }

    /// Closes every object (groups, then the file) and writes the file image to `file` atomically
    /// (`AtomicFile`). After a failure the previous file at `file` is unchanged. `replacing` says what
    /// may be at `file` already (a checkpoint replaces its previous version; a data set file written as
    /// a command's output must not replace a checkpoint). `faults` is a test hook.
    public func commit(replacing: Replacing = .anything, faults: WriteFaults = WriteFaults()) throws {
        precondition(!committed, "H5Writer: commit twice")
        committed = true
        guard H5Fflush(fid.id, H5F_SCOPE_GLOBAL) >= 0 else {
            closeAll()
            throw HDF5Error(.io, file: file, "HDF5 cannot finish the in-memory file (out of memory?)")
        }
        let size = H5Fget_file_image(fid.id, nil, 0)
        var image = [UInt8](repeating: 0, count: max(size, 0))
        let copied = size > 0 ? image.withUnsafeMutableBytes { H5Fget_file_image(fid.id, $0.baseAddress, size) } : -1
        // Closing is part of success: a file HDF5 could not close is not a file to publish.
        guard closeAll() else { throw HDF5Error(.io, file: file, "HDF5 could not close the in-memory file; nothing was written") }
        guard size > 0, copied == size else { throw HDF5Error(.io, file: file, "HDF5 could not produce the file image; nothing was written") }
        image += image.withUnsafeBytes { Trailer.make(image: $0, dataRanges: dataRanges) }
        do { try image.withUnsafeBytes { try AtomicFile.write($0, to: file, replacing: replacing, faults: faults) } }
        catch let e as FileError { throw HDF5Error(e.kind == .notAFile ? .notAFile : .io, file: file, e.path == file ? e.message : e.description) }
    }

    /// Closes the open groups, newest first, then the file; each handle once. False if any close failed.
    @discardableResult
    private func closeAll() -> Bool {
        var ok = true
        for g in groups.reversed() where g.handle.isOpen { ok = g.handle.close() && ok }
        groups.removeAll()
        if fid.isOpen { ok = fid.close() && ok }
        return ok
    }
}
