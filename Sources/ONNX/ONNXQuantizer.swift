import Foundation
import Kernels
import Autodiff
import NN
import Quant

/// A quantizer that can write itself as ONNX quantize/dequantize nodes.
public protocol ONNXQuantizer {
    /// Off: the fake-quant model passes values through, and so does the export.
    var isQuantizing: Bool { get }
    /// Activation: QuantizeLinear -> (Clip to the grid when it is narrower than the 8-bit container)
    /// -> DequantizeLinear; returns the dequantized value's name.
    func exportActivation(_ x: String, _ g: inout ONNXGraph, name: String) throws -> String
    /// Weight (a constant): the integer codes as an int8 (signed grid) or uint8 initializer, quantized
    /// here with the fake-quant kernel's arithmetic, so they are its codes exactly, and a DequantizeLinear.
    func exportWeight(_ w: [Float], shape: [Int], _ g: inout ONNXGraph, name: String) throws -> String
}

extension FakeQuantize: ONNXQuantizer {
    public var isQuantizing: Bool { enabled }

    /// Scales (checked usable) and rounded, clamped zero points, as the forward uses them.
    func exportParameters() throws -> (scale: [Float], zeroPoint: [Int]) {
        guard isInitialized else {
            throw ONNXExportError(path: path, "quantizer is not initialised (no calibration or training step has set its range); export a trained or calibrated checkpoint")
        }
        let s = scale.scalars
        if let i = s.firstIndex(where: { !($0 > 0) || !$0.isFinite }) {
            throw ONNXExportError(path: path, "scale \(s[i]) at channel \(i); a quantization scale must be positive and finite")
        }
        let z = zeroPoint.scalars.map { Int(FakeQuant.roundedZeroPoint($0, qmin: scheme.qmin, qmax: scheme.qmax)) }
        guard scheme.bits <= 8 else {
            throw ONNXExportError(path: path, "\(scheme.bits)-bit quantizer; QDQ export writes 2-8 bit grids in 8-bit containers")
        }
        return (s, z)
    }

    /// Per-tensor parameters as scalars, per-channel ones as 1-D tensors with the axis attribute.
    func scaleAndZero(_ g: inout ONNXGraph, name: String, signed: Bool, _ s: [Float], _ z: [Int]) -> (scale: String, zero: String, attributes: [Onnx_AttributeProto]) {
        let shape = scheme.axis == nil ? [] : [s.count]
        let sn = g.floats(name + ".scale", s, shape: shape)
        let zn = g.codes(name + ".zero_point", z, shape: shape, signed: signed)
        return (sn, zn, scheme.axis.map { [ONNXGraph.int("axis", $0)] } ?? [])
    }

    public func exportActivation(_ x: String, _ g: inout ONNXGraph, name: String) throws -> String {
        guard enabled else { return x }
        let signed = scheme.qmin < 0
        let (s, z) = try exportParameters()
        let (sn, zn, attrs) = scaleAndZero(&g, name: name, signed: signed, s, z)
        var q = g.op("QuantizeLinear", [x, sn, zn], name: name + ".q", attributes: attrs)
        let container = signed ? (-128, 127) : (0, 255)
        if (scheme.qmin, scheme.qmax) != container {
            // The grid is narrower than the container (bits < 8, or a narrow signed range): clamp the
            // codes to it, as the fake-quant op does (Brevitas' QCDQ form).
            let lo = g.codes(name + ".qmin", [scheme.qmin], shape: [], signed: signed)
            let hi = g.codes(name + ".qmax", [scheme.qmax], shape: [], signed: signed)
            q = g.op("Clip", [q, lo, hi], name: name + ".clip")
        }
        return g.op("DequantizeLinear", [q, sn, zn], name: name + ".dq", attributes: attrs)
    }

    public func exportWeight(_ w: [Float], shape: [Int], _ g: inout ONNXGraph, name: String) throws -> String {
        let (s, z) = try exportParameters()
        let signed = scheme.qmin < 0
        let layout = FakeQuant.Layout(shape: shape, axis: scheme.axis)
        var codes = [Int](repeating: 0, count: w.count)
        for o in 0..<layout.outer { for c in 0..<layout.channels {
            let inv = 1 / s[c], zc = Float(z[c])
            let base = (o * layout.channels + c) * layout.inner
            for i in 0..<layout.inner {
                // The fake-quant kernel's arithmetic: x * (1 / s), round half to even, + z, clamp.
                let q = Swift.min(Swift.max((w[base + i] * inv).rounded(.toNearestOrEven) + zc, Float(scheme.qmin)), Float(scheme.qmax))
                codes[base + i] = Int(q)
            }
        }}
        let cn = g.codes(name + ".codes", codes, shape: shape, signed: signed)
        let (sn, zn, attrs) = scaleAndZero(&g, name: name + ".w", signed: signed, s, z)
        return g.op("DequantizeLinear", [cn, sn, zn], name: name + ".dq", attributes: attrs)
    }
}

/// The activation quantizer `q` (nil or disabled: none) applied to `x` in QDQ mode; in float mode `x`.
func quantizeActivation(_ q: Module?, _ x: String, _ g: inout ONNXGraph, owner: Module) throws -> String {
    guard g.qdq, let q else { return x }
    guard let e = q as? ONNXQuantizer else {
        throw ONNXExportError(path: q.path, "\(type(of: q)) cannot be written as ONNX quantize/dequantize nodes")
    }
    return try e.exportActivation(x, &g, name: q.path.isEmpty ? owner.path : q.path)
}
