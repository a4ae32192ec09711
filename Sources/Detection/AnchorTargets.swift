import Autodiff

/// The foreground anchors of a batch and the weights of torchvision's RetinaNet normalisation (each
/// image's losses summed over its anchors and divided by max(1, its foreground count), then averaged
/// over the batch), built once from the assignment and shared by every anchor loss of a detector.
struct AnchorTargets {
    let images: Int, anchorsPerImage: Int
    /// Per anchor of the batch (`image * A + anchor`): the image's normalising weight where the anchor
    /// counts (foreground or background), 0 where it is ignored.
    var anchorWeights: [Float]
    /// Per anchor: the ground-truth index (>= 0) or a `Matcher` sentinel.
    var matches: [[Int]]
    /// Foreground anchors, batch-flat rows `image * A + anchor`, with their box and anchor coordinates.
    var rows: [Int] = []
    var boxes: [Float] = [], anchorBoxes: [Float] = []
    /// Per foreground anchor: its image and ground-truth index, and its image's normalising weight.
    var image: [Int] = [], gt: [Int] = [], rowWeights: [Float] = []

    init(matches: [[Int]], anchors: MultiLevelAnchors, targets: [DetectionTarget]) {
        let n = targets.count, a = anchors.count
        images = n; anchorsPerImage = a
        self.matches = matches
        anchorWeights = [Float](repeating: 0, count: n * a)
        for (i, m) in matches.enumerated() {
            let foreground = m.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
            let w = 1 / (Float(max(1, foreground)) * Float(n))
            for j in 0..<a {
                let g = m[j]
                if g != Matcher.betweenThresholds { anchorWeights[i * a + j] = w }
                guard g >= 0 else { continue }
                rows.append(i * a + j)
                boxes += targets[i].boxes.coords[(4 * g)..<(4 * g + 4)]
                anchorBoxes += anchors.boxes.coords[(4 * j)..<(4 * j + 4)]
                image.append(i); gt.append(g); rowWeights.append(w)
            }
        }
    }

    var foregroundCount: Int { rows.count }

    /// Box regression loss over the foreground anchors (`regression` `[N, A, 4]`): L1 or smooth-L1 on
    /// the encoded deltas, or GIoU on the decoded boxes (torchvision's RetinaNet `compute_loss`).
    func regressionLoss(_ regression: Tensor, kind: RetinaNetConfig.Regression, boxCoder: BoxCoder, smoothL1Beta: Float,
                        weight: Float) -> Tensor {
        guard !rows.isEmpty else { return (regression * 0).sum() }
        let f = rows.count
        let pred = regression.reshaped([images * anchorsPerImage, 4]).indexSelect(axis: 0, indices: rows)
        let weights = Tensor(shape: [f, 1], scalars: rowWeights.map { $0 * weight })
        let gtBoxes = XYXYBoxes(coords: boxes), anchors = XYXYBoxes(coords: anchorBoxes)
        switch kind {
        case .l1:
            let target = Tensor(shape: [f, 4], scalars: boxCoder.encode(gtBoxes, anchors: anchors))
            return ((pred - target).abs() * weights).sum()
        case .smoothL1:
            let target = Tensor(shape: [f, 4], scalars: boxCoder.encode(gtBoxes, anchors: anchors))
            return (Loss.smoothL1(pred, target, beta: smoothL1Beta, reduction: .none) * weights).sum()
        case .giou:
            let decoded = boxCoder.decode(pred, anchors: anchors)
            let giou = generalizedIoULoss(decoded, Tensor(shape: [f, 4], scalars: boxes))
            return (giou * weights.reshaped([f])).sum()
        }
    }
}
