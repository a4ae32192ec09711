import Foundation
import Kernels
import Autodiff
import NN

/// The thesis' one-stage aircraft detector: RetinaNet's backbone, FPN, anchors and box regression; a
/// class-agnostic foreground head (one sigmoid per anchor: a wrong type label is still a right
/// "aircraft here" label, LNCIS / GOOD), trained with focal, quality (QFL / VFL) or hard-example (OHEM /
/// GHM-C) losses on anchors chosen by IoU or ATSS without looking at types; and a fine-grained type
/// module on RoIAlign features of each ground-truth box and of the predicted boxes of its foreground
/// anchors, with long-tail type losses, optional noise-robust targets and support-sample focusing.
/// A detection's score is p(foreground) x p(type) (ALGORITHMS.md section 6).
///
/// Losses by name: `objectness`, `bbox_regression`, `type`, and `support` when focusing is on.
public final class DecoupledRetinaNet: Module, TypeClassifier {
    public static let topLevelModules = ["backbone", "fpn", "objectnessHead", "regressionHead", "fineGrained", "lossState"]

    public let backbone: any Backbone
    public let fpn: FPN
    public let objectnessHead: RetinaHeadBranch
    public let regressionHead: RetinaHeadBranch
    public let fineGrained: FineGrainedHead
    /// Running state of the stateful losses (step count, GHM-C bin counts, EQLv2 gradients, Seesaw
    /// counts), as buffers so checkpoints carry it and a resumed run continues the same bits.
    public let lossState: DecoupledLossState
    public let config: DecoupledConfig
    let anchorGenerator: AnchorGenerator
    let assigner: any AnchorAssigner
    /// The prediction-aware rule (`task_aligned`), used after the warm-up; `assigner` (ATSS) before.
    let taskAligned: TaskAlignedAssigner?
    let boxCoder: BoxCoder
    let postprocessor: RetinaNetPostprocess
    /// `class_weighted`'s per-type weights (nil without training counts: evaluation and prediction).
    let typeClassWeights: [Float]?

    public init(backbone: any Backbone, config c: DecoupledConfig, rng: inout RNG) throws {
        let b = c.base
        try b.validate()
        guard c.typeCounts.isEmpty || c.typeCounts.count == b.numClasses else {
            throw DetectionConfigError(key: "type_counts", "\(c.typeCounts.count) counts for \(b.numClasses) types")
        }
        self.backbone = backbone
        config = c
        fpn = try FPN(inChannels: backbone.featureChannels, channels: b.fpnChannels, levels: b.levels, rng: &rng)
        anchorGenerator = try AnchorGenerator(baseSizes: b.anchorSizes, scales: b.anchorScales, aspectRatios: b.anchorRatios,
                                              truncateScaledSizes: b.integerSizes)
        let a = anchorGenerator.anchorsPerLocation[0]
        objectnessHead = try RetinaHeadBranch(channels: b.fpnChannels, anchorsPerLocation: a, outputsPerAnchor: 1, convs: b.headConvs,
                                              groupNorm: b.groupNorm, priorProbability: b.priorProbability, rng: &rng)
        regressionHead = try RetinaHeadBranch(channels: b.fpnChannels, anchorsPerLocation: a, outputsPerAnchor: 4, convs: b.headConvs,
                                              groupNorm: b.groupNorm, priorProbability: nil, rng: &rng)
        fineGrained = try FineGrainedHead(channels: b.fpnChannels, types: b.numClasses, fpnLevels: b.levels, config: c, rng: &rng)
        lossState = try DecoupledLossState(config: c)
        switch c.assigner {
        case .iou:
            assigner = try Matcher(highThreshold: b.fgIoU, lowThreshold: b.bgIoU, allowLowQualityMatches: b.lowQualityMatches, ignoreIoF: b.ignoreIoF)
        case .atss, .taskAligned:
            assigner = try ATSSAssigner(topk: c.atssTopk, ignoreIoF: b.ignoreIoF)
        }
        taskAligned = c.assigner == .taskAligned ? try TaskAlignedAssigner(topk: c.talTopk, alpha: c.talAlpha, beta: c.talBeta, ignoreIoF: b.ignoreIoF) : nil
        if c.typeLoss == .classWeighted && !c.typeCounts.isEmpty {
            // Types absent from the training set would get an infinite weight; count them once.
            typeClassWeights = try classWeights(counts: c.typeCounts.map { max($0, 1) }, .effectiveNumber(beta: Double(c.classWeightBeta)))
        } else { typeClassWeights = nil }
        boxCoder = try BoxCoder(weights: b.boxWeights)
        postprocessor = try RetinaNetPostprocess(scoreThreshold: b.scoreThreshold, topkCandidates: b.topkCandidates,
                                                 nmsThreshold: b.nmsIoU, detectionsPerImage: b.maxDetections, boxCoder: boxCoder)
        super.init()
    }

