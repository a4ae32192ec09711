import Kernels
import Autodiff
import NN

/// The thesis' fine-grained type module: RoIAlign of each box from the FPN level its size selects,
/// `convs` x (3x3 conv + ReLU) on the pooled features, a ReLU hidden layer and a linear type
/// classifier (Faster R-CNN's box head shape, scaled down for 16-64 px aircraft). Its convs and linears
/// are ordinary layers, so quantization, pruning and export reach them like any other.
public final class FineGrainedHead: Module {
    public let tower: Sequential
    public let hidden: Linear
    public let classifier: Linear
    let pooler: MultiScaleRoIAlign
    /// How many FPN maps (finest first) the boxes are pooled from.
    public let pooledLevels: Int

    public init(channels: Int, types: Int, fpnLevels: [Int], config c: DecoupledConfig, rng: inout RNG) throws {
        let used = fpnLevels.filter { $0 <= 5 }
        guard !used.isEmpty else { throw DetectionConfigError(key: "fpn.levels", "the fine-grained module pools from P3-P5; none of \(fpnLevels) is one") }
        pooledLevels = used.count
        // aligned (Detectron2's half-pixel sampling): at stride 8 the half-cell shift of aligned=false
        // is 4 px, an eighth of a 32 px aircraft.
        pooler = try MultiScaleRoIAlign(outputSize: (c.pool, c.pool), samplingRatio: c.samplingRatio,
                                        canonicalScale: Float(c.canonicalSize), canonicalLevel: c.canonicalLevel, aligned: true)
        var layers: [Module] = []
        for _ in 0..<c.fineConvs {
            layers.append(try Conv2d(channels, channels, kernel: 3, rng: &rng))
            layers.append(Activation(.relu))
        }
        tower = Sequential(layers)
        hidden = try Linear(channels * c.pool * c.pool, c.fineHidden, rng: &rng)
        classifier = try Linear(c.fineHidden, types, rng: &rng)
        // Faster R-CNN's cls_score init: N(0, 0.01), zero bias, so every type starts equally likely.
        Init.normal(classifier.weight, std: 0.01, rng: &rng)
        Init.constant(classifier.bias!, 0)
        super.init()
    }

    /// Type logits `[R, types]` for the boxes of every image (input pixels), in image order; R > 0.
    public func logits(levels: [Tensor], boxes: [XYXYBoxes], imageSize: (height: Int, width: Int)) -> Tensor {
        let pooled: Tensor
        do { pooled = try pooler(Array(levels.prefix(pooledLevels)), boxes: boxes, imageSize: imageSize) } catch {
            // The FPN's levels are consecutive and the task letterboxes to a multiple of 32, so the
            // pooler's scale check cannot fail on a detector's own maps.
            preconditionFailure("FineGrainedHead: \(error)")
        }
        precondition(pooled.shape[0] > 0, "FineGrainedHead: no boxes to classify")
        return classifier(hidden(tower(pooled).flattened(from: 1)).relu())
    }
}
