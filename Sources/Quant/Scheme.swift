import Foundation
import Kernels

/// A quantizer configuration error: names the quantizer path, the bad value and the fix.
public struct QuantConfigError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "quantizer '\(path)': \(message)" }
}

/// Integer grid and mapping of one quantizer.
public struct QuantScheme: Sendable, Equatable, CustomStringConvertible {
    public var bits: Int
    /// Signed grid -2^(b-1)..2^(b-1)-1 (unsigned: 0..2^b-1).
    public var signed: Bool
    /// Signed grid without its lowest level (-2^(b-1)+1..2^(b-1)-1), symmetric around 0.
    public var narrow: Bool
    /// Zero point fixed (0 for signed grids, the middle for unsigned) and never learned.
    public var symmetric: Bool
    /// Per-channel axis (nil: per tensor).
    public var axis: Int?

    public init(bits: Int = 8, signed: Bool = false, narrow: Bool = false, symmetric: Bool = false, axis: Int? = nil) {
        self.bits = bits; self.signed = signed; self.narrow = narrow; self.symmetric = symmetric; self.axis = axis
    }

    public var qmin: Int { signed ? -(1 << (bits - 1)) + (narrow ? 1 : 0) : 0 }
    public var qmax: Int { signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1 }

    /// The zero point of a symmetric scheme.
    public var symmetricZeroPoint: Float { signed ? 0 : Float((qmin + qmax + 1) / 2) }

    public func validate(path: String) throws {
        guard (2...8).contains(bits) else { throw QuantConfigError(path: path, "bits \(bits) is outside 2...8") }
        guard !narrow || signed else { throw QuantConfigError(path: path, "narrow range needs a signed grid") }
        guard qmin < qmax else { throw QuantConfigError(path: path, "qmin \(qmin) must be below qmax \(qmax)") }
    }

    public var description: String {
        "\(bits)-bit \(symmetric ? "symmetric" : "asymmetric") \(signed ? (narrow ? "signed-narrow" : "signed") : "unsigned") " +
            (axis.map { "per-channel(axis \($0))" } ?? "per-tensor")
    }

    /// Scale and zero point covering [lo, hi] (PyTorch observers' calculate_qparams: the range always
    /// includes 0; scale clamped at eps; zero point rounded and clamped to the grid).
    public func qparams(min lo: Float, max hi: Float, eps: Float) -> (scale: Float, zeroPoint: Float) {
        let minNeg = Swift.min(lo, 0), maxPos = Swift.max(hi, 0)
        let fmin = Float(qmin), fmax = Float(qmax)
        if symmetric {
            let amax = Swift.max(-minNeg, maxPos)
            let s = Swift.max(amax / ((fmax - fmin) / 2), eps)
            return (s, symmetricZeroPoint)
        }
        let s = Swift.max((maxPos - minNeg) / (fmax - fmin), eps)
        let z = Swift.min(Swift.max(fmin - (minNeg / s).rounded(.toNearestOrEven), fmin), fmax)
        return (s, z)
    }
}
