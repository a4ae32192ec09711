import XCTest
import Foundation
import Kernels
import Autodiff
import NN
import Quant
import Detection
@testable import ONNX

final class ONNXExportTests: XCTestCase {
    func smallModel(seed: UInt64 = 0) throws -> Sequential {
        var rng = RNG(seed: seed)
        return Sequential(try Conv2d(3, 8, kernel: 3, bias: false, rng: &rng), BatchNorm2d(8), Activation(.relu6),
                          try Conv2d(8, 8, kernel: 3, stride: 2, groups: 8, bias: false, rng: &rng), BatchNorm2d(8), Activation(.relu6),
                          try Conv2d(8, 4, kernel: 1, rng: &rng))
    }

    func quantized(_ m: Module, weight: Int = 8, activation: Int = 8) throws -> QATHandle {
        var rng = RNG(seed: 9)
        let h = try quantize(m, plan: .bits(weight: weight, activation: activation))
        h.calibrate(m, batches: [Tensor.randn([4, 3, 8, 8], rng: &rng)]) { m($0) }
        m.eval()
        return h
    }

    func roundTrip(_ m: Module, qdq: Bool) throws -> Onnx_ModelProto {
        let proto = try ONNXExport.model(m, inputShape: [2, 3, 8, 8], qdq: qdq)
        return try Onnx_ModelProto(serializedBytes: try ONNXExport.serialized(proto))
    }

    func initializer(_ p: Onnx_ModelProto, _ name: String) -> Onnx_TensorProto? { p.graph.initializer.first { $0.name == name } }

