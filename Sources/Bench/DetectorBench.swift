import Foundation
import Int8Engine
import Quant
import Kernels
import Autodiff
import NN
import Optim
import Detection

/// `qat bench detector`: the `retinanet_train`, `retinanet_infer` and `nms10k` workloads of
/// shared/tools/reference/bench_torch.py. RetinaNet on MobileNetV2 x0.5 features (C3-C5 at strides 8, 16,
/// 32), FPN with 64 channels and P6/P7, anchors (16, 32, 64, 128, 256) x int-truncated 2^(0, 1/3, 2/3) x
/// ratios (0.5, 1, 2), 12 classes, focal + L1 losses; batch 8 of 3x256x256 images with 5 random boxes
/// each (xy uniform in [0, 190), wh uniform in [16, 64)); SGD(lr 0.01, momentum 0.9). Inference: eval
/// forward, decoding and NMS. nms10k and the IoU/matching rows: `DetectionBench`.
public enum DetectorBench {
    public struct Report: Codable, Sendable {
        public var threads: Int
        /// OpenBLAS's kernel set (see `BLASDispatch`).
        public var blas: String
        public var reps: Int
        public var trainMsPerStep: Double
        public var inferMsPerBatch: Double
        /// The same inference on the int8 engine (W8A8: per-channel weights, per-tensor activations,
        /// calibrated on the batch; decoding and NMS as in float) and its ratio to `inferMsPerBatch`,
        /// timed alternately with it.
        public var int8InferMsPerBatch: Double?
        public var int8OverFP32: Double?
        /// Detection's own hot paths (IoU, matching, nms10k), from `DetectionBench`.
        public var rows: [String: Double]
        public var parameters: Int
        public var anchors: Int
        /// Peak resident set size of the process after the training steps (getrusage), MiB.
        public var peakRSSMiB: Double
        /// The decoupled design with every component on (`makeDecoupled`): training step, inference,
        /// and its fine-grained type module alone on 100 boxes per image (ms per image, eval, no tape).
        public var decoupledTrainMsPerStep: Double
        public var decoupledInferMsPerBatch: Double
        public var typeModuleMsPerImage100: Double
    }

    /// The thesis' design on the same backbone, FPN and anchors: ATSS, QFL, the RoIAlign type module,
    /// softmax EQL (equal type counts), support focusing and small-loss type targets.
    public static func makeDecoupled(width: Double = 0.5, classes: Int = 12, rng: inout RNG) throws -> DecoupledRetinaNet {
        let backbone = try Backbones.make("mobilenet_v2", width: width, numClasses: nil, rng: &rng)
        var c = DecoupledConfig(base: RetinaNetConfig(numClasses: classes))
        c.assigner = .atss; c.objectness = .qfl; c.typeLoss = .eql; c.supportWeight = 0.5; c.labelNoise = .smallLoss
        c.typeCounts = [Int](repeating: 100, count: classes)
        return try DecoupledRetinaNet(backbone: backbone, config: c, rng: &rng)
    }

    public static func makeModel(width: Double = 0.5, classes: Int = 12, rng: inout RNG) throws -> RetinaNet {
        let backbone = try Backbones.make("mobilenet_v2", width: width, numClasses: nil, rng: &rng)
        return try RetinaNet(backbone: backbone, config: RetinaNetConfig(numClasses: classes), rng: &rng)
    }

    /// Eight images and their targets, drawn like bench_torch.py's (its generator is torch's; the
    /// distributions are the same).
    public static func batch(rng: inout RNG, size: Int = 256, classes: Int = 12) -> (Tensor, [DetectionTarget]) {
        let images = Tensor.uniform([8, 3, size, size], low: 0, high: 1, rng: &rng)
        let targets = (0..<8).map { _ -> DetectionTarget in
            var u = [Float](repeating: 0, count: 20)
            rng.fillUniform(&u, count: 20, low: 0, high: 1)
            let boxes = (0..<5).map { i -> [Float] in
                let x = u[4 * i] * 190, y = u[4 * i + 1] * 190, w = u[4 * i + 2] * 48 + 16, h = u[4 * i + 3] * 48 + 16
                return [x, y, x + w, y + h]
            }
            return DetectionTarget(boxes: XYXYBoxes(boxes), labels: (0..<5).map { Int(u[4 * $0] * 1000) % classes })
        }
        return (images, targets)
    }

