import Foundation
import CHDF5

/// A failure reading or writing an HDF5 file (checkpoints, array datasets): what went wrong, which
/// file, which entry, and how to fix it. The Checkpoint layer calls it `CheckpointError`.
public struct HDF5Error: Error, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable { case missingFile, notHDF5, corrupt, formatVersion, missingKeys, unexpectedKeys, shapeMismatch, io, invalid }
    public let kind: Kind
    public let file: String
    public let message: String
    public init(_ kind: Kind, file: String, _ message: String) { self.kind = kind; self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

/// Thin, checked wrapper over the HDF5 C API for the handful of calls checkpoints need.
/// Every failing call throws with the file and object it was working on.
public final class H5Handle {
    public let id: hid_t
    let close: (hid_t) -> herr_t
    public init(_ id: hid_t, close: @escaping (hid_t) -> herr_t) { self.id = id; self.close = close }
    deinit { if id >= 0 { _ = close(id) } }
}

public struct H5Writer {
    public let file: String
    let fid: H5Handle

    public init(creating path: String) throws {
        qat_H5_silence_errors()
        file = path
        let id = H5Fcreate(path, qat_H5F_ACC_TRUNC(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT())
        guard id >= 0 else { throw HDF5Error(.io, file: path, "cannot create the file (is the folder writable?)") }
        fid = H5Handle(id, close: H5Fclose)
    }

    public func group(_ path: String) throws -> H5Handle {
        let id = path == "/" ? H5Gopen2(fid.id, "/", qat_H5P_DEFAULT())
                             : H5Gcreate2(fid.id, path, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT())
        guard id >= 0 else { throw HDF5Error(.io, file: file, "cannot create group \(path)") }
        return H5Handle(id, close: H5Gclose)
    }

    /// Float32 dataset `name` (no slashes) under `parent` with the given shape.
    public func floats(_ parent: H5Handle, _ name: String, shape: [Int], _ data: UnsafePointer<Float>) throws {
        var dims = shape.map { hsize_t($0) }
        let space = H5Handle(shape.isEmpty ? qat_H5S_SCALAR_space() : H5Screate_simple(Int32(shape.count), &dims, nil), close: H5Sclose)
        let ds = H5Handle(H5Dcreate2(parent.id, name, qat_H5T_NATIVE_FLOAT(), space.id, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT()), close: H5Dclose)
        guard space.id >= 0, ds.id >= 0, H5Dwrite(ds.id, qat_H5T_NATIVE_FLOAT(), qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), data) >= 0 else {
            throw HDF5Error(.io, file: file, "cannot write dataset \(name) (disk full?)")
        }
    }

    /// Any numeric dataset of the given HDF5 memory type (uint8 images, int64 labels, ...).
    public func array(_ parent: H5Handle, _ name: String, shape: [Int], type: hid_t, _ data: UnsafeRawPointer) throws {
        var dims = shape.map { hsize_t($0) }
        let space = H5Handle(H5Screate_simple(Int32(shape.count), &dims, nil), close: H5Sclose)
        let ds = H5Handle(H5Dcreate2(parent.id, name, type, space.id, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT()), close: H5Dclose)
        guard space.id >= 0, ds.id >= 0, H5Dwrite(ds.id, type, qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), data) >= 0 else {
            throw HDF5Error(.io, file: file, "cannot write dataset \(name) (disk full?)")
        }
    }

    public func uint64s(_ parent: H5Handle, _ name: String, _ values: [UInt64]) throws {
        var dims = [hsize_t(values.count)]
        let space = H5Handle(H5Screate_simple(1, &dims, nil), close: H5Sclose)
        let ds = H5Handle(H5Dcreate2(parent.id, name, qat_H5T_NATIVE_UINT64(), space.id, qat_H5P_DEFAULT(), qat_H5P_DEFAULT(), qat_H5P_DEFAULT()), close: H5Dclose)
        let ok = values.withUnsafeBufferPointer { H5Dwrite(ds.id, qat_H5T_NATIVE_UINT64(), qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), $0.baseAddress) >= 0 }
        guard ds.id >= 0, ok else { throw HDF5Error(.io, file: file, "cannot write dataset \(name)") }
    }

    public func attr(_ obj: H5Handle, _ name: String, int64 v: Int64) throws { try scalar(obj, name, v, type: qat_H5T_NATIVE_INT64()) }
    public func attr(_ obj: H5Handle, _ name: String, uint64 v: UInt64) throws { try scalar(obj, name, v, type: qat_H5T_NATIVE_UINT64()) }

    private func scalar<T>(_ obj: H5Handle, _ name: String, _ v: T, type: hid_t) throws {
        let space = H5Handle(qat_H5S_SCALAR_space(), close: H5Sclose)
        let a = H5Handle(H5Acreate2(obj.id, name, type, space.id, qat_H5P_DEFAULT(), qat_H5P_DEFAULT()), close: H5Aclose)
        var x = v
        guard a.id >= 0, H5Awrite(a.id, type, &x) >= 0 else { throw HDF5Error(.io, file: file, "cannot write attribute \(name)") }
    }

    /// Variable-length UTF-8 string attribute (h5py reads it as `str`).
    public func attr(_ obj: H5Handle, _ name: String, string v: String) throws {
        let t = H5Handle(H5Tcopy(qat_H5T_C_S1()), close: H5Tclose)
        H5Tset_size(t.id, qat_H5T_VARIABLE())
        H5Tset_cset(t.id, H5T_CSET_UTF8)
        let space = H5Handle(qat_H5S_SCALAR_space(), close: H5Sclose)
        let a = H5Handle(H5Acreate2(obj.id, name, t.id, space.id, qat_H5P_DEFAULT(), qat_H5P_DEFAULT()), close: H5Aclose)
        let ok = v.withCString { cs -> Bool in
            var p: UnsafePointer<CChar>? = cs
            return H5Awrite(a.id, t.id, &p) >= 0
        }
        guard a.id >= 0, ok else { throw HDF5Error(.io, file: file, "cannot write attribute \(name)") }
    }

    public func flush() throws {
        guard H5Fflush(fid.id, H5F_SCOPE_GLOBAL) >= 0 else { throw HDF5Error(.io, file: file, "cannot flush (disk full?)") }
    }
}

