import Foundation

/// A 64-byte aligned Float32 allocation. Kernels take raw pointers; this is the one owner type.
public final class FloatBuffer: @unchecked Sendable {
    /// Large tensors come and go every training step. With glibc's defaults each one above the mmap
    /// threshold is a fresh mapping, and first-touch page faults cost more than the kernels that fill
    /// it. Keeping large blocks in the heap (and not trimming it) lets freed blocks be reused.
    private static let allocatorTuned: Bool = {
        #if os(Linux)
        _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 1 << 30)
        _ = glibcMallopt(-1 /* M_TRIM_THRESHOLD */, 1 << 30)
        #endif
        return true
    }()

    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int) {
        precondition(count >= 0, "FloatBuffer: negative count \(count)")
        _ = FloatBuffer.allocatorTuned
        self.count = count
        var raw: UnsafeMutableRawPointer? = nil
        let bytes = max(64, count * MemoryLayout<Float>.stride)
        let rc = posix_memalign(&raw, 64, bytes)
        precondition(rc == 0 && raw != nil, "FloatBuffer: could not allocate \(bytes) bytes")
        pointer = raw!.bindMemory(to: Float.self, capacity: max(1, count))
    }

    public convenience init(zeros count: Int) {
        self.init(count: count)
        pointer.initialize(repeating: 0, count: count)
    }

    public convenience init(copying source: UnsafePointer<Float>, count: Int) {
        self.init(count: count)
        pointer.update(from: source, count: count)
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { free(pointer) }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

#if os(Linux)
/// glibc's mallopt (malloc.h is not part of the Glibc module map).
@_silgen_name("mallopt") private func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif
