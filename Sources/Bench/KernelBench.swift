import Dispatch
import Foundation
import Kernels
import Autodiff

/// One measured workload: median wall time over the repetitions, and the work it represents.
public struct BenchResult: Codable, Sendable {
    public var name: String
    public var detail: String
    public var ms: Double
    /// Floating-point operations (2 per multiply-add) per repetition, 0 for memory-bound kernels.
    public var flops: Double
    /// Bytes read and written per repetition (the minimum a kernel must move), 0 for GEMM-bound kernels.
    public var bytes: Double
    public var gflops: Double { flops > 0 ? flops / ms / 1e6 : 0 }
    public var gbps: Double { bytes > 0 ? bytes / ms / 1e6 : 0 }
}

public struct KernelBenchReport: Codable, Sendable {
    public var threads: Int
    public var reps: Int
    public var results: [BenchResult]
    /// GFLOP/s of the cblas_sgemm reference shaped like the conv3x3 forward GEMM.
    public var sgemmReferenceGFLOPS: Double
}

/// The `qat bench kernels` workloads (definitions shared with `shared/tools/reference/bench_torch.py`
/// where it has them): each conv is timed through the autodiff engine exactly like the PyTorch
/// reference, `conv(x).sum().backward()` with x, weight and bias requiring gradients.
public enum KernelBench {
    public struct Config: Sendable {
        public var reps: Int
        /// Divides the batch (smoke tests use a small batch; the published numbers use 1).
        public var batchDivisor: Int
        public init(reps: Int = 20, batchDivisor: Int = 1) { self.reps = reps; self.batchDivisor = batchDivisor }
    }

    static func convStep(name: String, detail: String, input: [Int], weight: [Int], padding: (Int, Int), groups: Int,
                         reps: Int, flopsOverride: Double? = nil, bytes: Double = 0) -> BenchResult {
        var rng = RNG(seed: 0)
        let x = Tensor.randn(input, rng: &rng, requiresGrad: true)
        let w = Tensor.randn(weight, std: 0.05, rng: &rng, requiresGrad: true)
        let b = Tensor.zeros([weight[0]], requiresGrad: true)
        let geo = try! ConvGeometry(input: input, weight: weight, padding: padding, groups: groups)
        let ms = timeMedian(reps: reps) {
            x.grad = nil; w.grad = nil; b.grad = nil
            x.conv2d(w, bias: b, padding: padding, groups: groups).sum().backward()
        }
        // Forward, input-gradient and weight-gradient passes: 3 x 2 x MACs.
        return BenchResult(name: name, detail: detail, ms: ms, flops: flopsOverride ?? Double(6 * geo.macs), bytes: bytes)
    }

