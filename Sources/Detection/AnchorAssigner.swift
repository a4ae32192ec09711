/// The outcome of assigning one image's anchors to its ground truth: which box each anchor learns
/// from and how well it overlaps that box. Quality-aware losses (GFL's QFL, VFNet's varifocal loss)
/// take `quality` as the soft classification target of the positives, so it travels with the indices.
public struct AnchorAssignment: Sendable, Equatable {
    /// Per anchor: a ground-truth index (a positive), `Matcher.belowLowThreshold` (a negative) or
    /// `Matcher.betweenThresholds` (left out of the classification loss: between IoU thresholds or
    /// inside an ignore region).
    public var matches: [Int]
    /// Per anchor: the IoU of the anchor with its assigned box for positives, 0 otherwise.
    public var quality: [Float]

    public init(matches: [Int], quality: [Float]) {
        precondition(matches.count == quality.count, "AnchorAssignment: \(matches.count) matches and \(quality.count) quality values")
        self.matches = matches
        self.quality = quality
    }

    /// Every anchor negative with quality 0 (an image without ground truth).
    public static func allNegative(_ anchorCount: Int) -> AnchorAssignment {
        AnchorAssignment(matches: [Int](repeating: Matcher.belowLowThreshold, count: anchorCount),
                         quality: [Float](repeating: 0, count: anchorCount))
    }
}

/// A label-assignment rule for one image: RetinaNet's fixed-IoU `Matcher` and the adaptive
/// `ATSSAssigner` both conform, so a detector's loss can take either without knowing which. The
/// anchors come per pyramid level because adaptive rules (ATSS) pick candidates level by level;
/// ignore regions (crowd, difficult) come with the target and must never become negatives.
public protocol AnchorAssigner: Sendable {
    func assign(anchors: MultiLevelAnchors, target: DetectionTarget) -> AnchorAssignment
}
