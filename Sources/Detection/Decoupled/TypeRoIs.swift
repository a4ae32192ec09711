/// The boxes the fine-grained module learns types on, per image: every ground-truth box, then the
/// predicted boxes of up to `perBox` of its foreground anchors (best localised first; ties: lower
/// anchor), so the module also sees the imperfect boxes it will classify at test time (the jittered
/// positives of a two-stage detector's box head, taken from the detector's own predictions).
struct TypeRoIs {
    var boxes: [XYXYBoxes]
    /// Type label (the given, possibly wrong one) per RoI, in image order.
    var labels: [Int] = []
    /// Per RoI: which ground-truth box it belongs to, numbered over the batch (image order).
    var owner: [Int] = []

    var count: Int { labels.count }

    init(targets: [DetectionTarget], anchorTargets t: AnchorTargets, predicted: XYXYBoxes, quality: [Float], perBox: Int) {
        var byOwner: [[Int: [Int]]] = targets.map { _ in [:] }
        for r in 0..<t.foregroundCount { byOwner[t.image[r]][t.gt[r], default: []].append(r) }
        boxes = []
        var base = 0
        for (i, target) in targets.enumerated() {
            var coords: [Float] = []
            for g in 0..<target.boxes.count {
                coords += target.boxes.coords[(4 * g)..<(4 * g + 4)]
                labels.append(target.labels[g]); owner.append(base + g)
            }
            if perBox > 0 {
                for g in 0..<target.boxes.count {
                    let rows = (byOwner[i][g] ?? []).sorted { quality[$0] != quality[$1] ? quality[$0] > quality[$1] : $0 < $1 }
                    for r in rows.prefix(perBox) where quality[r] > 0 {
                        coords += predicted.coords[(4 * r)..<(4 * r + 4)]
                        labels.append(target.labels[g]); owner.append(base + g)
                    }
                }
            }
            boxes.append(XYXYBoxes(coords: coords))
            base += target.boxes.count
        }
    }
}
