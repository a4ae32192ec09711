import Kernels
import NN
import Quant

/// The integer grid of one activation quantizer, as the fake-quant model uses it: codes
/// q = clamp(round_half_even(x * (1 / scale)) + zeroPoint, qmin, qmax), values (q - zeroPoint) * scale.
/// The engine stores codes as UInt8: a signed grid (qmin < 0) shifted by +128 (`offset`).
public struct Int8Grid: Equatable, Sendable {
    /// The quantizer's module path (agreement reports name activations by it).
    public let path: String
    public let scale: Float
    public let zeroPoint: Int
    public let qmin: Int, qmax: Int

    public init(path: String, scale: Float, zeroPoint: Int, qmin: Int, qmax: Int) {
        self.path = path; self.scale = scale; self.zeroPoint = zeroPoint; self.qmin = qmin; self.qmax = qmax
    }

    public var offset: Int { qmin < 0 ? 128 : 0 }
    public var storedZero: Int { zeroPoint + offset }
    public var inverse: Float { 1 / scale }

    /// The value of a stored code, as the fake-quant op computes it.
    @inline(__always) public func value(_ u: UInt8) -> Float { Float(Int(u) - storedZero) * scale }
    /// The stored code of a value, as the fake-quant op computes it.
    @inline(__always) public func code(_ v: Float, inverse inv: Float) -> UInt8 {
        let q = Swift.min(Swift.max((v * inv).rounded(.toNearestOrEven) + Float(zeroPoint), Float(qmin)), Float(qmax))
        return UInt8(Int(q) + offset)
    }
    /// Same codes for every value (scale, zero point and range), whatever the path.
    public func sameCodes(as o: Int8Grid) -> Bool { scale == o.scale && zeroPoint == o.zeroPoint && qmin == o.qmin && qmax == o.qmax }

    /// Epilogue fields of a kernel that writes this grid's stored codes.
    var storedBounds: (zero: Float, lo: Float, hi: Float) { (Float(storedZero), Float(qmin + offset), Float(qmax + offset)) }
}

/// Quantized weights of one layer: int8 codes (an unsigned grid stored shifted by -128) with per-output
/// channel scales and stored zero points.
struct Int8Weights {
    var codes: [Int8]
    var scale: [Float]
    var zero: [Int32]
    var outChannels: Int
    var perOutput: Int { codes.count / outChannels }
    var hasZeroPoints: Bool { zero.contains { $0 != 0 } }
}

/// A quantizer the engine reads: FakeQuantize conforms (a new quantizer kind lowers by conforming).
public protocol Int8Quantizer {
    var isQuantizing: Bool { get }
    /// The activation grid (per tensor only).
    func activationGrid() throws -> Int8Grid
    /// Weight codes of `w` (shape [out, ...], quantized along axis 0 or per tensor) with the fake-quant
    /// kernel's arithmetic, as stored int8 codes and per-output-channel scale and stored zero point.
    func weightCodes(_ w: [Float], outChannels: Int) throws -> (codes: [Int8], scale: [Float], zero: [Int32])
}

extension FakeQuantize: Int8Quantizer {
    public var isQuantizing: Bool { enabled }

    /// Scales as the forward uses them (clamped at eps) and rounded, clamped zero points.
    func int8Parameters() throws -> (scale: [Float], zero: [Int]) {
        guard isInitialized else {
            throw Int8Error(path: path, "quantizer is not initialised (no calibration or training step has set its range); use a trained or calibrated checkpoint")
        }
        guard scheme.bits <= 8 else { throw Int8Error(path: path, "\(scheme.bits)-bit quantizer; the int8 engine runs 2-8 bit grids") }
        let s = scale.scalars.map { ($0 >= eps && $0.isFinite) ? $0 : eps }
        let z = zeroPoint.scalars.map { Int(FakeQuant.roundedZeroPoint($0, qmin: scheme.qmin, qmax: scheme.qmax)) }
        return (s, z)
    }

    public func activationGrid() throws -> Int8Grid {
        guard scheme.axis == nil else {
            throw Int8Error(path: path, "per-channel activation quantizer; the int8 engine quantizes activations per tensor (an integer add or conv input needs one scale)")
        }
        let (s, z) = try int8Parameters()
        return Int8Grid(path: path, scale: s[0], zeroPoint: z[0], qmin: scheme.qmin, qmax: scheme.qmax)
    }

    public func weightCodes(_ w: [Float], outChannels: Int) throws -> (codes: [Int8], scale: [Float], zero: [Int32]) {
        let (s, z) = try int8Parameters()
        if let axis = scheme.axis, axis != 0 {
            throw Int8Error(path: path, "weight quantized along axis \(axis); the int8 engine needs per-output-channel (axis 0) or per-tensor weights")
        }
        let offset = scheme.qmin < 0 ? 0 : -128
        let per = w.count / outChannels
        var codes = [Int8](repeating: 0, count: w.count)
        var scales = [Float](), zeros = [Int32]()
        for o in 0..<outChannels {
            let c = scheme.axis == nil ? 0 : o
            let inv = 1 / s[c], zc = Float(z[c])
            for i in 0..<per {
                // The fake-quant kernel's arithmetic: x * (1 / s), round half to even, + z, clamp.
                let q = Swift.min(Swift.max((w[o * per + i] * inv).rounded(.toNearestOrEven) + zc, Float(scheme.qmin)), Float(scheme.qmax))
                codes[o * per + i] = Int8(Int(q) + offset)
            }
            scales.append(s[c]); zeros.append(Int32(z[c] + offset))
        }
        return (codes, scales, zeros)
    }
}

/// A model the engine cannot lower or run: names the module path and what to do.
public struct Int8Error: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "int8 engine: \(path.isEmpty ? "model" : "'\(path)'"): \(message)" }
}
