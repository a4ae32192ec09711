import Foundation
import SwiftProtobuf

/// What cannot be exported, with the module path it concerns and how to proceed.
public struct ONNXExportError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "ONNX export of '\(path.isEmpty ? "(model)" : path)': \(message)" }
}

/// An ONNX graph under construction: nodes in execution order, initializers (weights, scales, zero
/// points), unique value names. Modules append to it in `ONNXExportable.exportONNX`.
public struct ONNXGraph {
    /// Quantize-dequantize mode: quantizers become QuantizeLinear / Clip / DequantizeLinear.
    public let qdq: Bool
    public private(set) var nodes: [Onnx_NodeProto] = []
    public private(set) var initializers: [Onnx_TensorProto] = []
    private var used: Set<String> = []

    public init(qdq: Bool) { self.qdq = qdq }

    /// `base`, or `base_1`, `base_2`, ... if taken. Module paths make readable names.
    public mutating func unique(_ base: String) -> String {
        let b = base.isEmpty ? "v" : base
        var name = b, i = 0
        while used.contains(name) { i += 1; name = "\(b)_\(i)" }
        used.insert(name)
        return name
    }

    /// Appends a node; returns its output names (`outputs` of them, named after `name`).
    @discardableResult
    public mutating func node(_ op: String, _ inputs: [String], name: String, attributes: [Onnx_AttributeProto] = [], outputs: Int = 1) -> [String] {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = unique(name + "/" + op)
        n.input = inputs
        n.output = (0..<outputs).map { unique(outputs == 1 ? name : "\(name)_\($0)") }
        n.attribute = attributes
        nodes.append(n)
        return n.output
    }

    /// One output.
    public mutating func op(_ op: String, _ inputs: [String], name: String, attributes: [Onnx_AttributeProto] = []) -> String {
        node(op, inputs, name: name, attributes: attributes)[0]
    }

    public mutating func floats(_ name: String, _ values: [Float], shape: [Int]) -> String {
        var t = Onnx_TensorProto()
        t.name = unique(name)
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.dims = shape.map(Int64.init)
        t.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }   // little-endian hosts (x86-64, arm64)
        initializers.append(t)
        return t.name
    }

    /// 8-bit integer codes: int8 when `signed`, else uint8.
    public mutating func codes(_ name: String, _ values: [Int], shape: [Int], signed: Bool) -> String {
        var t = Onnx_TensorProto()
        t.name = unique(name)
        t.dataType = Int32((signed ? Onnx_TensorProto.DataType.int8 : .uint8).rawValue)
        t.dims = shape.map(Int64.init)
        t.rawData = Data(values.map { UInt8(bitPattern: Int8(truncatingIfNeeded: $0)) })
        initializers.append(t)
        return t.name
    }

    public mutating func int64s(_ name: String, _ values: [Int], shape: [Int]) -> String {
        var t = Onnx_TensorProto()
        t.name = unique(name)
        t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        t.dims = shape.map(Int64.init)
        t.int64Data = values.map(Int64.init)
        initializers.append(t)
        return t.name
    }

    public static func ints(_ name: String, _ v: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto(); a.name = name; a.type = .ints; a.ints = v.map(Int64.init); return a
    }
    public static func int(_ name: String, _ v: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto(); a.name = name; a.type = .int; a.i = Int64(v); return a
    }
    public static func float(_ name: String, _ v: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto(); a.name = name; a.type = .float; a.f = v; return a
    }
}
