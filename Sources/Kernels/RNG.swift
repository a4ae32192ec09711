/// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, the generator behind JAX, cuRAND and
/// PyTorch's CUDA RNG). Value number i of a stream depends only on (key, i), so a fill is split across
/// threads without changing a bit, and the state is just (key, counter): trivial to checkpoint.
public struct RNG: Sendable, Equatable, Codable {
    public private(set) var key: UInt64
    /// Index of the next 4-value block.
    public private(set) var counter: UInt64

    public init(seed: UInt64) { key = seed; counter = 0 }
    public init(key: UInt64, counter: UInt64) { self.key = key; self.counter = counter }

    @inline(__always)
    static func philox(_ ctr: UInt64, _ stream: UInt64, _ key: UInt64) -> SIMD4<UInt32> {
        var c0 = UInt32(truncatingIfNeeded: ctr), c1 = UInt32(truncatingIfNeeded: ctr >> 32)
        var c2 = UInt32(truncatingIfNeeded: stream), c3 = UInt32(truncatingIfNeeded: stream >> 32)
        var k0 = UInt32(truncatingIfNeeded: key), k1 = UInt32(truncatingIfNeeded: key >> 32)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
            let n1 = UInt32(truncatingIfNeeded: p1)
            let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
            let n3 = UInt32(truncatingIfNeeded: p0)
            c0 = n0; c1 = n1; c2 = n2; c3 = n3
            k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85
        }
        return SIMD4(c0, c1, c2, c3)
    }

    /// Uniform in [0, 1) with 24 random bits (every value exactly representable).
    @inline(__always) static func unit(_ u: UInt32) -> Float { Float(u >> 8) * 0x1p-24 }
    /// Uniform in (0, 1], safe for log.
    @inline(__always) static func unitOpen(_ u: UInt32) -> Float { Float((u >> 8) + 1) * 0x1p-24 }

    /// Fills `out` with uniforms in [low, high); consumes ceil(n/4) blocks.
    public mutating func fillUniform(_ out: UnsafeMutablePointer<Float>, count n: Int, low: Float = 0, high: Float = 1) {
        let span = high - low
        fillBlocks(out, count: n) { low + span * RNG.unit($0) }
    }

    /// Value i from word i of the stream (4 words a block, blocks in parallel); consumes ceil(n/4) blocks.
    @inline(__always)
    mutating func fillBlocks(_ out: UnsafeMutablePointer<Float>, count n: Int, _ value: @escaping (UInt32) -> Float) {
        let base = counter, key = self.key
        let blocks = (n + 3) / 4
        counter &+= UInt64(blocks)
        parallelChunks(blocks, grain: 4096) { r in
            for b in r {
                let v = RNG.philox(base &+ UInt64(b), 0, key)
                for j in 0..<4 where b * 4 + j < n { out[b * 4 + j] = value(v[j]) }
            }
        }
    }

    /// Fills `out` with normals (Box-Muller on each pair of a block); consumes ceil(n/4) blocks.
    public mutating func fillNormal(_ out: UnsafeMutablePointer<Float>, count n: Int, mean: Float = 0, std: Float = 1) {
        let base = counter, key = self.key
        let blocks = (n + 3) / 4
        counter &+= UInt64(blocks)
        parallelChunks(blocks, grain: 2048) { r in
            for b in r {
                let v = RNG.philox(base &+ UInt64(b), 0, key)
                for pair in 0..<2 {
                    let u1 = RNG.unitOpen(v[2 * pair]), u2 = RNG.unit(v[2 * pair + 1])
                    let rad = (-2 * _log(u1)).squareRoot()
                    let th = 2 * Float.pi * u2
                    let i = b * 4 + 2 * pair
                    if i < n { out[i] = mean + std * rad * _cos(th) }
                    if i + 1 < n { out[i + 1] = mean + std * rad * _sin(th) }
                }
            }
        }
    }

    /// Fills `out` with 1 where a uniform draw is < p, else 0 (the draws of `fillUniform`, one pass).
    public mutating func fillBernoulli(_ out: UnsafeMutablePointer<Float>, count n: Int, p: Float) {
        fillBlocks(out, count: n) { RNG.unit($0) < p ? 1 : 0 }
    }

    /// Next raw 64-bit value (one block).
    public mutating func nextUInt64() -> UInt64 {
        let v = RNG.philox(counter, 0, key)
        counter &+= 1
        return UInt64(v[0]) | (UInt64(v[1]) << 32)
    }

    /// Uniform integer in 0..<bound without modulo bias (Lemire's method).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "RNG.nextInt: bound must be positive, got \(bound)")
        let b = UInt64(bound)
        while true {
            let x = nextUInt64()
            let m = x.multipliedFullWidth(by: b)
            if m.low >= (0 &- b) % b { return Int(m.high) }
        }
    }

    /// A random permutation of 0..<n (Fisher-Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, nextInt(below: i + 1)) }
        return p
    }

    /// An independent child stream (for a data loader, a quantizer's dropout mask...). The parent advances
    /// by one block, so repeated splits give different children.
    public mutating func split() -> RNG {
        let v = RNG.philox(counter, 0x5EED, key)
        counter &+= 1
        return RNG(key: UInt64(v[0]) | (UInt64(v[1]) << 32), counter: 0)
    }
}

import Foundation
@inline(__always) func _log(_ x: Float) -> Float { Foundation.log(x) }
@inline(__always) func _cos(_ x: Float) -> Float { Foundation.cos(x) }
@inline(__always) func _sin(_ x: Float) -> Float { Foundation.sin(x) }