    func floats(_ t: Onnx_TensorProto) -> [Float] {
        t.rawData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func testFloatGraphOfASmallModel() throws {
        let m = try smallModel()
        m.eval()
        let p = try roundTrip(m, qdq: false)
        XCTAssertEqual(p.opsetImport.first?.version, 17)
        XCTAssertEqual(p.graph.node.map(\.opType), ["Conv", "BatchNormalization", "Clip", "Conv", "BatchNormalization", "Clip", "Conv", "Identity"])
        let dw = p.graph.node[3]
        let attrs = Dictionary(uniqueKeysWithValues: dw.attribute.map { ($0.name, $0) })
        XCTAssertEqual(attrs["group"]?.i, 8)
        XCTAssertEqual(attrs["strides"]?.ints, [2, 2])
        XCTAssertEqual(attrs["pads"]?.ints, [1, 1, 1, 1])
        XCTAssertEqual(p.graph.input[0].type.tensorType.shape.dim.map(\.dimParam), ["N", "", "", ""])
        XCTAssertEqual(p.graph.output[0].type.tensorType.shape.dim.map(\.dimValue), [0, 4, 4, 4])
        let w = initializer(p, "0.weight")!
        XCTAssertEqual(w.dims, [8, 3, 3, 3])
        XCTAssertEqual(floats(w), (m.layers[0] as! Conv2d).weight.scalars)
    }

    /// QDQ: every weight is DequantizeLinear of integer codes that dequantize to exactly the
    /// fake-quantized weight the model uses; activations are QuantizeLinear -> DequantizeLinear, with a
    /// Clip to the grid below 8 bits.
    func testQDQWeightsAreTheFakeQuantCodes() throws {
        for bits in [8, 4] {
            let m = try smallModel()
            _ = try quantized(m, weight: bits, activation: bits)
            let p = try roundTrip(m, qdq: true)
            let ops = p.graph.node.map(\.opType)
            XCTAssertEqual(ops.filter { $0 == "QuantizeLinear" }.count, 3, "bits \(bits)")
            XCTAssertEqual(ops.filter { $0 == "DequantizeLinear" }.count, 6, "bits \(bits)")
            XCTAssertEqual(ops.filter { $0 == "Clip" }.count, 2 + (bits < 8 ? 3 : 0), "bits \(bits)")
            for (i, conv) in [(0, m.layers[0]), (3, m.layers[3]), (6, m.layers[6])] {
                let c = conv as! Conv2d
                let fq = c.weightQuantizer as! FakeQuantize
                let expected = noGrad { fq(c.weight) }.scalars
                let codes = initializer(p, "\(i).weight.codes")!, scale = floats(initializer(p, "\(i).weight.w.scale")!)
                let zp = initializer(p, "\(i).weight.w.zero_point")!
                let signed = codes.dataType == Int32(Onnx_TensorProto.DataType.int8.rawValue)
                func ints(_ t: Onnx_TensorProto) -> [Int] { t.rawData.map { signed ? Int(Int8(bitPattern: $0)) : Int($0) } }
                let q = ints(codes), z = ints(zp)
                let per = c.weight.count / c.outChannels
                let dq = q.enumerated().map { j, v in Float(v - z[j / per]) * scale[j / per] }
                XCTAssertEqual(dq, expected, "conv \(i), \(bits) bits")
                XCTAssertTrue(q.allSatisfy { $0 >= fq.scheme.qmin && $0 <= fq.scheme.qmax })
            }
        }
    }

    func testMobileNetsAndResNetExport() throws {
        for name in Backbones.names {
            var rng = RNG(seed: 1)
            let m = try Backbones.make(name, width: 0.25, numClasses: 3, rng: &rng)
            m.eval()
            let p = try ONNXExport.model(m, inputShape: [1, 3, 32, 32], qdq: false)
            XCTAssertEqual(p.graph.output[0].type.tensorType.shape.dim.map(\.dimValue), [0, 3], name)
            XCTAssertEqual(p.graph.node.filter { $0.opType == "Conv" }.count, m.namedModules().filter { $0.1 is Conv2d }.count, name)
            XCTAssertEqual(p.graph.node.filter { $0.opType == "Gemm" }.count, m.namedModules().filter { $0.1 is Linear }.count, name)
            // The QDQ graph of the quantized model: one quantizer node group per fake quantizer.
            let h = try quantize(m, plan: .bits(weight: 8, activation: 8))
            h.calibrate(m, batches: [Tensor.randn([2, 3, 32, 32], rng: &rng)]) { m($0) }
            m.eval()
            let q = try ONNXExport.model(m, inputShape: [1, 3, 32, 32], qdq: true)
            XCTAssertEqual(q.graph.node.filter { $0.opType == "DequantizeLinear" }.count, h.quantizers.count, name)
        }
    }

    final class Custom: Module { override init() { super.init() } }

    func testWhatCannotBeExportedIsNamed() throws {
        let m = Sequential(try smallModel(), Custom())
        m.eval()
        XCTAssertThrowsError(try ONNXExport.model(m, inputShape: [1, 3, 8, 8], qdq: false)) { e in
            XCTAssertEqual((e as? ONNXExportError)?.path, "1"); XCTAssertTrue("\(e)".contains("Custom has no ONNX export"), "\(e)")
        }
        // A quantizer that never saw data, and one whose scale is zero.
        let fresh = try smallModel()
        _ = try quantize(fresh, plan: .bits(weight: 8, activation: 8))
        fresh.eval()
        XCTAssertThrowsError(try ONNXExport.model(fresh, inputShape: [1, 3, 8, 8], qdq: true)) { e in
            XCTAssertTrue("\(e)".contains("0.inputQuantizer") && "\(e)".contains("not initialised"), "\(e)")
        }
        let zero = try smallModel()
        let h = try quantized(zero)
        (h.quantizers.first { $0.0 == "3.weightQuantizer" }!.1).scale.pointer[2] = 0
        XCTAssertThrowsError(try ONNXExport.model(zero, inputShape: [1, 3, 8, 8], qdq: true)) { e in
            XCTAssertTrue("\(e)".contains("3.weightQuantizer") && "\(e)".contains("scale 0.0 at channel 2"), "\(e)")
        }
        XCTAssertThrowsError(try ONNXExport.model(zero, inputShape: [3, 8, 8], qdq: false)) { XCTAssertTrue("\($0)".contains("[N, C, H, W]")) }
    }

    /// RetinaNet and the decoupled detector export their dense outputs: FPN with two nearest
    /// upsamplings, GroupNorm heads composed from InstanceNormalization, [N, anchors, K + 4] / [N, anchors, 5].
    func testDetectorsExportTheirDenseOutputs() throws {
        var rng = RNG(seed: 2)
        var base = RetinaNetConfig(numClasses: 3)
        base.fpnChannels = 16; base.headConvs = 1; base.groupNorm = true
        let r = try RetinaNet(backbone: try Backbones.make("mobilenet_v2", width: 0.25, rng: &rng), config: base, rng: &rng)
        var dc = DecoupledConfig(base: base)
        dc.fineHidden = 16
        let d = try DecoupledRetinaNet(backbone: try Backbones.make("resnet18", width: 0.25, rng: &rng), config: dc, rng: &rng)
        for (m, width) in [(r as Module, 7), (d as Module, 5)] {
            m.eval()
            let p = try ONNXExport.model(m, inputShape: [1, 3, 64, 64], qdq: false)
            let y = noGrad { m(Tensor.zeros([1, 3, 64, 64])) }
            XCTAssertEqual(y.shape[2], width)
            XCTAssertEqual(p.graph.output[0].type.tensorType.shape.dim.map(\.dimValue), [0, Int64(y.shape[1]), Int64(width)])
            let ops = p.graph.node.map(\.opType)
            XCTAssertEqual(ops.filter { $0 == "Resize" }.count, 2)
            // The heads run once per pyramid level, so their nodes repeat per level.
            let levels = base.levels.count
            XCTAssertEqual(ops.filter { $0 == "InstanceNormalization" }.count, 2 * levels)   // one GN per head tower and level
            let convs = m.namedModules().filter { $0.1 is Conv2d && !$0.0.hasPrefix("fineGrained") }.map(\.0)
            let head = convs.filter { $0.contains("Head.") }.count
            XCTAssertEqual(ops.filter { $0 == "Conv" }.count, convs.count - head + levels * head)
        }
    }
}
