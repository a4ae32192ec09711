import Foundation
import Kernels
import Autodiff

/// RoIAlign over an FPN: each box is pooled from the level `RoILevelMapper` assigns it, at that level's
/// scale; torchvision's `MultiScaleRoIAlign` (`torchvision/ops/poolers.py`), the pooler of Faster and
/// Mask R-CNN and of the detector's fine-grained module here.
///
/// As in torchvision:
/// - level scales are inferred from the feature map heights and the input height,
///   `2^round(log2(featureHeight / imageHeight))`, and the mapper's range is `[-log2(first scale),
///   -log2(last scale)]`;
/// - one level means every box is pooled from it, without the mapper;
/// - torchvision calls `roi_align` with its default `aligned = false`; that is the default here too,
///   and `aligned: true` gives the half-pixel-corrected sampling of Detectron2.
///
/// Unlike torchvision, scales are inferred on every call instead of being frozen by the first one,
/// and levels that are not consecutive pyramid levels (torchvision silently pools boxes of a missing
/// level as zeros) are an error.
public struct MultiScaleRoIAlign: Sendable {
    public let outputSize: (height: Int, width: Int)
    public let samplingRatio: Int
    public let canonicalScale: Float
    public let canonicalLevel: Int
    public let aligned: Bool

    /// - Parameters:
    ///   - samplingRatio: samples per bin side; `<= 0` is adaptive (ceil(RoI size / output size)).
    ///   - canonicalScale, canonicalLevel: the box size (pixels) pooled from `canonicalLevel`
    ///     (torchvision 224 and 4; see `RoILevelMapper`).
    /// - Throws: `DetectionConfigError` for an output size below 1x1 or a canonical scale that is not a
    ///   positive size.
    public init(outputSize: (height: Int, width: Int), samplingRatio: Int, canonicalScale: Float = 224,
                canonicalLevel: Int = 4, aligned: Bool = false) throws {
        guard outputSize.height >= 1 && outputSize.width >= 1 else {
            throw DetectionConfigError(key: "output_size", "\(outputSize.height)x\(outputSize.width) must be at least 1x1 (torchvision's Faster R-CNN uses 7x7)")
        }
        _ = try RoILevelMapper(kMin: 0, kMax: 0, canonicalScale: canonicalScale, canonicalLevel: canonicalLevel)
        self.outputSize = outputSize; self.samplingRatio = samplingRatio
        self.canonicalScale = canonicalScale; self.canonicalLevel = canonicalLevel; self.aligned = aligned
    }

    /// torchvision's `_infer_scale`: the power of two nearest (in log2, Float32, ties to even) to the
    /// ratio of a feature map side to the input side.
    public static func inferScale(featureSide: Int, imageSide: Int) -> Float {
        let ratio = Float(Double(featureSide) / Double(imageSide))
        return Float(pow(2.0, Double(log2(ratio).rounded(.toNearestOrEven))))
    }

    /// The scale of each level and the mapper for them, from the feature maps' heights and the input
    /// height (torchvision uses the first side only).
    /// - Throws: `DetectionConfigError` for no levels, an empty input, or levels that are not
    ///   consecutive (each scale half the previous one).
    public func levels(featureHeights: [Int], imageHeight: Int) throws -> (scales: [Float], mapper: RoILevelMapper) {
        guard !featureHeights.isEmpty else { throw DetectionConfigError(key: "levels", "no feature maps to pool from; pass one per pyramid level, finest first") }
        guard imageHeight >= 1, featureHeights.allSatisfy({ $0 >= 1 }) else {
            throw DetectionConfigError(key: "image_size", "input height \(imageHeight) and feature heights \(featureHeights) must all be at least 1")
        }
        let scales = featureHeights.map { Self.inferScale(featureSide: $0, imageSide: imageHeight) }
        for l in 1..<scales.count where scales[l] != scales[l - 1] / 2 {
            throw DetectionConfigError(key: "levels", "feature heights \(featureHeights) on a \(imageHeight)-pixel input give scales \(scales); pooled levels must be consecutive pyramid levels, finest first, each half the size of the previous")
        }
        // torchvision: int(-log2(scale)) of the first and last level, truncated toward zero.
        let kMin = Int(-log2(scales[0])), kMax = Int(-log2(scales[scales.count - 1]))
        let mapper = try RoILevelMapper(kMin: kMin, kMax: kMax, canonicalScale: canonicalScale, canonicalLevel: canonicalLevel)
        return (scales, mapper)
    }

