import Foundation
import Kernels
import Autodiff
import NN
import Optim
import Quant

/// `qat bench train-step`: the `mbv2_train` workload of bench_torch.py for any backbone:
/// features only, loss mean(y^2) over the last feature map, SGD(lr 0.01, momentum 0.9), one full step
/// (zero grad, forward, backward, update) per repetition.
public enum TrainStepBench {
    public struct Report: Codable, Sendable {
        public var model: String
        public var width: Double
        public var batch: Int
        public var size: Int
        public var threads: Int
        public var reps: Int
        public var msPerStep: Double
        public var imagesPerSecond: Double
        /// Peak resident set size of the process (getrusage ru_maxrss), MiB.
        public var peakRSSMiB: Double
        public var parameters: Int
        /// With `--quant`: the quantization (e.g. "w8a8"), its step time and the ratio to the float step
        /// measured in the same process.
        public var quant: String?
        public var quantMsPerStep: Double?
        public var quantOverFloat: Double?
    }

    /// "w8a8" -> (8, 8). Bits must be 2...8.
    public static func parseQuant(_ s: String) -> (Int, Int)? {
        let l = s.lowercased()
        guard l.hasPrefix("w"), let a = l.firstIndex(of: "a"), let w = Int(l[l.index(after: l.startIndex)..<a]),
              let b = Int(l[l.index(after: a)...]), (2...8).contains(w), (2...8).contains(b) else { return nil }
        return (w, b)
    }

    /// bench_torch.py's mbv2_qat: learnable per-channel weight and per-tensor input fake quant on every
    /// conv (grad factor 1), no other quantizers.
    public static func qatPlan(weightBits: Int, activationBits: Int) -> QuantPlan {
        var p = QuantPlan.bits(weight: weightBits, activation: activationBits)
        p.weight.gradFactor = .one; p.activation.gradFactor = .one
        p.quantizeResidualAdds = false
        return p
    }

    /// A model, optimizer and input ready to run steps of the workload.
    struct Workload {
        let model: any Backbone
        let opt: SGD
        let x: Tensor
        init(name: String, width: Double, batch: Int, size: Int, plan: QuantPlan?) throws {
            var rng = RNG(seed: 0)
            model = try Backbones.make(name, width: width, numClasses: nil, rng: &rng)
            if let plan { try quantize(model, plan: plan) }
            model.train()
            opt = SGD(model.namedParameters(), lr: 0.01, momentum: 0.9)
            x = Tensor.randn([batch, 3, size, size], rng: &rng)
        }
        func step() {
            opt.zeroGrad()
            model(x).square().mean().backward()
            opt.step()
        }
    }

    public static func run(model name: String, width: Double, batch: Int, size: Int, reps: Int, quant: String? = nil) throws -> Report {
        let float = try Workload(name: name, width: width, batch: batch, size: size, plan: nil)
        var r = Report(model: name, width: width, batch: batch, size: size, threads: Parallel.threads, reps: reps,
                       msPerStep: 0, imagesPerSecond: 0, peakRSSMiB: 0, parameters: float.model.parameterCount)
        if let quant {
            guard let (w, a) = parseQuant(quant) else { throw QuantConfigError(path: "--quant", "'\(quant)' is not wNaM with N, M in 2...8 (e.g. w8a8)") }
            let q = try Workload(name: name, width: width, batch: batch, size: size, plan: qatPlan(weightBits: w, activationBits: a))
            // Float and QAT steps alternate, so both see the same machine conditions; medians of each.
            for _ in 0..<3 { float.step(); q.step() }
            var tf: [Double] = [], tq: [Double] = []
            for _ in 0..<reps {
                tf.append(timeMedian(reps: 1, warmup: 0) { float.step() })
                tq.append(timeMedian(reps: 1, warmup: 0) { q.step() })
            }
            r.msPerStep = median(tf)
            r.quant = quant; r.quantMsPerStep = median(tq); r.quantOverFloat = median(zip(tq, tf).map { $0 / $1 })
        } else {
            r.msPerStep = timeMedian(reps: reps) { float.step() }
        }
        r.imagesPerSecond = Double(batch) / r.msPerStep * 1000
        r.peakRSSMiB = peakRSSMiB()
        return r
    }

    static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    public static func peakRSSMiB() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024   // Linux reports KiB
    }

    public static func format(_ r: Report) -> String {
        """
        qat bench train-step: \(r.model) width \(r.width), batch \(r.batch) x 3 x \(r.size) x \(r.size), \(r.threads) thread(s), median of \(r.reps) steps after 3 warm-up steps
        float: \(String(format: "%.1f", r.msPerStep)) ms/step, \(String(format: "%.1f", r.imagesPerSecond)) images/s, \(r.parameters) parameters
        """ + (r.quant.map { q in
            "\nQAT \(q) (learnable per-channel weights, per-tensor inputs, every conv): \(String(format: "%.1f", r.quantMsPerStep!)) ms/step; median ratio of alternating QAT/float steps \(String(format: "%.2f", r.quantOverFloat!))x"
        } ?? "") + "\npeak RSS \(String(format: "%.0f", r.peakRSSMiB)) MiB"
    }
}