    public static func run(reps: Int) throws -> Report {
        var rng = RNG(seed: 0)
        let model = try makeModel(rng: &rng)
        let (images, targets) = batch(rng: &rng)
        let opt = SGD(model.namedParameters(), lr: 0.01, momentum: 0.9)
        model.train()
        let train = timeMedian(reps: reps) {
            opt.zeroGrad()
            let l = model.losses(images: images, targets: targets)
            (l["classification"]! + l["bbox_regression"]!).backward()
            opt.step()
        }
        let peak = TrainStepBench.peakRSSMiB()
        model.eval()
        let anchors = noGrad { model.headOutputs(images).anchors.count }
        var infer = timeMedian(reps: reps) { _ = model.detect(images) }
        // The int8 engine on a quantized copy (same seed), alternating with the float model.
        var qrng = RNG(seed: 0)
        let qmodel = try makeModel(rng: &qrng)
        let handle = try quantize(qmodel, plan: .bits(weight: 8, activation: 8))
        handle.calibrate(qmodel, batches: [images], forward: { qmodel($0) })
        qmodel.eval()
        let int8 = try Int8Engine.detector(for: qmodel)
        var tf: [Double] = [], ti: [Double] = []
        for _ in 0..<2 { _ = int8.detect(images) }
        for _ in 0..<reps {
            tf.append(timeMedian(reps: 1, warmup: 0) { _ = model.detect(images) })
            ti.append(timeMedian(reps: 1, warmup: 0) { _ = int8.detect(images) })
        }
        infer = TrainStepBench.median(tf)
        let int8Infer = TrainStepBench.median(ti), int8Ratio = TrainStepBench.median(zip(ti, tf).map { $0 / $1 })
        var rows = Dictionary(uniqueKeysWithValues: (DetectionBench.run(reps: reps) + (try AssignerBench.run(reps: reps))).map { ($0.name, $0.ms) })
        rows["roialign"] = try roiAlignForwardBackward(reps: reps, rng: &rng)

        let dec = try makeDecoupled(rng: &rng)
        let decOpt = SGD(dec.namedParameters(), lr: 0.01, momentum: 0.9)
        dec.train()
        let decTrain = timeMedian(reps: reps) {
            decOpt.zeroGrad()
            Loss.total(dec.losses(images: images, targets: targets)).backward()
            decOpt.step()
        }
        dec.eval()
        let decInfer = timeMedian(reps: reps) { _ = dec.detect(images) }
        let levels = noGrad { dec.fpn.pyramid(dec.backbone.featureMaps(images)) }
        let boxes = (0..<8).map { _ -> XYXYBoxes in
            var u = [Float](repeating: 0, count: 400)
            rng.fillUniform(&u, count: 400, low: 0, high: 1)
            return XYXYBoxes((0..<100).map { i in
                let x = u[4 * i] * 190, y = u[4 * i + 1] * 190
                return [x, y, x + u[4 * i + 2] * 48 + 16, y + u[4 * i + 3] * 48 + 16]
            })
        }
        let module = timeMedian(reps: reps) { noGrad { _ = dec.fineGrained.logits(levels: levels, boxes: boxes, imageSize: (256, 256)) } } / 8
        return Report(threads: Parallel.threads, blas: BLASDispatch.coreName, reps: reps, trainMsPerStep: train, inferMsPerBatch: infer,
                      int8InferMsPerBatch: int8Infer, int8OverFP32: int8Ratio, rows: rows,
                      parameters: model.parameterCount, anchors: anchors, peakRSSMiB: peak, decoupledTrainMsPerStep: decTrain,
                      decoupledInferMsPerBatch: decInfer, typeModuleMsPerImage100: module)
    }

