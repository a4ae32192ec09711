import Foundation

/// Anchors of every pyramid level, concatenated level by level (P3 first), in torchvision's order:
/// within a level location-major (row by row, left to right), then the level's cell anchors
/// (aspect-ratio-major, then size). A head's outputs flattened as `[H, W, A]` per level line up with it.
public struct MultiLevelAnchors: Sendable, Equatable {
    /// All anchors, `countsPerLevel.reduce(0, +)` boxes.
    public let boxes: XYXYBoxes
    /// Anchors per level: `height * width * anchorsPerLocation` of that level's feature map.
    public let countsPerLevel: [Int]

    public init(boxes: XYXYBoxes, countsPerLevel: [Int]) {
        precondition(countsPerLevel.reduce(0, +) == boxes.count,
                     "MultiLevelAnchors: level counts \(countsPerLevel) do not add up to \(boxes.count) boxes")
        self.boxes = boxes
        self.countsPerLevel = countsPerLevel
    }

    public var count: Int { boxes.count }

    /// Index range of each level's anchors in `boxes`.
    public var levelRanges: [Range<Int>] {
        var start = 0
        return countsPerLevel.map { n in defer { start += n }; return start..<(start + n) }
    }

    /// The anchors of level `l` (0 = the first feature map given).
    public func level(_ l: Int) -> XYXYBoxes {
        let r = levelRanges[l]
        return XYXYBoxes(coords: Array(boxes.coords[(4 * r.lowerBound)..<(4 * r.upperBound)]))
    }
}

/// torchvision's `AnchorGenerator` (models/detection/anchor_utils.py): per level a set of sizes and
/// aspect ratios (h / w) gives zero-centred cell anchors `round([-w, -h, w, h] / 2)` with
/// `w = size / sqrt(r)`, `h = size * sqrt(r)`, all in Float32 with round-half-to-even like
/// `torch.round`; they are shifted to every feature-map location with stride `image // grid` (integer
/// division, per axis). Values and order are identical to torchvision's.
///
/// Caching: the generator is a final class that keeps the anchors of each (feature shapes, image size)
/// it was asked for, behind a lock, so one instance can be shared by data-loader and training threads.
/// Anchors depend only on that key, never on image content.
public final class AnchorGenerator: @unchecked Sendable {
    /// Anchor sizes (square side in pixels before the aspect ratio) per level, as torchvision stores
    /// them: Float32 of the configured Double values.
    public let sizes: [[Float]]
    /// Aspect ratios (height / width) per level.
    public let aspectRatios: [[Float]]
    /// Cell anchors per level: `4 * sizes[l].count * aspectRatios[l].count` values, ratio-major.
    let cellAnchors: [[Float]]

    private let lock = NSLock()
    private var cache: [Key: MultiLevelAnchors] = [:]
    private struct Key: Hashable { let shapes: [Int]; let height: Int; let width: Int }

    /// RetinaNet's three scales per octave: 2^0, 2^(1/3), 2^(2/3) (Lin et al. 2017).
    public static let octaveScales: [Double] = [1, Foundation.pow(2.0, 1.0 / 3), Foundation.pow(2.0, 2.0 / 3)]

