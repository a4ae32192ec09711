import Foundation
import SwiftProtobuf
import Kernels
import Autodiff
import NN

/// A model as an ONNX file: the float graph, or (`qdq`) the fake-quant model's graph with its
/// quantizers as QuantizeLinear / DequantizeLinear (QDQ, the form ONNX Runtime and TensorRT turn into
/// integer kernels). Opset 17, IR version 8; input `input` [N, C, H, W] with a symbolic batch, output
/// `output`. The model is exported as its eval-mode forward (running BatchNorm statistics, no dropout).
public enum ONNXExport {
    public static let opset = 17
    public static let irVersion = 8

    public static func model(_ m: Module, inputShape: [Int], qdq: Bool, producer: String = "qat-swift") throws -> Onnx_ModelProto {
        guard inputShape.count == 4, inputShape.allSatisfy({ $0 > 0 }) else {
            throw ONNXExportError(path: "", "input shape \(inputShape) must be [N, C, H, W] with positive sizes")
        }
        m.assignPaths()
        var g = ONNXGraph(qdq: qdq)
        let input = g.unique("input")
        let last = try exportChild(m, input, &g)
        var graph = Onnx_GraphProto()
        graph.name = qdq ? "qat_qdq" : "qat_float"
        graph.node = g.nodes
        graph.initializer = g.initializers
        graph.input = [valueInfo(input, dims: [nil] + inputShape.dropFirst().map { $0 })]
        // The output keeps its computed name; an Identity names it `output`.
        let out = g.unique("output")
        var id = Onnx_NodeProto(); id.opType = "Identity"; id.name = "output/Identity"; id.input = [last]; id.output = [out]
        graph.node.append(id)
        // The output's shape from one forward pass on zeros (after the export, which refuses
        // uninitialised quantizers, so this pass cannot calibrate one).
        let wasTraining = m.isTraining
        m.eval()
        let y = noGrad { m(Tensor.zeros([1] + inputShape.dropFirst())) }
        m.train(wasTraining)
        graph.output = [valueInfo(out, dims: [nil] + y.shape.dropFirst().map { $0 })]
        var model = Onnx_ModelProto()
        model.irVersion = Int64(irVersion)
        model.producerName = producer
        model.graph = graph
        var o = Onnx_OperatorSetIdProto(); o.domain = ""; o.version = Int64(opset)
        model.opsetImport = [o]
        return model
    }

    public static func serialized(_ model: Onnx_ModelProto) throws -> Data { try model.serializedData() }

    /// A float tensor value; a nil entry: the symbolic batch `N`.
    static func valueInfo(_ name: String, dims: [Int?]?) -> Onnx_ValueInfoProto {
        var v = Onnx_ValueInfoProto()
        v.name = name
        var t = Onnx_TypeProto.Tensor()
        t.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        if let dims {
            var s = Onnx_TensorShapeProto()
            s.dim = dims.map { d in
                var x = Onnx_TensorShapeProto.Dimension()
                if let d { x.dimValue = Int64(d) } else { x.dimParam = "N" }
                return x
            }
            t.shape = s
        }
        var ty = Onnx_TypeProto()
        ty.tensorType = t
        v.type = ty
        return v
    }
}
