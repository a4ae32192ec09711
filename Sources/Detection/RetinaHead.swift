import Foundation
import Kernels
import Autodiff
import NN

/// One RetinaNet head branch shared across pyramid levels (torchvision `RetinaNetClassificationHead` /
/// `RetinaNetRegressionHead`): `convs` x (3x3 conv + [GroupNorm(32)] + ReLU), then a 3x3 conv to
/// `anchorsPerLocation * outputsPerAnchor` channels. Init: N(0, 0.01) weights, zero biases; the
/// classification branch's last bias is the prior-probability bias `-log((1 - pi) / pi)`.
public final class RetinaHeadBranch: Module {
    public let tower: Sequential
    public let predictor: Conv2d
    public let anchorsPerLocation: Int
    public let outputsPerAnchor: Int

    public init(channels: Int, anchorsPerLocation: Int, outputsPerAnchor: Int, convs: Int, groupNorm: Bool,
                priorProbability: Float?, rng: inout RNG) throws {
        guard convs >= 0, anchorsPerLocation > 0, outputsPerAnchor > 0 else {
            throw ShapeError(op: "RetinaHead", "convs \(convs), anchors \(anchorsPerLocation), outputs \(outputsPerAnchor) must be positive")
        }
        var layers: [Module] = []
        for _ in 0..<convs {
            let conv = try Conv2d(channels, channels, kernel: 3, bias: !groupNorm, rng: &rng)
            Init.normal(conv.weight, std: 0.01, rng: &rng)
            if let b = conv.bias { Init.constant(b, 0) }
            layers.append(conv)
            if groupNorm { layers.append(try GroupNorm(groups: min(32, channels), channels: channels)) }
            layers.append(Activation(.relu))
        }
        tower = Sequential(layers)
        predictor = try Conv2d(channels, anchorsPerLocation * outputsPerAnchor, kernel: 3, rng: &rng)
        Init.normal(predictor.weight, std: 0.01, rng: &rng)
        if let pi = priorProbability { Init.priorProbabilityBias(predictor.bias!, pi: pi) } else { Init.constant(predictor.bias!, 0) }
        self.anchorsPerLocation = anchorsPerLocation
        self.outputsPerAnchor = outputsPerAnchor
        super.init()
    }

    /// [N, sum over levels of H*W*A, outputsPerAnchor]: per level NCHW -> NHWC -> rows of one anchor,
    /// location-major then anchor (the anchor generator's order), levels concatenated finest first.
    public func predict(_ levels: [Tensor]) -> Tensor {
        let rows = levels.map { f -> Tensor in
            let y = predictor(tower(f))
            let (n, h, w) = (y.shape[0], y.shape[2], y.shape[3])
            return y.permuted([0, 2, 3, 1]).reshaped([n, h * w * anchorsPerLocation, outputsPerAnchor])
        }
        return rows.count == 1 ? rows[0] : Tensor.concat(rows, axis: 1)
    }
}
