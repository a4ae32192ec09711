import Foundation

/// 64-bit FNV-1a fingerprints, compared across ranks at start: every rank must run the same resolved
/// recipe with the same `qat` binary.
public enum Fingerprint {
    public static func of<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    public static func of(_ text: String) -> UInt64 { of(text.utf8) }

    /// The running executable's contents (/proc/self/exe), or 0 where it cannot be read.
    public static func executable() -> UInt64 {
        guard let d = FileManager.default.contents(atPath: "/proc/self/exe") else { return 0 }
        return d.withUnsafeBytes { of($0) }
    }
}