    /// Sizes and aspect ratios given per level. `aspectRatios` may hold one list, used for every level.
    public init(sizes: [[Double]], aspectRatios: [[Double]]) throws {
        guard !sizes.isEmpty else { throw DetectionConfigError(key: "sizes", "no pyramid levels; give one list of anchor sizes per level") }
        for (l, s) in sizes.enumerated() {
            guard !s.isEmpty else { throw DetectionConfigError(key: "sizes", "level \(l) has no anchor sizes") }
            guard s.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw DetectionConfigError(key: "sizes", "level \(l) sizes \(s) must all be positive (pixels)")
            }
        }
        let ratios: [[Double]]
        if aspectRatios.count == 1 { ratios = Array(repeating: aspectRatios[0], count: sizes.count) }
        else if aspectRatios.count == sizes.count { ratios = aspectRatios }
        else {
            throw DetectionConfigError(key: "aspect_ratios", "\(aspectRatios.count) lists for \(sizes.count) levels; give one list for all levels or one per level")
        }
        for (l, r) in ratios.enumerated() {
            guard !r.isEmpty, r.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw DetectionConfigError(key: "aspect_ratios", "level \(l) ratios \(r) must be a non-empty list of positive numbers (height / width)")
            }
        }
        self.sizes = sizes.map { $0.map(Float.init) }
        self.aspectRatios = ratios.map { $0.map(Float.init) }
        cellAnchors = zip(self.sizes, self.aspectRatios).map { AnchorGenerator.cellAnchors(sizes: $0, ratios: $1) }
    }

    /// RetinaNet layout: level l has sizes `baseSizes[l] * s` for each `s` in `scales`. With
    /// `truncateScaledSizes` each product is truncated to an integer (Python's `int(x * 2 ** (1/3))`,
    /// what torchvision's `retinanet_resnet50_fpn` does: 32, 40, 50); without it the exact products
    /// are kept (32, 40.3, 50.8), as mmdetection and detectron2 do. Products are formed in Double
    /// like Python's and rounded to Float32 once.
    public convenience init(baseSizes: [Double], scales: [Double] = AnchorGenerator.octaveScales,
                            aspectRatios: [Double] = [0.5, 1, 2], truncateScaledSizes: Bool = false) throws {
        guard !scales.isEmpty, scales.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw DetectionConfigError(key: "scales", "\(scales) must be a non-empty list of positive multipliers")
        }
        let sizes = baseSizes.map { base in scales.map { s in truncateScaledSizes ? (base * s).rounded(.towardZero) : base * s } }
        try self.init(sizes: sizes, aspectRatios: [aspectRatios])
    }

    public var levels: Int { sizes.count }

    /// Anchors per feature-map location for each level (torchvision's `num_anchors_per_location`).
    public var anchorsPerLocation: [Int] { zip(sizes, aspectRatios).map { $0.count * $1.count } }

    /// torchvision's `generate_anchors`, in its Float32 operation order.
    static func cellAnchors(sizes: [Float], ratios: [Float]) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(4 * sizes.count * ratios.count)
        for r in ratios {
            let h = r.squareRoot()
            let w = 1 / h
            for s in sizes {
                let ws = w * s, hs = h * s
                for v in [-ws, -hs, ws, hs] { out.append((v / 2).rounded(.toNearestOrEven)) }
            }
        }
        return out
    }

    /// Anchors for feature maps of the given shapes (one per level, in level order) on an image (the
    /// padded batch tensor) of `imageHeight x imageWidth`. Cached per (shapes, image size).
    public func anchors(featureShapes: [(height: Int, width: Int)], imageHeight: Int, imageWidth: Int) -> MultiLevelAnchors {
        precondition(featureShapes.count == levels,
                     "AnchorGenerator: \(featureShapes.count) feature maps for \(levels) configured levels")
        precondition(featureShapes.allSatisfy { $0.height > 0 && $0.width > 0 } && imageHeight > 0 && imageWidth > 0,
                     "AnchorGenerator: empty feature map or image (\(featureShapes), \(imageHeight)x\(imageWidth))")
        let key = Key(shapes: featureShapes.flatMap { [$0.height, $0.width] }, height: imageHeight, width: imageWidth)
        lock.lock()
        let hit = cache[key]
        lock.unlock()
        if let hit { return hit }
        let made = generate(featureShapes, imageHeight, imageWidth)
        lock.lock()
        cache[key] = made
        lock.unlock()
        return made
    }

    /// torchvision's `grid_anchors`: shifts are integer multiples of the stride, added to the Float32
    /// cell anchors.
    private func generate(_ shapes: [(height: Int, width: Int)], _ imageHeight: Int, _ imageWidth: Int) -> MultiLevelAnchors {
        var coords: [Float] = []
        var counts: [Int] = []
        for (l, shape) in shapes.enumerated() {
            let cell = cellAnchors[l]
            let a = cell.count / 4
            let strideY = imageHeight / shape.height, strideX = imageWidth / shape.width
            counts.append(shape.height * shape.width * a)
            coords.reserveCapacity(coords.count + 4 * counts[l])
            for y in 0..<shape.height {
                let sy = Float(y * strideY)
                for x in 0..<shape.width {
                    let sx = Float(x * strideX)
                    for k in 0..<a {
                        coords.append(sx + cell[4 * k]); coords.append(sy + cell[4 * k + 1])
                        coords.append(sx + cell[4 * k + 2]); coords.append(sy + cell[4 * k + 3])
                    }
                }
            }
        }
        return MultiLevelAnchors(boxes: XYXYBoxes(coords: coords), countsPerLevel: counts)
    }
}