    /// The fine-grained module's pooling in training: forward + backward of MultiScaleRoIAlign (7x7,
    /// sampling ratio 2, aligned, the decoupled detector's level mapping 64 px at P4) for 100 boxes of
    /// 16-64 px spread over 8 images at 256 px, on 64-channel P3-P5 maps.
    static func roiAlignForwardBackward(reps: Int, rng: inout RNG) throws -> Double {
        let features = [32, 16, 8].map { Tensor.randn([8, 64, $0, $0], rng: &rng, requiresGrad: true) }
        var boxes = [XYXYBoxes](repeating: XYXYBoxes(), count: 8)
        var u = [Float](repeating: 0, count: 400)
        rng.fillUniform(&u, count: 400, low: 0, high: 1)
        for i in 0..<100 {
            let w = 16 + u[4 * i + 2] * 48, h = 16 + u[4 * i + 3] * 48
            let x = u[4 * i] * (256 - w), y = u[4 * i + 1] * (256 - h)
            boxes[i % 8].coords += [x, y, x + w, y + h]
        }
        let upstream = Tensor.randn([100, 64, 7, 7], rng: &rng)
        let pooler = try MultiScaleRoIAlign(outputSize: (7, 7), samplingRatio: 2, canonicalScale: 64, canonicalLevel: 4, aligned: true)
        var failure: Error?
        let ms = timeMedian(reps: reps) {
            for f in features { f.grad = nil }
            do { try pooler(features, boxes: boxes, imageSize: (256, 256)).backward(upstream) } catch { failure = error }
        }
        if let failure { throw failure }
        return ms
    }

    public static func format(_ r: Report) -> String {
        """
        qat bench detector: RetinaNet MobileNetV2 x0.5 + FPN(64, P3-P7) + heads, 12 classes, \(r.anchors) anchors, \(r.parameters) parameters; batch 8 x 3 x 256 x 256; \(r.threads) thread(s), OpenBLAS \(r.blas) kernels, median of \(r.reps) after 3 warm-up
        retinanet_train: \(String(format: "%.1f", r.trainMsPerStep)) ms/step (SGD, focal + L1)
        retinanet_infer: \(String(format: "%.1f", r.inferMsPerBatch)) ms/batch (forward, decode, NMS); on the int8 engine (W8A8, \(Int8Engine.kernelPath) kernels): \(String(format: "%.1f", r.int8InferMsPerBatch ?? .nan)) ms/batch, \(String(format: "%.2f", r.int8OverFP32 ?? .nan))x
        nms10k: \(String(format: "%.2f", r.rows["nms10k"] ?? .nan)) ms; boxIoU 100 x 20k: \(String(format: "%.2f", r.rows["iou"] ?? .nan)) ms; matching (IoU included): \(String(format: "%.2f", r.rows["match"] ?? .nan)) ms
        peak RSS after training steps \(String(format: "%.0f", r.peakRSSMiB)) MiB
        assignment per image, 12,276 anchors: IoU matcher \(String(format: "%.2f", r.rows["matcher_10"] ?? .nan)) / \(String(format: "%.2f", r.rows["matcher_100"] ?? .nan)) ms, ATSS \(String(format: "%.2f", r.rows["atss_10"] ?? .nan)) / \(String(format: "%.2f", r.rows["atss_100"] ?? .nan)) ms (10 / 100 boxes); RoIAlign P3-P5 forward + backward, 100 boxes: \(String(format: "%.2f", r.rows["roialign"] ?? .nan)) ms
        decoupled design (ATSS, QFL, RoIAlign type module, softmax EQL, support focusing, small-loss): train \(String(format: "%.1f", r.decoupledTrainMsPerStep)) ms/step (\(String(format: "%.2f", r.decoupledTrainMsPerStep / r.trainMsPerStep))x RetinaNet's), inference \(String(format: "%.1f", r.decoupledInferMsPerBatch)) ms/batch; type module on 100 boxes: \(String(format: "%.2f", r.typeModuleMsPerImage100)) ms/image
        """
    }
}
