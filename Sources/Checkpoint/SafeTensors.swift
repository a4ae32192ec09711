import Foundation
import Files
import UserPaths

/// The safetensors format (Hugging Face; what `safetensors.torch.save_file` writes): an 8-byte
/// little-endian header size N, N bytes of a JSON object `{name: {"dtype", "shape", "data_offsets":
/// [begin, end]}, "__metadata__": {string: string}}` padded with spaces, then the data buffer, each
/// tensor row-major little-endian at its offsets (relative to the buffer's start).
///
/// Read: F32, F64, F16 and BF16 become Float32 (F64 rounded); I64 and I32 are read as integers (torch's
/// `num_batches_tracked`). Checked as the reference implementation does: header size within the file
/// and under 100 MB, valid JSON, known dtypes, non-negative shapes whose byte size equals the offsets'
/// span, offsets that tile the buffer exactly (no gap, no overlap, nothing after); every error names the
/// file and the tensor. Written: F32 tensors (and I64 where given) in name order, header padded to 8
/// bytes, through `AtomicFile`.
public struct SafeTensors: Equatable {
    public enum DType: String, Sendable { case f32 = "F32", f64 = "F64", f16 = "F16", bf16 = "BF16", i64 = "I64", i32 = "I32"
        var size: Int { switch self { case .f32, .i32: return 4; case .f64, .i64: return 8; case .f16, .bf16: return 2 } }
        var isInteger: Bool { self == .i64 || self == .i32 }
    }

    public struct Tensor: Equatable {
        public var dtype: DType
        public var shape: [Int]
        /// Float values (float dtypes), row-major.
        public var values: [Float]
        /// Integer values (I64 / I32), row-major.
        public var integers: [Int64]
        public init(shape: [Int], values: [Float]) { dtype = .f32; self.shape = shape; self.values = values; integers = [] }
        public init(shape: [Int], integers: [Int64]) { dtype = .i64; self.shape = shape; values = []; self.integers = integers }
        var count: Int { shape.reduce(1, *) }
    }

    public var tensors: [String: Tensor] = [:]
    public var metadata: [String: String] = [:]

    public init(tensors: [String: Tensor] = [:], metadata: [String: String] = [:]) { self.tensors = tensors; self.metadata = metadata }

    static let maxHeader = 100_000_000

    public static func read(from path: String) throws -> SafeTensors {
        let data: Data
        do { data = try UserFile.read(path, maxBytes: 1 << 34, what: "safetensors file") } catch { throw CheckpointError(.missingFile, file: path, "\(error)") }
        return try parse(data, file: path)
    }

