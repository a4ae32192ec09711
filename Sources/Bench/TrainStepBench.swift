import Foundation
import Kernels
import Autodiff
import NN
import Optim

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
    }

    public static func run(model name: String, width: Double, batch: Int, size: Int, reps: Int) throws -> Report {
        var rng = RNG(seed: 0)
        let model = try Backbones.make(name, width: width, numClasses: nil, rng: &rng)
        model.train()
        let opt = SGD(model.namedParameters(), lr: 0.01, momentum: 0.9)
        let x = Tensor.randn([batch, 3, size, size], rng: &rng)
        let ms = timeMedian(reps: reps) {
            opt.zeroGrad()
            let y = model(x)
            let loss = y.square().mean()
            loss.backward()
            opt.step()
        }
        return Report(model: name, width: width, batch: batch, size: size, threads: Parallel.threads, reps: reps,
                      msPerStep: ms, imagesPerSecond: Double(batch) / ms * 1000, peakRSSMiB: peakRSSMiB(),
                      parameters: model.parameterCount)
    }

    public static func peakRSSMiB() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024   // Linux reports KiB
    }

    public static func format(_ r: Report) -> String {
        """
        qat bench train-step: \(r.model) width \(r.width), batch \(r.batch) x 3 x \(r.size) x \(r.size), \(r.threads) thread(s), median of \(r.reps) steps after 3 warm-up steps
        \(String(format: "%.1f", r.msPerStep)) ms/step, \(String(format: "%.1f", r.imagesPerSecond)) images/s, peak RSS \(String(format: "%.0f", r.peakRSSMiB)) MiB, \(r.parameters) parameters
        """
    }
}