    struct HeadOutputs {
        let levels: [Tensor]
        let objectness: Tensor   // [N, A, 1]
        let regression: Tensor   // [N, A, 4]
        let anchors: MultiLevelAnchors
    }

    func headOutputs(_ images: Tensor) -> HeadOutputs {
        precondition(images.rank == 4, "DecoupledRetinaNet: images must be [N, 3, H, W], got \(images.shape)")
        let levels = fpn.pyramid(backbone.featureMaps(images))
        let anchors = anchorGenerator.anchors(featureShapes: levels.map { (height: $0.shape[2], width: $0.shape[3]) },
                                              imageHeight: images.shape[2], imageWidth: images.shape[3])
        return HeadOutputs(levels: levels, objectness: objectnessHead.predict(levels), regression: regressionHead.predict(levels), anchors: anchors)
    }

    /// `[N, A, 5]` (objectness and box regression): every anchor layer runs; the fine-grained module
    /// runs on one box per image so quantizer calibration and summaries reach it too.
    public override func forward(_ x: Tensor) -> Tensor {
        let h = headOutputs(x)
        let s = (height: x.shape[2], width: x.shape[3])
        let centre = XYXYBoxes(coords: [Float(s.width) * 0.375, Float(s.height) * 0.375, Float(s.width) * 0.625, Float(s.height) * 0.625])
        _ = fineGrained.logits(levels: h.levels, boxes: Array(repeating: centre, count: x.shape[0]), imageSize: s)
        return Tensor.concat([h.objectness, h.regression], axis: 2)
    }

    public func losses(images: Tensor, targets: [DetectionTarget]) -> [String: Tensor] {
        let n = targets.count, k = config.numTypes
        precondition(n == images.shape[0], "DecoupledRetinaNet.losses: \(n) targets for a batch of \(images.shape[0])")
        for t in targets { precondition(t.labels.allSatisfy { $0 >= 0 && $0 < k }, "DecoupledRetinaNet.losses: a label outside 0..<\(k)") }
        let h = headOutputs(images)
        let step = lossState.nextStep()
        // Foreground/background assignment never reads a type label.
        let assignments = assign(h, targets: targets, step: step)
        let t = AnchorTargets(matches: assignments.map(\.matches), anchors: h.anchors, targets: targets)
        let predicted = predictedBoxes(h.regression, t)
        let quality = pairedIoU(predicted, XYXYBoxes(coords: t.boxes))
        var out: [String: Tensor] = [:]
        // The foreground target of a positive: its predicted box's IoU, or with the task-aligned rule
        // TOOD's normalised alignment metric.
        let aligned = taskAligned != nil && step >= config.assignerWarmupSteps
        let objectnessTarget = aligned ? t.rows.map { r in assignments[r / t.anchorsPerImage].quality[r % t.anchorsPerImage] } : quality
        out["objectness"] = objectnessLoss(h.objectness, t, quality: objectnessTarget)
        out["bbox_regression"] = t.regressionLoss(h.regression, kind: config.base.regression, boxCoder: boxCoder,
                                                  smoothL1Beta: config.base.smoothL1Beta, weight: config.base.regressionWeight)

        let rois = TypeRoIs(targets: targets, anchorTargets: t, predicted: predicted, quality: quality, perBox: config.roisPerBox)
        if rois.count > 0 {
            let all = fineGrained.logits(levels: h.levels, boxes: rois.boxes, imageSize: (images.shape[2], images.shape[3]))
            let kept = keptRoIs(all, rois, step: step)
            let logits = kept.count == rois.count ? all : all.indexSelect(axis: 0, indices: kept)
            let labels = kept.map { rois.labels[$0] }
            out["type"] = typeLoss(logits, labels: labels, step: step) * config.typeLossWeight
            if config.supportWeight > 0 {
                out["support"] = supportLoss(typeLogits: logits, labels: labels, objectness: h.objectness, anchorTargets: t) * config.supportWeight
            }
        } else {
            // No box in the batch: the type module gets no gradient; the loss names stay the same.
            out["type"] = (h.objectness * 0).sum()
            if config.supportWeight > 0 {
                out["support"] = supportLoss(typeLogits: nil, labels: [], objectness: h.objectness, anchorTargets: t) * config.supportWeight
            }
        }
        return out
    }

