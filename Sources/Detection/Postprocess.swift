import Foundation
import Autodiff

/// Detections of one image, by descending score.
public struct Detections: Sendable, Equatable {
    public var boxes: XYXYBoxes
    public var scores: [Float]
    /// Class index per box, `0..<numClasses` (the column of the classification output).
    public var labels: [Int]

    public init(boxes: XYXYBoxes = XYXYBoxes(), scores: [Float] = [], labels: [Int] = []) {
        precondition(boxes.count == scores.count && scores.count == labels.count,
                     "Detections: \(boxes.count) boxes, \(scores.count) scores, \(labels.count) labels")
        self.boxes = boxes; self.scores = scores; self.labels = labels
    }

    public var count: Int { scores.count }
}

/// RetinaNet's test-time post-processing, torchvision's `RetinaNet.postprocess_detections`, on plain
/// arrays outside the tape. Per level: sigmoid scores over `[anchors x classes]`, keep scores above
/// `scoreThreshold`, the `topkCandidates` best of those, decode them against their anchors and clip to
/// the image; then class-wise NMS over all levels and the `detectionsPerImage` best.
///
/// Equal scores are ranked by ascending flat index (anchor-major, then class) in the top-k, and by
/// ascending candidate position after NMS. torchvision's `topk` and its final sort do not define an
/// order among exactly equal scores; everything else is reproduced exactly (see NMS.swift).
public struct RetinaNetPostprocess: Sendable, Equatable {
    public let scoreThreshold: Float
    public let topkCandidates: Int
    public let nmsThreshold: Double
    public let detectionsPerImage: Int
    public let boxCoder: BoxCoder

    /// torchvision's RetinaNet defaults: 0.05, 1000 per level, NMS 0.5, 300 detections in torchvision's
    /// constructor but 100 here (COCO's maxDets; ALGORITHMS.md section 5 allows 100-300).
    public init(scoreThreshold: Float = 0.05, topkCandidates: Int = 1000, nmsThreshold: Double = 0.5,
                detectionsPerImage: Int = 100, boxCoder: BoxCoder? = nil) throws {
        guard scoreThreshold >= 0 && scoreThreshold < 1 else {
            throw DetectionConfigError(key: "score_threshold", "\(scoreThreshold) must be in [0, 1): detections need scores above it")
        }
        guard topkCandidates >= 1 else { throw DetectionConfigError(key: "topk_candidates", "\(topkCandidates) must be at least 1") }
        guard nmsThreshold >= 0 && nmsThreshold <= 1 else {
            throw DetectionConfigError(key: "nms_threshold", "\(nmsThreshold) must be an IoU in [0, 1]")
        }
        guard detectionsPerImage >= 1 else { throw DetectionConfigError(key: "detections_per_image", "\(detectionsPerImage) must be at least 1") }
        self.scoreThreshold = scoreThreshold
        self.topkCandidates = topkCandidates
        self.nmsThreshold = nmsThreshold
        self.detectionsPerImage = detectionsPerImage
        self.boxCoder = try boxCoder ?? BoxCoder()
    }

