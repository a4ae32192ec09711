import Foundation
import Kernels
import Autodiff
import NN
import Checkpoint
import Recipes
import Files
import ONNX

/// `qat export CKPT --format onnx|onnx-qdq --out FILE.onnx [--reference DIR --images N]`: the
/// checkpoint's model as an ONNX graph (`ONNXExport`): `onnx` the float model (a quantized checkpoint's
/// float weights, as `qat eval --fp32` evaluates them), `onnx-qdq` the fake-quant model with its
/// quantizers as QuantizeLinear / DequantizeLinear. With `--reference DIR`: the first N test images
/// and our model's outputs on them, for `scripts/onnx/check.py` to compare with ONNX Runtime:
/// `DIR/input.f32` and `DIR/output.f32` (raw little-endian float32, row-major) and `DIR/reference.json`
/// (shapes, format, the output's largest quantization step where the last layer's input is quantized).
/// Classifiers (MobileNet V1/V2/V3, ResNet) and detectors: RetinaNet's and the decoupled design's
/// dense outputs ([N, anchors, K + 4] / [N, anchors, 5], as `forward`); anchors, decoding and NMS stay
/// outside the graph, and so does the decoupled design's type module (RoIAlign on post-NMS boxes).
public enum ModelExport {
    public enum Format: String, CaseIterable, Sendable { case onnx, onnxQDQ = "onnx-qdq" }

    public static func export(checkpoint path: String, format: Format, out: String, reference: String?, images: Int) throws -> String {
        guard out.hasSuffix(".onnx") else { throw TrainingError("--out: \(out): name the file NAME.onnx") }
        guard images >= 1 else { throw TrainingError("--images: \(images) must be at least 1") }
        do { try ProtectedFiles.check(output: out) } catch { throw TrainingError("--out: \(error)") }
        let c = try loadTrainedCheckpoint(path, use: "be exported")
        let recipe: Recipe
        do { recipe = try Recipe.parse(c.recipe, file: "\(path) (stored recipe)") } catch { throw TrainingError("\(error)") }
        if let t = recipe.threads { Parallel.setThreads(t) }
        let quantized = TrainingRun.isQuantized(c)
        let qdq = format == .onnxQDQ
        guard !qdq || quantized else {
            throw TrainingError("\(path) is an FP32 checkpoint: a QDQ export needs a quantized (QAT or PTQ) one; use --format onnx")
        }
        let task = try makeTask(recipe)
        let (model, _) = try buildModel(task, quantized: qdq, ptqStructure: quantized)
        if qdq { try loadForEvaluation(c, into: model, recipe: recipe, path: path) } else { try loadFloatWeights(c, into: model, recipe: recipe, path: path) }
        model.eval()
        let batches = try task.inputs(split: "test", batches: reference == nil ? 1 : (images + recipe.eval.batch - 1) / recipe.eval.batch)
        guard let first = batches.first else { throw TrainingError("\(path): the test split is empty; nothing to size the graph's input by") }
        let proto: Onnx_ModelProto
        do { proto = try ONNXExport.model(model, inputShape: first.shape, qdq: qdq) } catch { throw TrainingError("\(error)") }
        let data = try ONNXExport.serialized(proto)
        do { try AtomicFile.write(data, to: out) } catch { throw TrainingError("--out: \(error)") }
        var summary = "wrote \(out): \(format.rawValue), opset \(ONNXExport.opset), \(proto.graph.node.count) nodes, \(proto.graph.initializer.count) initializers, input [N, \(first.shape.dropFirst().map(String.init).joined(separator: ", "))]"
        if let dir = reference {
            var xs: [Float] = [], ys: [Float] = []
            var n = 0, outTail: [Int] = []
            noGrad {
                for b in batches where n < images {
                    let take = min(b.shape[0], images - n)
                    let x = take == b.shape[0] ? b : Tensor(shape: [take] + b.shape.dropFirst(), scalars: Array(b.scalars.prefix(take * b.count / b.shape[0])))
                    let y = model(x)
                    xs += x.scalars; ys += y.scalars; outTail = Array(y.shape.dropFirst())
                    n += take
                }
            }
            let inShape = [n] + first.shape.dropFirst(), outShape = [n] + outTail
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try AtomicFile.write(xs.withUnsafeBufferPointer { Data(buffer: $0) }, to: dir + "/input.f32", replacing: .anything)
                try AtomicFile.write(ys.withUnsafeBufferPointer { Data(buffer: $0) }, to: dir + "/output.f32", replacing: .anything)
                let meta: [String: Any] = ["format": format.rawValue, "checkpoint": path, "onnx": out, "input_shape": inShape, "output_shape": outShape]
                try AtomicFile.write(try JSONSerialization.data(withJSONObject: meta, options: [.prettyPrinted, .sortedKeys]), to: dir + "/reference.json", replacing: .anything)
            } catch { throw TrainingError("--reference: \(error)") }
            summary += "; reference: \(n) test images and our outputs in \(dir)"
        }
        return summary
    }
}
