/// RetinaNet's IoU matcher as an `AnchorAssigner`: the matches are exactly
/// `match(anchors:gtBoxes:ignoreRegions:)` (same IoU matrix, same matching, same ignore rule), and the
/// quality of a positive is the entry of that IoU matrix it was matched on, so nothing is computed twice.
/// A low-quality match keeps its (possibly small) IoU as quality; a NaN overlap that torch's max rule
/// lets win an anchor (see `Matcher`) carries NaN.
extension Matcher: AnchorAssigner {
    public func assign(anchors: MultiLevelAnchors, target: DetectionTarget) -> AnchorAssignment {
        let boxes = anchors.boxes, gt = target.boxes, n = boxes.count
        var result = AnchorAssignment.allNegative(n)
        if !gt.isEmpty && n > 0 {
            let iou = boxIoU(gt, boxes)
            result.matches = match(quality: iou, gtCount: gt.count, anchorCount: n)
            iou.withUnsafeBufferPointer { qb in
                result.matches.withUnsafeBufferPointer { mb in
                    result.quality.withUnsafeMutableBufferPointer { ob in
                        for j in 0..<n where mb[j] >= 0 { ob[j] = qb[mb[j] * n + j] }
                    }
                }
            }
        }
        applyIgnoreRegions(&result.matches, anchors: boxes, regions: target.ignoreRegions)
        return result
    }
}
