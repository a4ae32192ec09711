import Autodiff
import NN

/// What training, evaluation and prediction need of a detector, whatever its heads (torchvision's
/// detection models' contract: a loss dictionary in training, detections in evaluation). The run loop
/// sums the losses and logs them by name; nothing outside Detection names a detector type.
public protocol Detector: Module {
    /// Training losses of a batch by name (`[N, 3, H, W]` images, one target per image).
    func losses(images: Tensor, targets: [DetectionTarget]) -> [String: Tensor]
    /// Detections per image in input pixels, clipped to `imageSizes` (nil: the input size); outside the tape.
    func detect(_ images: Tensor, imageSizes: [(height: Int, width: Int)]?) -> [Detections]
    /// Top-level module names of the detector (a checkpoint path starting with one of them belongs to
    /// a detector; any other path is taken as a backbone's).
    static var topLevelModules: [String] { get }
}

extension Detector {
    public func detect(_ images: Tensor) -> [Detections] { detect(images, imageSizes: nil) }
}

/// A detector that can say which type it sees in given boxes: the thesis' fine-grained module. Used
/// to flag training labels the model disagrees with (noisy-label audit), never in training.
public protocol TypeClassifier: Detector {
    /// Type probabilities `[boxes, numClasses]` row-major for each image's boxes (input pixels).
    func typeProbabilities(_ images: Tensor, boxes: [XYXYBoxes]) -> [[Float]]
}
