import Foundation

/// The chunk structure of a PNG held in memory, checked before libpng sees it. libpng allocates (and
/// zeroes) a buffer of a chunk's declared length before it finds that the data is not there: a
/// 106-byte file declaring a 1.2 GB tEXt chunk made it touch 1.2 GB (found by fuzz/png, a "hang" of
/// over 5 s under ASan). A chunk can never be longer than what follows it in the file, so such a file
/// is refused here, naming the chunk and where it starts.
enum PNGChunks {
    /// What is wrong with the chunk layout (nil: every chunk up to IEND, or up to the end of a truncated
    /// file, fits in the data; libpng checks the rest).
    static func problem(_ data: Data) -> String? {
        data.withUnsafeBytes { raw -> String? in
            let b = raw.bindMemory(to: UInt8.self)
            var at = 8   // after the signature
            while at + 8 <= b.count {
                let length = Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
                let type = String(decoding: b[(at + 4)..<(at + 8)].map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
                // Length (4), type (4), data, CRC (4); PNG caps lengths at 2^31 - 1.
                let left = b.count - at - 12
                guard length <= 0x7FFF_FFFF, length <= left else {
                    return "chunk '\(type)' at byte \(at) declares \(length) bytes of data but the file has \(max(left, 0)) after it: truncated or corrupt"
                }
                if type == "IEND" { return nil }
                at += 12 + length
            }
            return nil
        }
    }
}