public struct H5Reader {
    public let file: String
    let fid: H5Handle

    /// Opens read-only; distinguishes a missing file, a file that is not HDF5 and a damaged HDF5 file.
    public init(opening path: String) throws {
        qat_H5_silence_errors()
        file = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw HDF5Error(.missingFile, file: path, "file does not exist; check the path (run directories keep them under checkpoints/)")
        }
        guard let fh = FileHandle(forReadingAtPath: path) else { throw HDF5Error(.io, file: path, "cannot be read (permissions?)") }
        let head = fh.readData(ofLength: 8)
        try? fh.close()
        guard head == Data([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) else {
            throw HDF5Error(.notHDF5, file: path, "is not an HDF5 file (no HDF5 signature); expected a checkpoint written by qat")
        }
        let id = H5Fopen(path, qat_H5F_ACC_RDONLY(), qat_H5P_DEFAULT())
        guard id >= 0 else {
            throw HDF5Error(.corrupt, file: path, "is an HDF5 file that cannot be opened: truncated or corrupt (an interrupted copy?); use the previous checkpoint")
        }
        fid = H5Handle(id, close: H5Fclose)
    }

    public func exists(_ path: String) -> Bool {
        // Check each prefix: H5Lexists fails on a path whose parent is missing.
        var cur = ""
        for part in path.split(separator: "/") {
            cur += "/" + part
            if H5Lexists(fid.id, cur, qat_H5P_DEFAULT()) <= 0 { return false }
        }
        return true
    }

    public func group(_ path: String) throws -> H5Handle {
        let id = H5Gopen2(fid.id, path, qat_H5P_DEFAULT())
        guard id >= 0 else { throw HDF5Error(.corrupt, file: file, "cannot open group \(path)") }
        return H5Handle(id, close: H5Gclose)
    }

