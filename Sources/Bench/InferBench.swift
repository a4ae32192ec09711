import Foundation
import Kernels
import Autodiff
import NN
import Quant
import Int8Engine
import ONNX

/// `qat bench infer`: bench_torch.py's `mbv2_infer` for any backbone (features only, eval-mode
/// forward, one batch of random images per repetition), on our FP32 inference path and, with
/// `--engine int8`, on the int8 engine compiled from the same backbone quantized by `--quant`
/// (default w8a8: per-channel asymmetric weights, per-tensor activations, residual adds quantized)
/// and calibrated on two random batches. Both are timed alternately in one process and reported
/// with their ratio.
public enum InferBench {
    public struct Report: Codable, Sendable {
        public var model: String
        public var width: Double
        public var batch: Int
        public var size: Int
        public var threads: Int
        public var reps: Int
        public var fp32MsPerBatch: Double
        public var fp32ImagesPerSecond: Double
        public var engine: String
        public var quant: String?
        /// The int8 kernels' path (avx512-vnni or portable).
        public var int8Kernels: String?
        public var int8MsPerBatch: Double?
        public var int8ImagesPerSecond: Double?
        /// Median of the per-repetition ratios int8 / fp32 time.
        public var int8OverFP32: Double?
    }

    /// `onnxOut`: also write the quantized, calibrated model the int8 engine runs as a QDQ ONNX file
    /// (input [N, 3, size, size]), so ONNX Runtime can time the same model (scripts/bench/int8_vs_ort.sh).
    public static func run(model name: String, width: Double, batch: Int, size: Int, reps: Int, engine: String, quant: String,
                           onnxOut: String? = nil) throws -> Report {
        var rng = RNG(seed: 0)
        let x = Tensor.randn([batch, 3, size, size], rng: &rng)
        let float = try Backbones.make(name, width: width, numClasses: nil, rng: &rng)
        float.eval()
        let f32 = { _ = noGrad { float(x) } }
        var r = Report(model: name, width: width, batch: batch, size: size, threads: Parallel.threads, reps: reps,
                       fp32MsPerBatch: 0, fp32ImagesPerSecond: 0, engine: engine)
        guard engine == "int8" else {
            r.fp32MsPerBatch = timeMedian(reps: reps) { f32() }
            r.fp32ImagesPerSecond = Double(batch) / r.fp32MsPerBatch * 1000
            return r
        }
        guard let (w, a) = TrainStepBench.parseQuant(quant) else { throw QuantConfigError(path: "--quant", "'\(quant)' is not wNaM with N, M in 2...8 (e.g. w8a8)") }
        var qrng = RNG(seed: 0)
        let qmodel = try Backbones.make(name, width: width, numClasses: nil, rng: &qrng)
        let handle = try quantize(qmodel, plan: .bits(weight: w, activation: a))
        handle.calibrate(qmodel, batches: [Tensor.randn([2, 3, size, size], rng: &rng), Tensor.randn([2, 3, size, size], rng: &rng)],
                         forward: { qmodel($0) })
        qmodel.eval()
        let program = try Int8Engine.compile(qmodel)
        if let onnxOut {
            let proto = try ONNXExport.model(qmodel, inputShape: [batch, 3, size, size], qdq: true)
            try ONNXExport.serialized(proto).write(to: URL(fileURLWithPath: onnxOut), options: .atomic)
        }
        let i8 = { _ = program.run(x) }
        for _ in 0..<2 { f32(); i8() }
        var tf: [Double] = [], ti: [Double] = []
        for _ in 0..<reps {
            tf.append(timeMedian(reps: 1, warmup: 0) { f32() })
            ti.append(timeMedian(reps: 1, warmup: 0) { i8() })
        }
        r.fp32MsPerBatch = TrainStepBench.median(tf)
        r.fp32ImagesPerSecond = Double(batch) / r.fp32MsPerBatch * 1000
        r.quant = quant
        r.int8Kernels = Int8Engine.kernelPath
        r.int8MsPerBatch = TrainStepBench.median(ti)
        r.int8ImagesPerSecond = Double(batch) / r.int8MsPerBatch! * 1000
        r.int8OverFP32 = TrainStepBench.median(zip(ti, tf).map { $0 / $1 })
        if ProcessInfo.processInfo.environment["QAT_INT8_PROFILE"] != nil {
            var t: [String: Double] = [:], order: [String] = []
            for _ in 0..<3 { _ = program.run(x, timing: { n, ms in if t[n] == nil { order.append(n) }; t[n, default: 0] += ms / 3 }) }
            for n in order { print(String(format: "%8.2f ms  %@", t[n]!, n as NSString)) }
        }
        return r
    }

    public static func format(_ r: Report) -> String {
        var s = String(format: "inference %@ x%g, batch %d, %dx%d, %d threads, %d reps (median)\n", r.model as NSString, r.width, r.batch, r.size, r.size, r.threads, r.reps)
        s += String(format: "  fp32: %.1f ms/batch, %.1f images/s\n", r.fp32MsPerBatch, r.fp32ImagesPerSecond)
        if let m = r.int8MsPerBatch, let ips = r.int8ImagesPerSecond, let ratio = r.int8OverFP32 {
            s += String(format: "  int8 (%@, %@ kernels): %.1f ms/batch, %.1f images/s; int8 / fp32 time %.2fx\n",
                        r.quant ?? "", r.int8Kernels ?? "", m, ips, ratio)
        }
        return s
    }
}
