/// A failure reading or writing an HDF5 file (checkpoints, array datasets): what went wrong, which
/// file, which entry, and how to fix it. The Checkpoint layer calls it `CheckpointError`.
public struct HDF5Error: Error, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable {
        case missingFile, notAFile, notHDF5, corrupt, formatVersion, missingKeys, unexpectedKeys, shapeMismatch, io, invalid
        /// A declared shape beyond what the reader accepts (overflowing, or over the cap for that input).
        case tooLarge
        /// Data whose stored checksum does not match: a flipped bit on disk or in a copy.
        case checksum
        /// NaN or infinite values where only finite ones make sense (parameters, quantizer scales).
        case nonFinite
    }
    public let kind: Kind
    public let file: String
    public let message: String
    public init(_ kind: Kind, file: String, _ message: String) { self.kind = kind; self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}
