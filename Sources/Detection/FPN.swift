import Kernels
import Autodiff
import NN

/// One top-down step of the FPN: `lateral + upsample2x(coarser)` (torchvision's
/// `FeaturePyramidNetwork` forward). A module of its own so quantization can requantize the sum like a
/// residual add (`addQuantizer`), which an integer graph has to do at this point.
public final class TopDownMerge: Module, AddQuantizable {
    public var hasQuantizableAdd: Bool { true }
    public var addQuantizer: Module?
    public override init() { super.init() }

    /// Nearest-neighbour upsampling of `coarser` to `lateral`'s size. Levels are exactly a factor 2
    /// apart because the detector takes inputs whose side is a multiple of the coarsest backbone stride
    /// (torchvision interpolates to the lateral's size, which is the same thing then).
    public func merge(lateral: Tensor, coarser: Tensor) -> Tensor {
        precondition(lateral.shape[2] == 2 * coarser.shape[2] && lateral.shape[3] == 2 * coarser.shape[3],
                     "FPN at '\(path)': level sizes \(lateral.shape) and \(coarser.shape) are not a factor 2 apart (input side must be a multiple of 32)")
        let s = lateral + coarser.upsampleNearest(scale: (2, 2))
        return addQuantizer?(s) ?? s
    }
}

/// Feature pyramid (Lin et al. 2017) over the backbone's C3-C5 maps, as torchvision builds it for
/// RetinaNet: a 1x1 lateral conv per input level, top-down nearest upsampling and addition, a 3x3
/// output conv per level; optional P6/P7 from P5 by stride-2 3x3 convs with a ReLU between
/// (`LastLevelP6P7` with in == out channels, so it reads P5, as torchvision's RetinaNet does).
/// Init: kaiming-uniform (a = 1), zero bias, everywhere (torchvision).
public final class FPN: Module {
    public let lateral: [Conv2d]
    public let output: [Conv2d]
    public let merges: [TopDownMerge]
    public let p6: Conv2d?
    public let p7: Conv2d?
    public let channels: Int
    /// Pyramid levels produced, e.g. [3, 4, 5, 6, 7].
    public let levels: [Int]

    /// `inChannels`: channels of C3, C4, C5. `levels`: contiguous, starting at 3, ending at 5, 6 or 7.
    public init(inChannels: [Int], channels: Int, levels: [Int], rng: inout RNG) throws {
        guard inChannels.count == 3 else { throw ShapeError(op: "FPN", "needs the C3, C4, C5 channel counts, got \(inChannels)") }
        guard let last = levels.last, levels.first == 3, levels == Array(3...max(last, 3)), (5...7).contains(last) else {
            throw ShapeError(op: "FPN", "levels must run from 3 to 5, 6 or 7 without gaps, got \(levels)")
        }
        guard channels > 0 else { throw ShapeError(op: "FPN", "channels must be positive, got \(channels)") }
        self.channels = channels
        self.levels = levels
        lateral = try inChannels.map { try Conv2d($0, channels, kernel: 1, rng: &rng) }
        output = try inChannels.map { _ in try Conv2d(channels, channels, kernel: 3, rng: &rng) }
        merges = [TopDownMerge(), TopDownMerge()]
        p6 = last >= 6 ? try Conv2d(channels, channels, kernel: 3, stride: 2, rng: &rng) : nil
        p7 = last >= 7 ? try Conv2d(channels, channels, kernel: 3, stride: 2, rng: &rng) : nil
        super.init()
        for (_, m) in namedModules() {
            guard let c = m as? Conv2d else { continue }
            Init.kaimingUniform(c.weight, gain: 1, rng: &rng)
            if let b = c.bias { Init.constant(b, 0) }
        }
    }

    /// P3 ... P<last> from [C3, C4, C5], finest first.
    public func pyramid(_ c: [Tensor]) -> [Tensor] {
        precondition(c.count == 3, "FPN: expected 3 feature maps, got \(c.count)")
        var inner = lateral[2](c[2])
        var outs = [output[2](inner)]
        for i in stride(from: 1, through: 0, by: -1) {
            inner = merges[i].merge(lateral: lateral[i](c[i]), coarser: inner)
            outs.insert(output[i](inner), at: 0)
        }
        if let p6 {
            let q6 = p6(outs[2])
            outs.append(q6)
            if let p7 { outs.append(p7(q6.relu())) }
        }
        return outs
    }
}