    /// Pools every box of every image: `features` are the levels' `[N, C, H_l, W_l]` maps, finest first,
    /// with N images and the same C; `boxes[i]` are image i's boxes in input pixels; `imageSize` is the
    /// input the features were computed from (torchvision takes the largest height and width of its
    /// `image_shapes`; for a letterboxed batch that is the batch's input size). Returns
    /// `[R, C, outputSize]`, R the total box count, rows in the order of the concatenated boxes.
    /// Differentiable with respect to the feature maps.
    /// - Throws: `DetectionConfigError` from `levels(featureHeights:imageHeight:)`.
    public func callAsFunction(_ features: [Tensor], boxes: [XYXYBoxes], imageSize: (height: Int, width: Int)) throws -> Tensor {
        guard let first = features.first else { throw DetectionConfigError(key: "levels", "no feature maps to pool from; pass one per pyramid level, finest first") }
        for f in features {
            precondition(f.rank == 4 && first.rank == 4 && f.shape[0] == first.shape[0] && f.shape[1] == first.shape[1],
                         "MultiScaleRoIAlign: level shapes \(features.map(\.shape)) must all be [N, C, H, W] with the same N and C")
        }
        let n = first.shape[0], c = first.shape[1]
        let (scales, mapper) = try levels(featureHeights: features.map { $0.shape[2] }, imageHeight: imageSize.height)
        precondition(boxes.count == n, "MultiScaleRoIAlign: \(boxes.count) box lists for \(n) images")
        let total = boxes.reduce(0) { $0 + $1.count }
        let outShape = [total, c, outputSize.height, outputSize.width]
        if total == 0 { return Tensor.zeros(outShape) }

        var rois = [Float](), levelOf = [Int]()
        rois.reserveCapacity(5 * total); levelOf.reserveCapacity(total)
        for (i, b) in boxes.enumerated() {
            for k in 0..<b.count { rois.append(Float(i)); rois += b.coords[(4 * k)..<(4 * k + 4)] }
            levelOf += features.count == 1 ? [Int](repeating: 0, count: b.count) : mapper.levelIndices(b)
        }
        func pool(_ level: Int, _ r: [Float]) -> Tensor {
            features[level].roiAlign(rois: r, outputSize: outputSize, spatialScale: scales[level],
                                     samplingRatio: samplingRatio, aligned: aligned)
        }
        if features.count == 1 { return pool(0, rois) }

        // Pool each level's boxes in their original order, stack the levels' results (boxes with no
        // level as zero rows, as torchvision leaves them), then put every row back where its box was.
        var pieces: [Tensor] = [], order: [Int] = []
        order.reserveCapacity(total)
        for level in [RoILevelMapper.noLevel] + Array(features.indices) {
            let members = levelOf.indices.filter { levelOf[$0] == level }
            if members.isEmpty { continue }
            order += members
            if level == RoILevelMapper.noLevel {
                pieces.append(Tensor.zeros([members.count, c, outputSize.height, outputSize.width]))
            } else {
                var r = [Float](); r.reserveCapacity(5 * members.count)
                for m in members { r += rois[(5 * m)..<(5 * m + 5)] }
                pieces.append(pool(level, r))
            }
        }
        precondition(order.count == total, "MultiScaleRoIAlign: level indices \(Set(levelOf)) outside the \(features.count) levels")
        let stacked = pieces.count == 1 ? pieces[0] : Tensor.concat(pieces, axis: 0)
        var position = [Int](repeating: 0, count: total)
        for (p, box) in order.enumerated() { position[box] = p }
        return position == Array(0..<total) ? stacked : stacked.indexSelect(axis: 0, indices: position)
    }
}