    /// Each image's assignment: the configured rule, or for `task_aligned` after its warm-up TOOD's
    /// rule on the foreground probabilities and decoded boxes of every anchor (values only).
    func assign(_ h: HeadOutputs, targets: [DetectionTarget], step: Int) -> [AnchorAssignment] {
        guard let tal = taskAligned, step >= config.assignerWarmupSteps else {
            return targets.map { assigner.assign(anchors: h.anchors, target: $0) }
        }
        let a = h.anchors.count
        let logits = h.objectness.scalars, codes = h.regression.scalars
        return targets.enumerated().map { i, target in
            let scores = logits[(i * a)..<((i + 1) * a)].map { 1 / (1 + expf(-$0)) }
            let boxes = boxCoder.decode(Array(codes[(4 * i * a)..<(4 * (i + 1) * a)]), anchors: h.anchors.boxes)
            return tal.assign(anchors: h.anchors, target: target, scores: scores, predicted: boxes)
        }
    }

    /// Decoded boxes of the foreground anchors' regression outputs (values only).
    func predictedBoxes(_ regression: Tensor, _ t: AnchorTargets) -> XYXYBoxes {
        var codes = [Float](repeating: 0, count: 4 * t.foregroundCount)
        for (i, r) in t.rows.enumerated() { for q in 0..<4 { codes[4 * i + q] = regression.pointer[4 * r + q] } }
        return boxCoder.decode(codes, anchors: XYXYBoxes(coords: t.anchorBoxes))
    }

    public func detect(_ images: Tensor, imageSizes: [(height: Int, width: Int)]?) -> [Detections] {
        let sizes = imageSizes ?? Array(repeating: (height: images.shape[2], width: images.shape[3]), count: images.shape[0])
        return noGrad {
            let h = headOutputs(images)
            let found = postprocessor.detections(classLogits: h.objectness, boxRegression: h.regression, anchors: h.anchors, imageSizes: sizes)
            let total = found.reduce(0) { $0 + $1.count }
            guard total > 0 else { return found.map { _ in Detections() } }
            let probabilities = typeProbabilities(logits: fineGrained.logits(levels: h.levels, boxes: found.map(\.boxes),
                                                                             imageSize: (images.shape[2], images.shape[3])))
            return typedDetections(found, probabilities: probabilities.scalars)
        }
    }

    /// Each kept box gives its `typesPerBox` most probable types, scored p(foreground) x p(type); an
    /// image's detections are ordered by score (ties: box order, then type order).
    func typedDetections(_ found: [Detections], probabilities p: [Float]) -> [Detections] {
        let k = config.numTypes, keepTypes = min(config.typesPerBox, k)
        var row = 0
        return found.map { d in
            var entries: [(score: Float, box: Int, type: Int)] = []
            for j in 0..<d.count {
                let probs = p[((row + j) * k)..<((row + j + 1) * k)]
                let order = probs.indices.sorted { probs[$0] != probs[$1] ? probs[$0] > probs[$1] : $0 < $1 }
                for idx in order.prefix(keepTypes) {
                    entries.append((d.scores[j] * probs[idx], j, idx - (row + j) * k))
                }
            }
            row += d.count
            let sorted = entries.enumerated().sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset }
                .map(\.element)
            var coords: [Float] = []
            coords.reserveCapacity(4 * sorted.count)
            for e in sorted { coords += d.boxes.coords[(4 * e.box)..<(4 * e.box + 4)] }
            return Detections(boxes: XYXYBoxes(coords: coords), scores: sorted.map(\.score), labels: sorted.map(\.type))
        }
    }

    public func typeProbabilities(_ images: Tensor, boxes: [XYXYBoxes]) -> [[Float]] {
        precondition(boxes.count == images.shape[0], "typeProbabilities: \(boxes.count) box lists for \(images.shape[0]) images")
        guard boxes.contains(where: { !$0.isEmpty }) else { return boxes.map { _ in [] } }
        return noGrad {
            let levels = fpn.pyramid(backbone.featureMaps(images))
            let p = typeProbabilities(logits: fineGrained.logits(levels: levels, boxes: boxes, imageSize: (images.shape[2], images.shape[3]))).scalars
            let k = config.numTypes
            var start = 0
            return boxes.map { b in defer { start += b.count * k }; return Array(p[start..<(start + b.count * k)]) }
        }
    }
}

/// IoU of box i of `a` with box i of `b` (no gradient): the localisation quality of a prediction, by
/// the same measure as `boxIoU` (ground-truth boxes have positive area, so the union is never 0).
func pairedIoU(_ a: XYXYBoxes, _ b: XYXYBoxes) -> [Float] {
    precondition(a.count == b.count, "pairedIoU: \(a.count) and \(b.count) boxes")
    return (0..<a.count).map { i in
        let p = a[i], q = b[i]
        return IoUMeasure.value(p.x1, p.y1, p.x2, p.y2, (p.x2 - p.x1) * (p.y2 - p.y1), q.x1, q.y1, q.x2, q.y2, (q.x2 - q.x1) * (q.y2 - q.y1))
    }
}
