import Foundation
import CHDF5

/// Checked reads from an HDF5 file. Every failing call throws with the file and the object it was
/// working on; every shape passes `Extent.validate` (with the caller's cap) before a buffer exists;
/// every dataset that carries a `crc32` attribute is verified after reading.
public struct H5Reader {
    public let file: String
    let fid: H5Handle
    /// Refuse datasets without a `crc32` attribute: set for files that declare they have checksums,
    /// so a stripped attribute is caught too.
    public var requireChecksums = false
    /// The file's `Trailer` was present and matched: its HDF5 metadata is as written.
    public let hasTrailer: Bool

    /// Cap on the elements of one dataset when the caller has no tighter one (2^28: 1 GiB of float32).
    public static let defaultMaxElements = 1 << 28

    /// Opens read-only; distinguishes a missing path, a directory or other non-file, a file that is not
    /// HDF5 and a damaged HDF5 file.
    public init(opening path: String) throws {
        qat_H5_silence_errors()
        file = path
        var st = stat()
        guard stat(path, &st) == 0 else {
            if errno == ENOENT || errno == ENOTDIR {
                throw HDF5Error(.missingFile, file: path, "file does not exist; check the path (run directories keep them under checkpoints/)")
            }
            throw HDF5Error(.io, file: path, "cannot be read: \(String(cString: strerror(errno)))")
        }
        if st.st_mode & S_IFMT == S_IFDIR {
            let guess = path + "/checkpoints/last.h5"
            let hint = FileManager.default.fileExists(atPath: guess) ? "did you mean \(guess)?" : "give the .h5 file inside it"
            throw HDF5Error(.notAFile, file: path, "is a directory, not an HDF5 file; \(hint)")
        }
        guard st.st_mode & S_IFMT == S_IFREG else { throw HDF5Error(.notAFile, file: path, "is not a regular file") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HDF5Error(.io, file: path, "cannot be read: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 8)
        guard Foundation.read(fd, &head, 8) == 8, head == [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A] else {
            throw HDF5Error(.notHDF5, file: path, "is not an HDF5 file (no HDF5 signature); expected a file written by qat")
        }
        // Before libhdf5 decodes a byte of it (see `Trailer`).
        hasTrailer = try Trailer.verify(fd: fd, size: Int(st.st_size), file: path)
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
            guard H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, qat_H5P_DEFAULT()) == n else {
                throw HDF5Error(.corrupt, file: file, "cannot read member \(i) of \(path)")
            }
            out.append(String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return out
    }

    public func isGroup(_ parent: H5Handle, _ name: String) -> Bool {
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(parent.id, name, &info, UInt32(H5O_INFO_BASIC), qat_H5P_DEFAULT()) >= 0 else { return false }
        return info.type == H5O_TYPE_GROUP
    }

    // MARK: datasets

    /// An open dataset whose shape passed `Extent.validate`.
    struct Checked {
        let ds: H5Handle
        let fileType: H5Handle
        let shape: [Int]
        let count: Int
    }

    func checked(_ parent: H5Handle, _ name: String, where path: String, memType: hid_t,
                 maxElements: Int, expected: [Int]?) throws -> Checked {
        let ds = H5Handle(H5Dopen2(parent.id, name, qat_H5P_DEFAULT()), close: H5Dclose)
        guard ds.isOpen else { throw HDF5Error(.invalid, file: file, "has no dataset \(path)") }
        let ft = H5Handle(H5Dget_type(ds.id), close: H5Tclose)
        let stored = H5Tget_class(ft.id), wanted = H5Tget_class(memType)
        guard ft.isOpen, stored == wanted else {
            throw HDF5Error(.invalid, file: file, "dataset \(path) holds \(H5Reader.name(stored)) values, expected \(H5Reader.name(wanted))")
        }
        let space = H5Handle(H5Dget_space(ds.id), close: H5Sclose)
        guard space.isOpen else { throw HDF5Error(.corrupt, file: file, "cannot read the shape of \(path)") }
        let (shape, count) = try Extent.validate(space: space.id, elementSize: H5Tget_size(memType), maxElements: maxElements,
                                                 expected: expected, file: file, path: path)
        return Checked(ds: ds, fileType: ft, shape: shape, count: count)
    }

    /// Reads all of a checked dataset into `buffer` (exactly `count` elements of `memType`), then
    /// verifies its checksum.
    func read(_ c: Checked, memType: hid_t, into buffer: UnsafeMutableRawBufferPointer, where path: String) throws {
        precondition(buffer.count == c.count * H5Tget_size(memType), "H5Reader: buffer does not match the validated extent")
        if c.count > 0 {
            guard H5Dread(c.ds.id, memType, qat_H5S_ALL(), qat_H5S_ALL(), qat_H5P_DEFAULT(), buffer.baseAddress) >= 0 else {
                throw HDF5Error(.corrupt, file: file, "cannot read dataset \(path): truncated or corrupt file")
            }
        }
        try verifyChecksum(c, memType: memType, UnsafeRawBufferPointer(buffer), where: path)
    }

    func verifyChecksum(_ c: Checked, memType: hid_t, _ bytes: UnsafeRawBufferPointer, where path: String) throws {
        guard H5Aexists(c.ds.id, "crc32") > 0 else {
            if requireChecksums { throw HDF5Error(.checksum, file: file, "\(path) has no crc32 attribute although the file declares checksums: a damaged or edited file") }
            return
        }
        let stored = try uint64(c.ds, "crc32", of: path)
        // The checksum covers the stored bytes; values converted from another stored type cannot be checked.
        guard H5Tequal(c.fileType.id, memType) > 0 else {
            throw HDF5Error(.checksum, file: file, "\(path) has a crc32 attribute but is stored as another type than it is read as; cannot verify it")
        }
        let actual = CRC32.checksum(bytes)
        guard stored == UInt64(actual) else {
            throw HDF5Error(.checksum, file: file, "\(path) fails its checksum (crc32 stored \(String(stored, radix: 16)), data \(String(actual, radix: 16))): the file was damaged on disk or in a copy; use an earlier checkpoint")
        }
    }

    /// Shape of a dataset, validated against `maxElements`, without reading it.
    public func shape(_ parent: H5Handle, _ name: String, type: hid_t, where path: String,
                      maxElements: Int = H5Reader.defaultMaxElements) throws -> [Int] {
        try checked(parent, name, where: path, memType: type, maxElements: maxElements, expected: nil).shape
    }

    /// A float dataset's shape and values (any stored float type is converted to Float32).
    public func floats(_ parent: H5Handle, _ name: String, where path: String,
                       maxElements: Int = H5Reader.defaultMaxElements, expected: [Int]? = nil) throws -> ([Int], [Float]) {
        let c = try checked(parent, name, where: path, memType: qat_H5T_NATIVE_FLOAT(), maxElements: maxElements, expected: expected)
        var values = [Float](repeating: 0, count: c.count)
        try values.withUnsafeMutableBytes { try read(c, memType: qat_H5T_NATIVE_FLOAT(), into: $0, where: path) }
        return (c.shape, values)
    }

    public func uint64s(_ parent: H5Handle, _ name: String, where path: String,
                        maxElements: Int = H5Reader.defaultMaxElements, expected: [Int]? = nil) throws -> [UInt64] {
        let c = try checked(parent, name, where: path, memType: qat_H5T_NATIVE_UINT64(), maxElements: maxElements, expected: expected)
        var values = [UInt64](repeating: 0, count: c.count)
        try values.withUnsafeMutableBytes { try read(c, memType: qat_H5T_NATIVE_UINT64(), into: $0, where: path) }
        return values
    }

    /// Shape of a dataset and its values converted to `type` (e.g. uint8 or int64), raw bytes.
    public func array(_ parent: H5Handle, _ name: String, type: hid_t, where path: String,
                      maxElements: Int = H5Reader.defaultMaxElements, expected: [Int]? = nil) throws -> ([Int], [UInt8]) {
        let c = try checked(parent, name, where: path, memType: type, maxElements: maxElements, expected: expected)
        var bytes = [UInt8](repeating: 0, count: c.count * H5Tget_size(type))
        try bytes.withUnsafeMutableBytes { try read(c, memType: type, into: $0, where: path) }
        return (c.shape, bytes)
    }

    static func name(_ c: H5T_class_t) -> String {
        switch c {
        case H5T_INTEGER: return "integer"
        case H5T_FLOAT: return "floating-point"
        case H5T_STRING: return "string"
        default: return "non-numeric"
        }
    }

    // MARK: attributes

    public func hasAttr(_ obj: H5Handle, _ name: String) -> Bool { H5Aexists(obj.id, name) > 0 }

    public func int64(_ obj: H5Handle, _ name: String, of path: String = "/") throws -> Int64 {
        try scalar(obj, name, 0 as Int64, type: qat_H5T_NATIVE_INT64(), of: path)
    }

    public func uint64(_ obj: H5Handle, _ name: String, of path: String = "/") throws -> UInt64 {
        try scalar(obj, name, 0 as UInt64, type: qat_H5T_NATIVE_UINT64(), of: path)
    }

    /// Opens attribute `name` and checks it holds exactly one value of `type`'s class.
    private func attribute(_ obj: H5Handle, _ name: String, type: hid_t, of path: String, what: String) throws -> (H5Handle, H5Handle) {
        let a = H5Handle(H5Aopen(obj.id, name, qat_H5P_DEFAULT()), close: H5Aclose)
        guard a.isOpen else { throw HDF5Error(.invalid, file: file, "attribute \(name) of \(path) is missing") }
        let ft = H5Handle(H5Aget_type(a.id), close: H5Tclose)
        let space = H5Handle(H5Aget_space(a.id), close: H5Sclose)
        guard ft.isOpen, space.isOpen, H5Tget_class(ft.id) == H5Tget_class(type) else {
            throw HDF5Error(.invalid, file: file, "attribute \(name) of \(path) is not \(what)")
        }
        // One value: H5Aread fills as many as the attribute holds, and the destination is one variable.
        let (_, count) = try Extent.validate(space: space.id, elementSize: max(H5Tget_size(type), 1), maxElements: 1,
                                             file: file, path: "attribute \(name) of \(path)")
        guard count == 1 else { throw HDF5Error(.invalid, file: file, "attribute \(name) of \(path) holds \(count) values, expected one") }
        return (a, ft)
    }

    private func scalar<T: BitwiseCopyable>(_ obj: H5Handle, _ name: String, _ initial: T, type: hid_t, of path: String) throws -> T {
        let what = type == qat_H5T_NATIVE_INT64() ? "an integer" : "an unsigned integer"
        let (a, _) = try attribute(obj, name, type: type, of: path, what: what)
        var v = initial
        guard H5Aread(a.id, type, &v) >= 0 else { throw HDF5Error(.invalid, file: file, "attribute \(name) of \(path) is not \(what)") }
        return v
    }

    /// A variable-length string attribute (what `H5Writer` and h5py's `str` write).
    public func string(_ obj: H5Handle, _ name: String, of path: String = "/") throws -> String {
        let t = H5Handle(H5Tcopy(qat_H5T_C_S1()), close: H5Tclose)
        H5Tset_size(t.id, qat_H5T_VARIABLE())
        H5Tset_cset(t.id, H5T_CSET_UTF8)
        let (a, ft) = try attribute(obj, name, type: t.id, of: path, what: "a string")
        guard H5Tis_variable_str(ft.id) > 0 else {
            throw HDF5Error(.invalid, file: file, "attribute \(name) of \(path) is a fixed-length string; expected a variable-length UTF-8 string")
        }
        var p: UnsafeMutablePointer<CChar>? = nil
        guard H5Aread(a.id, t.id, &p) >= 0, let p else { throw HDF5Error(.invalid, file: file, "attribute \(name) of \(path) is not a string") }
        defer { H5free_memory(p) }
        return String(cString: p)
    }
}
