import Foundation
import Kernels
import Autodiff
import NN

/// Everything that shapes a RetinaNet besides its backbone: pyramid, heads, anchors, matching, losses
/// and test-time post-processing. Defaults are torchvision's RetinaNet (ALGORITHMS.md section 5) except
/// the anchor base sizes, which start at 16 px because the aircraft here are 16-64 px at 256 px input:
/// with torchvision's 32 on P3, the smallest aircraft (16 px) reach IoU 0.25 with the nearest anchor
/// and would be matched only as low-quality matches.
public struct RetinaNetConfig: Sendable, Equatable {
    public enum Regression: String, Sendable, CaseIterable { case l1, smoothL1 = "smooth_l1", giou }

    public var numClasses: Int
    public var fpnChannels = 64
    public var levels = [3, 4, 5, 6, 7]
    public var headConvs = 4
    public var groupNorm = false
    public var priorProbability: Float = 0.01
    public var anchorSizes: [Double] = [16, 32, 64, 128, 256]
    public var anchorScales: [Double] = AnchorGenerator.octaveScales
    public var anchorRatios: [Double] = [0.5, 1, 2]
    /// torchvision's RetinaNet truncates `size * scale` to integers (`int(x * 2 ** (1/3))`).
    public var integerSizes = true
    public var fgIoU: Float = 0.5, bgIoU: Float = 0.4
    public var lowQualityMatches = true
    public var ignoreIoF: Float = 0.5
    public var focalAlpha: Float = 0.25, focalGamma: Float = 2
    public var regression = Regression.l1
    public var smoothL1Beta: Float = 1.0 / 9
    public var boxWeights: [Float] = [1, 1, 1, 1]
    public var regressionWeight: Float = 1
    public var scoreThreshold: Float = 0.05
    public var topkCandidates = 1000
    public var nmsIoU: Double = 0.5
    public var maxDetections = 100

    public init(numClasses: Int) { self.numClasses = numClasses }

    /// The settings a model cannot be built from (shared by every detector on this config).
    func validate() throws {
        guard numClasses >= 1 else { throw DetectionConfigError(key: "num_classes", "must be at least 1, got \(numClasses)") }
        guard anchorSizes.count == levels.count else {
            throw DetectionConfigError(key: "anchors.sizes", "\(anchorSizes.count) base sizes for \(levels.count) pyramid levels \(levels); give one per level")
        }
        guard priorProbability > 0 && priorProbability < 1 else {
            throw DetectionConfigError(key: "head.prior_prob", "\(priorProbability) must be in (0, 1)")
        }
    }
}

/// Ground truth of one image for the loss, in the input tensor's pixel coordinates.
public struct DetectionTarget: Sendable, Equatable {
    public var boxes: XYXYBoxes
    /// Class index per box, `0..<numClasses`.
    public var labels: [Int]
    /// Crowd / ignore / difficult regions: anchors inside them are neither positive nor negative.
    public var ignoreRegions: XYXYBoxes

    public init(boxes: XYXYBoxes, labels: [Int], ignoreRegions: XYXYBoxes = XYXYBoxes()) {
        precondition(boxes.count == labels.count, "DetectionTarget: \(boxes.count) boxes and \(labels.count) labels")
        self.boxes = boxes; self.labels = labels; self.ignoreRegions = ignoreRegions
    }
}

/// RetinaNet (Lin et al. 2017) as torchvision composes it: backbone C3-C5 -> FPN -> shared
/// classification and regression heads over every level; anchors matched by IoU; sigmoid focal loss
/// summed over non-ignored anchors and L1 (or smooth-L1 / GIoU) over foreground anchors, each divided by
/// the image's foreground count and averaged over the batch (torchvision's `compute_loss`).
public final class RetinaNet: Module, Detector {
    public static let topLevelModules = ["backbone", "fpn", "classificationHead", "regressionHead"]
    public let backbone: any Backbone
    public let fpn: FPN
    public let classificationHead: RetinaHeadBranch
    public let regressionHead: RetinaHeadBranch
    public let config: RetinaNetConfig
    let anchorGenerator: AnchorGenerator
    let matcher: Matcher
    let boxCoder: BoxCoder
    let postprocessor: RetinaNetPostprocess

