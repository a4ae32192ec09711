import Autodiff
import NN

/// A detector whose detections follow from its dense outputs (`forward`'s [N, anchors, classes + 4]) and
/// the input size alone: another engine (the int8 engine, an ONNX runtime) computes the dense part and
/// hands it back for anchors, decoding and NMS (torchvision's `postprocess_detections`).
public protocol DenseDetector: Detector {
    /// Detections per image from `dense` ([N, anchors, classes + 4], as `forward` returns it) for inputs of
    /// `imageHeight` x `imageWidth` pixels, clipped to `imageSizes` (nil: the input size).
    func detections(dense: Tensor, imageHeight: Int, imageWidth: Int, imageSizes: [(height: Int, width: Int)]?) -> [Detections]
}

extension RetinaNet: DenseDetector {
    /// Level sizes from the input: C3-C5 at strides 8, 16, 32 (inputs are multiples of 32), P6 and P7 by
    /// the FPN's stride-2 3x3 convs (padding 1: ceil(side / 2)).
    public func levelShapes(imageHeight: Int, imageWidth: Int) -> [(height: Int, width: Int)] {
        var shapes: [(height: Int, width: Int)] = [8, 16, 32].map { (imageHeight / $0, imageWidth / $0) }
        for _ in fpn.levels.dropFirst(3) {
            let last = shapes[shapes.count - 1]
            shapes.append(((last.height + 1) / 2, (last.width + 1) / 2))
        }
        return shapes
    }

    public func detections(dense: Tensor, imageHeight: Int, imageWidth: Int, imageSizes: [(height: Int, width: Int)]?) -> [Detections] {
        let anchors = anchorGenerator.anchors(featureShapes: levelShapes(imageHeight: imageHeight, imageWidth: imageWidth),
                                              imageHeight: imageHeight, imageWidth: imageWidth)
        let k = config.numClasses
        precondition(dense.rank == 3 && dense.shape[1] == anchors.count && dense.shape[2] == k + 4,
                     "RetinaNet: dense outputs \(dense.shape) for \(anchors.count) anchors x \(k + 4) values")
        let n = dense.shape[0]
        let sizes = imageSizes ?? Array(repeating: (height: imageHeight, width: imageWidth), count: n)
        let logits = Tensor.zeros([n, anchors.count, k]), boxes = Tensor.zeros([n, anchors.count, 4])
        let d = dense.pointer
        for r in 0..<(n * anchors.count) {
            for j in 0..<k { logits.pointer[r * k + j] = d[r * (k + 4) + j] }
            for j in 0..<4 { boxes.pointer[r * 4 + j] = d[r * (k + 4) + k + j] }
        }
        return postprocessor.detections(classLogits: logits, boxRegression: boxes, anchors: anchors, imageSizes: sizes)
    }
}