    public static func parse(_ data: Data, file: String) throws -> SafeTensors {
        func fail(_ m: String) -> CheckpointError { CheckpointError(.corrupt, file: file, "not a valid safetensors file: \(m)") }
        guard data.count >= 8 else { throw fail("\(data.count) bytes, shorter than the 8-byte header size") }
        let n = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n <= UInt64(maxHeader), n <= UInt64(data.count - 8) else {
            throw fail("header size \(n) exceeds the file (\(data.count) bytes) or 100 MB")
        }
        let headerEnd = 8 + Int(n)
        guard let object = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)), let header = object as? [String: Any] else {
            throw fail("the header is not a JSON object")
        }
        let buffer = data.count - headerEnd
        var out = SafeTensors()
        var spans: [(Int, Int, String)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("__metadata__ value of '\(k)' is not a string") }
                    out.metadata[k] = s
                }
                continue
            }
            guard let d = value as? [String: Any], let ds = d["dtype"] as? String, let shapeAny = d["shape"] as? [Any],
                  let offAny = d["data_offsets"] as? [Any], offAny.count == 2 else {
                throw fail("tensor '\(name)' needs dtype, shape and two data_offsets")
            }
            guard let dtype = DType(rawValue: ds) else {
                throw CheckpointError(.invalid, file: file, "tensor '\(name)' has dtype \(ds); supported: F32, F64, F16, BF16 (weights), I64, I32 (counters)")
            }
            let shape = shapeAny.compactMap { ($0 as? NSNumber)?.intValue }
            let offsets = offAny.compactMap { ($0 as? NSNumber)?.intValue }
            guard shape.count == shapeAny.count, shape.allSatisfy({ $0 >= 0 }), offsets.count == 2 else {
                throw fail("tensor '\(name)': shape and data_offsets must be non-negative integers")
            }
            var count = 1
            for s in shape {
                let (m, o) = count.multipliedReportingOverflow(by: s)
                guard !o, m <= buffer else { throw fail("tensor '\(name)': shape \(shape) is larger than the file") }
                count = m
            }
            let (b, e) = (offsets[0], offsets[1])
            guard b >= 0, b <= e, e <= buffer else { throw fail("tensor '\(name)': data_offsets [\(b), \(e)] outside the \(buffer)-byte buffer") }
            guard e - b == count * dtype.size else {
                throw fail("tensor '\(name)': shape \(shape) of \(ds) needs \(count * dtype.size) bytes, data_offsets give \(e - b)")
            }
            spans.append((b, e, name))
            var t = Tensor(shape: shape, values: [])
            t.dtype = dtype
            data.withUnsafeBytes { raw in
                let p = raw.baseAddress! + headerEnd + b
                func u16(_ i: Int) -> UInt16 { UInt16(p.load(fromByteOffset: 2 * i, as: UInt8.self)) | UInt16(p.load(fromByteOffset: 2 * i + 1, as: UInt8.self)) << 8 }
                switch dtype {
                case .f32: t.values = (0..<count).map { Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
                case .f64: t.values = (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
                case .f16: t.values = (0..<count).map { Float(Float16(bitPattern: u16($0))) }
                case .bf16: t.values = (0..<count).map { Float(bitPattern: UInt32(u16($0)) << 16) }
                case .i64: t.integers = (0..<count).map { Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
                case .i32: t.integers = (0..<count).map { Int64(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
                }
            }
            out.tensors[name] = t
        }
        var end = 0
        for (b, e, name) in spans.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) {
            guard b == end else { throw fail(b > end ? "a gap before tensor '\(name)' at byte \(end) of the buffer" : "tensor '\(name)' overlaps the one before it") }
            end = e
        }
        guard end == buffer else { throw fail("\(buffer - end) bytes after the last tensor") }
        return out
    }

    /// The file's bytes: tensors in name order.
    public func serialized() -> Data {
        var header = "{"
        if !metadata.isEmpty {
            header += "\"__metadata__\":{" + metadata.keys.sorted().map { "\(json($0)):\(json(metadata[$0]!))" }.joined(separator: ",") + "},"
        }
        var offset = 0
        var parts: [String] = []
        for name in tensors.keys.sorted() {
            let t = tensors[name]!
            let bytes = t.count * (t.dtype.isInteger ? 8 : 4)
            parts.append("\(json(name)):{\"dtype\":\"\(t.dtype.isInteger ? "I64" : "F32")\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var data = Data()
        data.reserveCapacity(8 + header.utf8.count + offset)
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        for name in tensors.keys.sorted() {
            let t = tensors[name]!
            if t.dtype.isInteger {
                for v in t.integers { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
            } else {
                for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            }
        }
        return data
    }

    public func write(to path: String, replacing: Replacing = .outputsOnly) throws {
        for (name, t) in tensors where (t.dtype.isInteger ? t.integers.count : t.values.count) != t.count {
            throw CheckpointError(.invalid, file: path, "tensor '\(name)' has \(t.values.count + t.integers.count) values for shape \(t.shape)")
        }
        try AtomicFile.write(serialized(), to: path, replacing: replacing)
    }

    private func json(_ s: String) -> String {
        let d = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
        return String(decoding: d.dropFirst().dropLast(), as: UTF8.self)
    }
}