    /// Throws `DetectionConfigError` / `ShapeError` for settings that cannot build a model.
    public init(backbone: any Backbone, config c: RetinaNetConfig, rng: inout RNG) throws {
        try c.validate()
        self.backbone = backbone
        self.config = c
        fpn = try FPN(inChannels: backbone.featureChannels, channels: c.fpnChannels, levels: c.levels, rng: &rng)
        anchorGenerator = try AnchorGenerator(baseSizes: c.anchorSizes, scales: c.anchorScales, aspectRatios: c.anchorRatios,
                                              truncateScaledSizes: c.integerSizes)
        let a = anchorGenerator.anchorsPerLocation[0]
        classificationHead = try RetinaHeadBranch(channels: c.fpnChannels, anchorsPerLocation: a, outputsPerAnchor: c.numClasses,
                                                  convs: c.headConvs, groupNorm: c.groupNorm, priorProbability: c.priorProbability, rng: &rng)
        regressionHead = try RetinaHeadBranch(channels: c.fpnChannels, anchorsPerLocation: a, outputsPerAnchor: 4,
                                              convs: c.headConvs, groupNorm: c.groupNorm, priorProbability: nil, rng: &rng)
        matcher = try Matcher(highThreshold: c.fgIoU, lowThreshold: c.bgIoU, allowLowQualityMatches: c.lowQualityMatches, ignoreIoF: c.ignoreIoF)
        boxCoder = try BoxCoder(weights: c.boxWeights)
        postprocessor = try RetinaNetPostprocess(scoreThreshold: c.scoreThreshold, topkCandidates: c.topkCandidates,
                                                 nmsThreshold: c.nmsIoU, detectionsPerImage: c.maxDetections, boxCoder: boxCoder)
        super.init()
    }

    /// Class logits `[N, A, numClasses]`, box regression `[N, A, 4]` and the anchors they refer to.
    public func headOutputs(_ images: Tensor) -> (logits: Tensor, regression: Tensor, anchors: MultiLevelAnchors) {
        precondition(images.rank == 4, "RetinaNet: images must be [N, 3, H, W], got \(images.shape)")
        let levels = fpn.pyramid(backbone.featureMaps(images))
        let anchors = anchorGenerator.anchors(featureShapes: levels.map { (height: $0.shape[2], width: $0.shape[3]) },
                                              imageHeight: images.shape[2], imageWidth: images.shape[3])
        return (classificationHead.predict(levels), regressionHead.predict(levels), anchors)
    }

    /// `[N, A, numClasses + 4]`: every layer runs (quantizer calibration and summaries use this).
    public override func forward(_ x: Tensor) -> Tensor {
        let h = headOutputs(x)
        return Tensor.concat([h.logits, h.regression], axis: 2)
    }

    /// The training losses of a batch: `classification` (focal) and `bbox_regression`.
    public func losses(images: Tensor, targets: [DetectionTarget]) -> [String: Tensor] {
        precondition(targets.count == images.shape[0], "RetinaNet.losses: \(targets.count) targets for a batch of \(images.shape[0])")
        let (logits, regression, anchors) = headOutputs(images)
        return losses(logits: logits, regression: regression, anchors: anchors, targets: targets)
    }

    /// The losses from head outputs (separate so tests and the thesis' heads can reuse the assignment).
    public func losses(logits: Tensor, regression: Tensor, anchors: MultiLevelAnchors, targets: [DetectionTarget]) -> [String: Tensor] {
        let n = targets.count, a = anchors.count, k = config.numClasses
        precondition(logits.shape == [n, a, k] && regression.shape == [n, a, 4], "RetinaNet.losses: head outputs \(logits.shape), \(regression.shape) for \(n) images, \(a) anchors, \(k) classes")
        for t in targets {
            precondition(t.labels.allSatisfy { $0 >= 0 && $0 < k }, "RetinaNet.losses: a label outside 0..<\(k)")
        }
        let matches = targets.map { matcher.match(anchors: anchors.boxes, gtBoxes: $0.boxes, ignoreRegions: $0.ignoreRegions) }
        let t = AnchorTargets(matches: matches, anchors: anchors, targets: targets)
        let classTargets = Tensor.zeros([n, a, k])
        for (r, (i, g)) in zip(t.rows, zip(t.image, t.gt)) { classTargets.pointer[r * k + targets[i].labels[g]] = 1 }
        let focal = sigmoidFocalLoss(logits, targets: classTargets, alpha: config.focalAlpha, gamma: config.focalGamma)
        let classification = (focal * Tensor(shape: [n, a, 1], scalars: t.anchorWeights)).sum()
        let boxLoss = t.regressionLoss(regression, kind: config.regression, boxCoder: boxCoder, smoothL1Beta: config.smoothL1Beta,
                                       weight: config.regressionWeight)
        return ["classification": classification, "bbox_regression": boxLoss]
    }

    /// Detections per image (boxes in input pixels, clipped to `imageSizes` or the input size), outside the tape.
    public func detect(_ images: Tensor, imageSizes: [(height: Int, width: Int)]?) -> [Detections] {
        let sizes = imageSizes ?? Array(repeating: (height: images.shape[2], width: images.shape[3]), count: images.shape[0])
        return noGrad {
            let h = headOutputs(images)
            return postprocessor.detections(classLogits: h.logits, boxRegression: h.regression, anchors: h.anchors, imageSizes: sizes)
        }
    }
}
