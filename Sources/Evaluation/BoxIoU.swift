/// The two IoU formulas of the two references, each written with its reference's operations in its
/// order: an IoU of exactly 0.5 must come out as exactly 0.5 in both, since COCO matches at `>=` and
/// VOC at `>`.
public enum BoxIoU {
    /// pycocotools' `maskUtils.iou` for boxes (`bbIou` in maskApi.c): against a crowd ground truth the
    /// union is the detection's area alone (the fraction of the detection inside the crowd region).
    @inline(__always)
    public static func coco(_ d: COCOBox, _ g: COCOBox, crowd: Bool) -> Double {
        let w = Swift.min(d.width + d.x, g.width + g.x) - Swift.max(d.x, g.x)
        if w <= 0 { return 0 }
        let h = Swift.min(d.height + d.y, g.height + g.y) - Swift.max(d.y, g.y)
        if h <= 0 { return 0 }
        let i = w * h
        let da = d.width * d.height
        let u = crowd ? da : da + g.width * g.height - i
        return i / u
    }

    /// The VOC devkit's overlap without its +1 pixel (continuous corners, as mmdet's `bbox_overlaps`
    /// with `use_legacy_coordinate=False`): corners are `x + w`, areas `(x2 - x1) * (y2 - y1)`, the
    /// union is floored at machine epsilon (mmdet's `eps`) so two empty boxes give 0, not NaN.
    @inline(__always)
    public static func voc(_ d: COCOBox, _ g: COCOBox) -> Double {
        let dx2 = d.x + d.width, dy2 = d.y + d.height, gx2 = g.x + g.width, gy2 = g.y + g.height
        let iw = Swift.max(Swift.min(gx2, dx2) - Swift.max(g.x, d.x), 0)
        let ih = Swift.max(Swift.min(gy2, dy2) - Swift.max(g.y, d.y), 0)
        let inter = iw * ih
        let union = (dx2 - d.x) * (dy2 - d.y) + (gx2 - g.x) * (gy2 - g.y) - inter
        return inter / Swift.max(union, Double.ulpOfOne)
    }
}