    /// Names of the links in a group, in name order.
    public func members(_ g: H5Handle, path: String) throws -> [String] {
        var info = H5G_info_t()
        guard H5Gget_info(g.id, &info) >= 0 else { throw HDF5Error(.corrupt, file: file, "cannot list group \(path)") }
        var out: [String] = []
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, qat_H5P_DEFAULT())
            guard n >= 0 else { throw HDF5Error(.corrupt, file: file, "cannot read member \(i) of \(path)") }
            var buf = [CChar](repeating: 0, count: Int(n) + 1)
            _ = H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, qat_H5P_DEFAULT())
            out.append(String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return out
    }

    public func isGroup(_ parent: H5Handle, _ name: String) -> Bool {
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(parent.id, name, &info, UInt32(H5O_INFO_BASIC), qat_H5P_DEFAULT()) >= 0 else { return false }
        return info.type == H5O_TYPE_GROUP
    }

    /// A float dataset's shape and values (any stored float type is converted to Float32).
    public func floats(_ parent: H5Handle, _ name: String, where path: String) throws -> ([Int], [Float]) {
        let ds = H5Handle(H5Dopen2(parent.id, name, qat_H5P_DEFAULT()), close: H5Dclose)
        guard ds.id >= 0 else { throw HDF5Error(.corrupt, file: file, "cannot open dataset \(path)") }
        let t = H5Handle(H5Dget_type(ds.id), close: H5Tclose)
        guard H5Tget_class(t.id) == H5T_FLOAT else { throw HDF5Error(.invalid, file: file, "dataset \(path) is not floating point") }
        let space = H5Handle(H5Dget_space(ds.id), close: H5Sclose)
        let rank = Int(H5Sget_simple_extent_ndims(space.id))
        guard rank >= 0 else { throw HDF5Error(.corrupt, file: file, "cannot read the shape of \(path)") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        if rank > 0 { H5Sget_simple_extent_dims(space.id, &dims, nil) }
        let shape = rank == 0 ? [] : dims.prefix(rank).map { Int($0) }
        var values = [Float](repeating: 0, count: shape.reduce(1, *))
        let ok = values.withUnsafeMutableBufferPointer { H5Dread(ds.id, qat_H5T_NATIVE_FLOAT(), qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), $0.baseAddress) >= 0 }
        guard ok else { throw HDF5Error(.corrupt, file: file, "cannot read dataset \(path): truncated or corrupt file") }
        return (shape, values)
    }

    public func uint64s(_ parent: H5Handle, _ name: String, where path: String) throws -> [UInt64] {
        let ds = H5Handle(H5Dopen2(parent.id, name, qat_H5P_DEFAULT()), close: H5Dclose)
        guard ds.id >= 0 else { throw HDF5Error(.corrupt, file: file, "cannot open dataset \(path)") }
        let space = H5Handle(H5Dget_space(ds.id), close: H5Sclose)
        let n = Int(H5Sget_simple_extent_npoints(space.id))
        var v = [UInt64](repeating: 0, count: max(n, 0))
        let ok = v.withUnsafeMutableBufferPointer { H5Dread(ds.id, qat_H5T_NATIVE_UINT64(), qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), $0.baseAddress) >= 0 }
        guard n >= 0, ok else { throw HDF5Error(.corrupt, file: file, "cannot read dataset \(path)") }
        return v
    }

    /// Shape of a dataset and its values converted to `type` (e.g. uint8 or int64), raw bytes.
    public func array(_ parent: H5Handle, _ name: String, type: hid_t, elementSize: Int, where path: String) throws -> ([Int], [UInt8]) {
        let ds = H5Handle(H5Dopen2(parent.id, name, qat_H5P_DEFAULT()), close: H5Dclose)
        guard ds.id >= 0 else { throw HDF5Error(.invalid, file: file, "has no dataset \(path)") }
        let space = H5Handle(H5Dget_space(ds.id), close: H5Sclose)
        let rank = Int(H5Sget_simple_extent_ndims(space.id))
        guard rank >= 0 else { throw HDF5Error(.corrupt, file: file, "cannot read the shape of \(path)") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        if rank > 0 { H5Sget_simple_extent_dims(space.id, &dims, nil) }
        let shape = rank == 0 ? [] : dims.prefix(rank).map { Int($0) }
        var bytes = [UInt8](repeating: 0, count: shape.reduce(1, *) * elementSize)
        let ok = bytes.withUnsafeMutableBytes { H5Dread(ds.id, type, qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), $0.baseAddress) >= 0 }
        guard ok else { throw HDF5Error(.corrupt, file: file, "cannot read dataset \(path) as the requested type: truncated file or wrong type") }
        return (shape, bytes)
    }

    public func hasAttr(_ obj: H5Handle, _ name: String) -> Bool { H5Aexists(obj.id, name) > 0 }

    public func int64(_ obj: H5Handle, _ name: String) throws -> Int64 {
        try scalar(obj, name, 0 as Int64, type: qat_H5T_NATIVE_INT64(), what: "an integer")
    }

    public func uint64(_ obj: H5Handle, _ name: String) throws -> UInt64 {
        try scalar(obj, name, 0 as UInt64, type: qat_H5T_NATIVE_UINT64(), what: "an unsigned integer")
    }

    private func scalar<T>(_ obj: H5Handle, _ name: String, _ initial: T, type: hid_t, what: String) throws -> T {
        let a = H5Handle(H5Aopen(obj.id, name, qat_H5P_DEFAULT()), close: H5Aclose)
        var v = initial
        guard a.id >= 0, H5Aread(a.id, type, &v) >= 0 else {
            throw HDF5Error(.invalid, file: file, "attribute \(name) is missing or not \(what)")
        }
        return v
    }

    public func string(_ obj: H5Handle, _ name: String) throws -> String {
        let a = H5Handle(H5Aopen(obj.id, name, qat_H5P_DEFAULT()), close: H5Aclose)
        guard a.id >= 0 else { throw HDF5Error(.invalid, file: file, "attribute \(name) is missing") }
        let t = H5Handle(H5Tcopy(qat_H5T_C_S1()), close: H5Tclose)
        H5Tset_size(t.id, qat_H5T_VARIABLE())
        H5Tset_cset(t.id, H5T_CSET_UTF8)
        var p: UnsafeMutablePointer<CChar>? = nil
        guard H5Aread(a.id, t.id, &p) >= 0, let p else { throw HDF5Error(.invalid, file: file, "attribute \(name) is not a string") }
        defer { H5free_memory(p) }
        return String(cString: p)
    }
}
