import Foundation

/// A checksummed trailer after the HDF5 image of every file `H5Writer` writes, verified by `H5Reader`
/// before libhdf5 parses anything. libhdf5's decoders are not safe on damaged input (the checkpoint
/// fuzzer found a heap overflow in H5HG_read from a few changed metadata bytes, and HDF5's tracker lists
/// many more), so a damaged file of ours is refused by our code first. Dataset data is left out of the
/// trailer's checksum (libhdf5 copies those bytes, it never decodes them) so a damaged weight is still
/// reported by name, by its `crc32` attribute.
///
/// Layout after the HDF5 image (`imageLength` bytes), little-endian:
///     n x (offset u64, length u64)    data ranges left out of the checksum, sorted, inside the image
///     n u64, imageLength u64
///     crc32 u32 of the image without the data ranges
///     crc32 u32 of the trailer bytes before it
///     "QATTRLR1"
/// libhdf5 ignores bytes past the end of its address space, so h5py and earlier qat builds read these
/// files as before; files without a trailer (earlier files, other tools) are read unverified.
enum Trailer {
    static let magic = Array("QATTRLR1".utf8)
    static let footerSize = 32

    /// The trailer for `image`, whose dataset data lies in `dataRanges`.
    static func make(image: UnsafeRawBufferPointer, dataRanges: [(offset: Int, length: Int)]) -> [UInt8] {
        let ranges = dataRanges.filter { $0.length > 0 }.sorted { $0.offset < $1.offset }
        var out: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        for r in ranges { put(UInt64(r.offset)); put(UInt64(r.length)) }
        put(UInt64(ranges.count)); put(UInt64(image.count))
        put(metadataCRC(ranges, imageLength: image.count) { crc, offset, count in
            CRC32.checksum(UnsafeRawBufferPointer(rebasing: image[offset..<(offset + count)]), continuing: crc)
        })
        put(CRC32.checksum(out))
        out += magic
        return out
    }

    /// CRC of [0, imageLength) without the sorted `ranges`, from `crc(previous, offset, count)` over the gaps.
    private static func metadataCRC(_ ranges: [(offset: Int, length: Int)], imageLength: Int,
                                    _ crc: (UInt32, Int, Int) throws -> UInt32) rethrows -> UInt32 {
        var c: UInt32 = 0, at = 0
        for r in ranges + [(imageLength, 0)] {
            c = try crc(c, at, r.offset - at)
            at = r.offset + r.length
        }
        return c
    }

    /// Checks the trailer of an open file of `size` bytes. False when the file has none; throws when the
    /// trailer or the metadata it covers is damaged.
    static func verify(fd: Int32, size: Int, file: String) throws -> Bool {
        guard size >= footerSize else { return false }
        var footer = [UInt8](repeating: 0, count: footerSize)
        guard pread(fd, &footer, footerSize, off_t(size - footerSize)) == footerSize else {
            throw HDF5Error(.io, file: file, "cannot be read: \(String(cString: strerror(errno)))")
        }
        guard Array(footer[24...]) == magic else { return false }
        func u64(_ b: [UInt8], _ at: Int) -> UInt64 { b[at..<(at + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        func u32(_ b: [UInt8], _ at: Int) -> UInt32 { b[at..<(at + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        let damaged = HDF5Error(.checksum, file: file, "has a damaged integrity trailer (cut or overwritten end of file?); use an earlier copy")
        let n = u64(footer, 0), imageLength = u64(footer, 8)
        // Every size below is bounded by the file size before it is used.
        guard n <= UInt64(size / 16), imageLength <= UInt64(size),
              Int(imageLength) + 16 * Int(n) + footerSize == size else { throw damaged }
        var table = [UInt8](repeating: 0, count: 16 * Int(n) + 24)
        guard pread(fd, &table, table.count, off_t(imageLength)) == table.count else { throw damaged }
        guard CRC32.checksum(Array(table[..<(table.count - 4)])) == u32(table, table.count - 4) else { throw damaged }
        var ranges: [(offset: Int, length: Int)] = []
        var end: UInt64 = 0
        for k in 0..<Int(n) {
            let offset = u64(table, 16 * k), length = u64(table, 16 * k + 8)
            guard offset >= end, length <= imageLength, offset <= imageLength - length else { throw damaged }
            ranges.append((Int(offset), Int(length)))
            end = offset + length
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let actual = try metadataCRC(ranges, imageLength: Int(imageLength)) { crc, offset, count in
            var c = crc, done = 0
            while done < count {
                let want = min(count - done, buffer.count)
                guard pread(fd, &buffer, want, off_t(offset + done)) == want else { throw damaged }
                c = buffer.withUnsafeBytes { CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[..<want]), continuing: c) }
                done += want
            }
            return c
        }
        guard actual == u32(table, table.count - 8) else {
            throw HDF5Error(.checksum, file: file, "has damaged HDF5 metadata (its checksum in the file's trailer does not match): a flipped bit on disk or a bad copy; use an earlier checkpoint")
        }
        return true
    }
}
