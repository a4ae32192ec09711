import CHDF5

/// The one place where a shape read from a file becomes an element count. Every dataset and attribute
/// the readers load passes through `Extent.validate` before anything is allocated: a crafted file can
/// declare dimensions whose product wraps past `Int.max` (release builds are `-Ounchecked`, so a
/// wrapped count would size a small buffer that `H5Dread` then overruns) or a shape far beyond memory.
public enum Extent {
    /// HDF5's own rank limit (H5S_MAX_RANK).
    public static let maxRank = 32

    /// Shape and element count of a dataspace, checked with overflow-reporting arithmetic against
    /// `maxElements` (and `elementSize * count` against `Int.max`), and against `expected` when given.
    public static func validate(space: hid_t, elementSize: Int, maxElements: Int, expected: [Int]? = nil,
                                file: String, path: String) throws -> (shape: [Int], count: Int) {
        let cls = H5Sget_simple_extent_type(space)
        guard cls == H5S_SIMPLE || cls == H5S_SCALAR else {
            throw HDF5Error(.invalid, file: file, "\(path) has no data (null or unknown dataspace)")
        }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0, rank <= maxRank else { throw HDF5Error(.corrupt, file: file, "cannot read the shape of \(path)") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        if rank > 0, H5Sget_simple_extent_dims(space, &dims, nil) != rank {
            throw HDF5Error(.corrupt, file: file, "cannot read the shape of \(path)")
        }
        return try validate(dims: Array(dims.prefix(rank)), elementSize: elementSize, maxElements: maxElements,
                            expected: expected, file: file, path: path)
    }

    /// The arithmetic part of `validate(space:...)`, on raw HDF5 dimensions.
    public static func validate(dims: [hsize_t], elementSize: Int, maxElements: Int, expected: [Int]? = nil,
                                file: String, path: String) throws -> (shape: [Int], count: Int) {
        precondition(elementSize > 0 && maxElements >= 0, "Extent.validate: element size and cap must be positive")
        let declared = "[" + dims.map(String.init).joined(separator: ", ") + "]"
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        var count = 1
        for d in dims {
            guard let n = Int(exactly: d) else { throw tooLarge(file, path, declared, maxElements) }
            let (p, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow else { throw tooLarge(file, path, declared, maxElements) }
            shape.append(n); count = p
        }
        // The product of the dimensions seen so far never shrinks unless a later one is 0, so checking
        // only the total is enough once no step overflowed.
        guard count <= maxElements else { throw tooLarge(file, path, declared, maxElements) }
        guard !count.multipliedReportingOverflow(by: elementSize).overflow else { throw tooLarge(file, path, declared, maxElements) }
        if let expected, expected != shape {
            throw HDF5Error(.shapeMismatch, file: file, "\(path) has shape \(declared), expected \(expected)")
        }
        return (shape, count)
    }

    /// Element count of an in-memory shape; nil for a negative dimension or an overflowing product.
    public static func count(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow else { return nil }
            n = p
        }
        return n
    }

    static func tooLarge(_ file: String, _ path: String, _ declared: String, _ cap: Int) -> HDF5Error {
        HDF5Error(.tooLarge, file: file, "\(path) declares shape \(declared), more than the \(cap) elements this reader accepts for it: a damaged or crafted file")
    }
}
