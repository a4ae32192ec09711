import Detection
import Evaluation

/// The class-agnostic view of a multi-class detector's output, for "does it find the objects at all,
/// whatever their type". A RetinaNet scores every class at every anchor, so one aircraft typically
/// leaves several detections of the same box with different types. pycocotools' `useCats = 0` pools
/// them and counts all but the first as false positives, so without a merge the class-agnostic AP
/// measures type confusion again instead of finding. The merge keeps, per image, the detections that
/// survive class-agnostic NMS (torchvision's `ops.nms` over all classes) at `iouThreshold`: each
/// object's best-scoring box, whatever its type. `qat eval` uses the recipe's `detector.test.nms_iou`;
/// `qat detect score --class-agnostic --merge-iou X` does the same to any results file.
public enum ClassAgnosticMerge {
    /// Per image (in order of first appearance), the kept detections by descending score.
    public static func merge(_ results: [DetectionResult], iouThreshold: Double) -> [DetectionResult] {
        var order: [Int] = [], byImage: [Int: [DetectionResult]] = [:]
        for r in results {
            if byImage[r.imageId] == nil { order.append(r.imageId) }
            byImage[r.imageId, default: []].append(r)
        }
        var out: [DetectionResult] = []
        out.reserveCapacity(results.count)
        for id in order {
            let dets = byImage[id]!
            let boxes = XYXYBoxes(xywh: dets.map { [$0.box.x, $0.box.y, $0.box.width, $0.box.height] })
            for i in nms(boxes, scores: dets.map { Float($0.score) }, iouThreshold: iouThreshold) { out.append(dets[i]) }
        }
        return out
    }
}