    /// One image. `classLogits` is `[anchors.count x numClasses]` row-major and `boxRegression`
    /// `[anchors.count x 4]`, both in the anchors' order (level by level, location-major, then cell
    /// anchor: a head's `[H, W, A, C]` outputs flattened and concatenated over levels). The image size
    /// is the one boxes are clipped to (the resized image before batch padding, as in torchvision).
    public func detections(classLogits: UnsafeBufferPointer<Float>, boxRegression: UnsafeBufferPointer<Float>,
                           numClasses: Int, anchors: MultiLevelAnchors, imageHeight: Int, imageWidth: Int) -> Detections {
        let c = numClasses
        precondition(c >= 1 && classLogits.count == anchors.count * c,
                     "RetinaNetPostprocess: \(classLogits.count) logits for \(anchors.count) anchors x \(numClasses) classes")
        precondition(boxRegression.count == anchors.count * 4,
                     "RetinaNetPostprocess: \(boxRegression.count) regression values for \(anchors.count) anchors")
        var boxes: [Float] = [], scores: [Float] = [], labels: [Int] = []
        var levelScores: [Float] = [], levelFlat: [Int] = []
        // Logits below logit(threshold) - 0.01 cannot score above the threshold (sigmoid is monotone and
        // the margin is far above its rounding): most logits skip the exp. The others are scored exactly.
        let t = Double(scoreThreshold)
        let cut: Float = t > 0 && t < 1 ? Float(Foundation.log(t / (1 - t))) - 0.01 : -.infinity
        for range in anchors.levelRanges {
            // Scores above the threshold, as 1 / (1 + exp(-x)) like torch's CPU sigmoid.
            levelScores.removeAll(keepingCapacity: true)
            levelFlat.removeAll(keepingCapacity: true)
            let base = range.lowerBound * c
            for f in 0..<(range.count * c) {
                let x = classLogits[base + f]
                if x < cut { continue }
                let s = 1 / (1 + Foundation.exp(-x))
                if s > scoreThreshold { levelScores.append(s); levelFlat.append(f) }
            }
            let order = sortedByScore(levelScores, indices: Array(levelScores.indices))
            let k = min(topkCandidates, order.count)
            var codes = [Float](repeating: 0, count: 4 * k), picked = [Float](repeating: 0, count: 4 * k)
            for r in 0..<k {
                let cand = Int(order[r])
                let f = levelFlat[cand]
                let anchor = range.lowerBound + f / c
                for q in 0..<4 {
                    codes[4 * r + q] = boxRegression[4 * anchor + q]
                    picked[4 * r + q] = anchors.boxes.coords[4 * anchor + q]
                }
                scores.append(levelScores[cand])
                labels.append(f % c)
            }
            let decoded = boxCoder.decode(codes, anchors: XYXYBoxes(coords: picked))
            boxes += decoded.clipped(width: Float(imageWidth), height: Float(imageHeight)).coords
        }
        let all = XYXYBoxes(coords: boxes)
        let keep = Array(batchedNMS(all, scores: scores, classes: labels, iouThreshold: nmsThreshold).prefix(detectionsPerImage))
        return Detections(boxes: all.selecting(keep), scores: keep.map { scores[$0] }, labels: keep.map { labels[$0] })
    }

    /// `detections` for plain arrays.
    public func detections(classLogits: [Float], boxRegression: [Float], numClasses: Int, anchors: MultiLevelAnchors,
                           imageHeight: Int, imageWidth: Int) -> Detections {
        classLogits.withUnsafeBufferPointer { l in
            boxRegression.withUnsafeBufferPointer { r in
                detections(classLogits: l, boxRegression: r, numClasses: numClasses, anchors: anchors,
                           imageHeight: imageHeight, imageWidth: imageWidth)
            }
        }
    }

    /// A batch: `classLogits` `[B, anchors.count, numClasses]`, `boxRegression` `[B, anchors.count, 4]`
    /// (values only; nothing is recorded on the tape), one image size per image.
    public func detections(classLogits: Tensor, boxRegression: Tensor, anchors: MultiLevelAnchors,
                           imageSizes: [(height: Int, width: Int)]) -> [Detections] {
        precondition(classLogits.rank == 3 && classLogits.shape[1] == anchors.count,
                     "RetinaNetPostprocess: class logits of shape \(classLogits.shape) for \(anchors.count) anchors (need [B, \(anchors.count), C])")
        let b = classLogits.shape[0], c = classLogits.shape[2]
        precondition(boxRegression.shape == [b, anchors.count, 4],
                     "RetinaNetPostprocess: box regression of shape \(boxRegression.shape), need [\(b), \(anchors.count), 4]")
        precondition(imageSizes.count == b, "RetinaNetPostprocess: \(imageSizes.count) image sizes for a batch of \(b)")
        let perLogits = anchors.count * c, perBoxes = anchors.count * 4
        return (0..<b).map { i in
            detections(classLogits: UnsafeBufferPointer(start: classLogits.pointer + i * perLogits, count: perLogits),
                       boxRegression: UnsafeBufferPointer(start: boxRegression.pointer + i * perBoxes, count: perBoxes),
                       numClasses: c, anchors: anchors, imageHeight: imageSizes[i].height, imageWidth: imageSizes[i].width)
        }
    }
}