    public static func run(_ cfg: Config) -> KernelBenchReport {
        let nb = max(1, 8 / cfg.batchDivisor)
        var results: [BenchResult] = []

        // cblas_sgemm shaped like the conv3x3 forward: [64 x 576] x [576 x 4096] per image, nb images.
        let m = 64, k = 576, n = 4096
        var rng = RNG(seed: 1)
        let a = FloatBuffer(count: m * k), bm = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        rng.fillUniform(a.pointer, count: a.count); rng.fillUniform(bm.pointer, count: bm.count)
        func gemmRef() -> Double {
            timeMedian(reps: cfg.reps) {
                for _ in 0..<nb { sgemm(m: m, n: n, k: k, a: a.pointer, lda: k, b: bm.pointer, ldb: n, c: c.pointer, ldc: n) }
            }
        }
        let gemmBefore = gemmRef()
        let sq = 1024
        let sa = FloatBuffer(count: sq * sq), sb = FloatBuffer(count: sq * sq), sc = FloatBuffer(count: sq * sq)
        rng.fillUniform(sa.pointer, count: sa.count); rng.fillUniform(sb.pointer, count: sb.count)
        let sqms = timeMedian(reps: cfg.reps) { sgemm(m: sq, n: sq, k: sq, a: sa.pointer, lda: sq, b: sb.pointer, ldb: sq, c: sc.pointer, ldc: sq) }
        results.append(BenchResult(name: "sgemm1024", detail: "cblas_sgemm 1024x1024x1024", ms: sqms, flops: 2 * pow(1024, 3), bytes: 0))

        results.append(convStep(name: "conv3x3", detail: "Conv 64->64 3x3 pad 1, input \(nb)x64x64x64, fwd+bwd",
                                input: [nb, 64, 64, 64], weight: [64, 64, 3, 3], padding: (1, 1), groups: 1, reps: cfg.reps))
        let dwElems = Double(nb * 128 * 64 * 64)
        // Depthwise is memory-bound: forward reads x, writes y; backward reads dy and x, writes dx (5 tensors).
        results.append(convStep(name: "dwconv3x3", detail: "Depthwise 3x3 pad 1, 128 ch, input \(nb)x128x64x64, fwd+bwd",
                                input: [nb, 128, 64, 64], weight: [128, 1, 3, 3], padding: (1, 1), groups: 128,
                                reps: cfg.reps, bytes: 5 * 4 * dwElems))
        results.append(convStep(name: "conv1x1", detail: "Conv 128->256 1x1, input \(nb)x128x32x32, fwd+bwd",
                                input: [nb, 128, 32, 32], weight: [256, 128, 1, 1], padding: (0, 0), groups: 1, reps: cfg.reps))

        // The reference is timed before and after the convs and the faster of the two is kept, so a
        // slow moment of a shared machine cannot flatter the conv ratios.
        let gref = BenchResult(name: "sgemm", detail: "cblas_sgemm \(nb) x [64x576]x[576x4096] (faster of 2 runs)",
                               ms: min(gemmBefore, gemmRef()), flops: Double(2 * m * n * k * nb), bytes: 0)
        results.insert(gref, at: 0)

        // Elementwise kernels straight on buffers: bytes = inputs read + output written.
        let en = nb * 64 * 64 * 64
        let ea = FloatBuffer(count: en), eb = FloatBuffer(count: en), ec = FloatBuffer(count: en)
        rng.fillNormal(ea.pointer, count: en); rng.fillNormal(eb.pointer, count: en)
        let addms = timeMedian(reps: cfg.reps) { Elementwise.binary(.add, ea.pointer, [en], eb.pointer, [en], ec.pointer, [en]) }
        results.append(BenchResult(name: "add", detail: "add, \(en) floats", ms: addms, flops: 0, bytes: Double(3 * 4 * en)))
        let bcms = timeMedian(reps: cfg.reps) {
            Elementwise.binary(.mul, ea.pointer, [nb, 64, 64 * 64], eb.pointer, [1, 64, 1], ec.pointer, [nb, 64, 64 * 64])
        }
        results.append(BenchResult(name: "mul_bcast", detail: "mul by per-channel [1,64,1,1], \(en) floats", ms: bcms, flops: 0, bytes: Double(2 * 4 * en)))
        let rfms = timeMedian(reps: cfg.reps) { Elementwise.unary(.relu, ea.pointer, ec.pointer, count: en) }
        results.append(BenchResult(name: "relu_fwd", detail: "relu fwd, \(en) floats", ms: rfms, flops: 0, bytes: Double(2 * 4 * en)))
        let rms = timeMedian(reps: cfg.reps) {
            Elementwise.unary(.relu, ea.pointer, ec.pointer, count: en)
            Elementwise.unaryBackward(.relu, x: ea.pointer, y: ec.pointer, g: eb.pointer, gx: ec.pointer, count: en)
        }
        results.append(BenchResult(name: "relu", detail: "relu fwd+bwd, \(en) floats", ms: rms, flops: 0, bytes: Double(5 * 4 * en)))
        // Fake quantization (per tensor, 8-bit), forward + backward with scale/zero-point gradients:
        // forward reads x and writes y; backward reads x and dy, writes dx (5 tensors).
        let fqScale: [Float] = [0.02], fqZero: [Float] = [128]
        let fqL = FakeQuant.Layout(outer: 1, channels: 1, inner: en)
        var dsc: Float = 0, dzp: Float = 0
        let fqms = timeMedian(reps: cfg.reps) {
            FakeQuant.forward(fqL, x: ea.pointer, scale: fqScale, zeroPoint: fqZero, qmin: 0, qmax: 255, elementMask: nil, channelMask: nil, y: ec.pointer)
            FakeQuant.backward(fqL, x: ea.pointer, dy: eb.pointer, scale: fqScale, zeroPoint: fqZero, qmin: 0, qmax: 255, gradFactor: 1,
                               clippedSTE: true, perTensor: true, elementMask: nil, channelMask: nil, dx: ec.pointer, dscale: &dsc, dzeroPoint: &dzp)
        }
        results.append(BenchResult(name: "fakequant", detail: "fake quant fwd+bwd per tensor, \(en) floats", ms: fqms, flops: 0, bytes: Double(5 * 4 * en)))
        let sms = timeMedian(reps: cfg.reps) { _ = Reduce.total(ea.pointer, count: en) }
        results.append(BenchResult(name: "sum", detail: "sum, \(en) floats", ms: sms, flops: 0, bytes: Double(4 * en)))

        // A size far beyond the 32 MB L3: what main memory sustains (3 x 64 MB at batch 8).
        let ln = en * 8
        let la = FloatBuffer(count: ln), lb = FloatBuffer(count: ln), lc = FloatBuffer(count: ln)
        rng.fillNormal(la.pointer, count: ln); rng.fillNormal(lb.pointer, count: ln)
        let lms = timeMedian(reps: cfg.reps) { Elementwise.binary(.add, la.pointer, [ln], lb.pointer, [ln], lc.pointer, [ln]) }
        results.append(BenchResult(name: "add_large", detail: "add, \(ln) floats (DRAM-resident)", ms: lms, flops: 0, bytes: Double(3 * 4 * ln)))

        return KernelBenchReport(threads: Parallel.threads, reps: cfg.reps, results: results, sgemmReferenceGFLOPS: gref.gflops)
    }

    /// The human table printed by `qat bench kernels`.
    public static func format(_ r: KernelBenchReport) -> String {
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            s.count >= w ? s : (left ? s + String(repeating: " ", count: w - s.count) : String(repeating: " ", count: w - s.count) + s)
        }
        var lines = ["qat bench kernels: \(r.threads) thread(s), median of \(r.reps) reps after 3 warm-up runs (only release builds are meaningful)",
                     pad("workload", 10, left: true) + pad("ms", 10) + pad("GFLOP/s", 10) + pad("x sgemm", 9) + pad("GB/s", 8) + "  definition"]
        for b in r.results {
            let ratio = b.flops > 0 && r.sgemmReferenceGFLOPS > 0 ? String(format: "%.2f", b.gflops / r.sgemmReferenceGFLOPS) : "-"
            lines.append(pad(b.name, 10, left: true) + pad(String(format: "%.2f", b.ms), 10)
                         + pad(b.flops > 0 ? String(format: "%.1f", b.gflops) : "-", 10) + pad(ratio, 9)
                         + pad(b.bytes > 0 ? String(format: "%.1f", b.gbps) : "-", 8) + "  " + b.detail)
        }
        return lines.joined(separator: "\n")
    }
}
