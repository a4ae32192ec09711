import Kernels
import Autodiff

/// A feature extractor for detection: multi-scale maps at strides 8, 16 and 32 (C3, C4, C5).
public protocol Backbone: Module {
    /// Channels of the C3, C4 and C5 maps.
    var featureChannels: [Int] { get }
    func featureMaps(_ x: Tensor) -> [Tensor]
}

/// torchvision's `_make_divisible`: rounds channels to a multiple of `divisor`, never below 90% of v.
public func makeDivisible(_ v: Double, _ divisor: Int = 8) -> Int {
    var n = max(divisor, Int(v + Double(divisor) / 2) / divisor * divisor)
    if Double(n) < 0.9 * v { n += divisor }
    return n
}

/// torchvision's `Conv2dNormActivation`: conv (no bias) + BatchNorm + optional activation, "same" padding.
func convNormAct(_ cin: Int, _ cout: Int, kernel: Int = 3, stride: Int = 1, groups: Int = 1, dilation: Int = 1,
                 act: Activation.Kind?, bnEps: Float = 1e-5, bnMomentum: Float = 0.1, rng: inout RNG) throws -> Sequential {
    var layers: [Module] = [try Conv2d(cin, cout, kernel: kernel, stride: stride, dilation: dilation, groups: groups, bias: false, rng: &rng),
                            BatchNorm2d(cout, eps: bnEps, momentum: bnMomentum)]
    if let act { layers.append(Activation(act)) }
    return Sequential(layers)
}

/// torchvision's initialisation for MobileNets and ResNets: convs kaiming-normal (fan_out), norms 1/0,
/// linear layers normal(0, linearStd) with zero bias (nil keeps PyTorch's default Linear init).
func torchvisionInit(_ m: Module, linearStd: Float?, rng: inout RNG) {
    for (_, mod) in m.namedModules() {
        if let c = mod as? Conv2d {
            Init.kaimingNormal(c.weight, mode: .fanOut, rng: &rng)
            if let b = c.bias { Init.constant(b, 0) }
        } else if let bn = mod as? BatchNorm2d {
            Init.constant(bn.weight, 1); Init.constant(bn.bias, 0)
        } else if let g = mod as? GroupNorm {
            Init.constant(g.weight, 1); Init.constant(g.bias, 0)
        } else if let l = mod as? Linear, let std = linearStd {
            Init.normal(l.weight, std: std, rng: &rng)
            if let b = l.bias { Init.constant(b, 0) }
        }
    }
}

/// Layers of a sequential feature stack with the cumulative stride after each: the last layer at
/// strides 8, 16 and 32 gives the C3, C4, C5 maps.
struct StageTracker {
    var strides: [Int] = []
    mutating func add(_ s: Int) { strides.append((strides.last ?? 1) * s) }
    /// The C3-C5 layers; empty for a small-input backbone (total stride 8), which has no C4/C5.
    func ends() -> [Int] {
        let found = [8, 16, 32].compactMap { strides.lastIndex(of: $0) }
        return found.count == 3 ? found : []
    }
}

/// Runs `features` and keeps the outputs at `ends`.
func collect(_ features: Sequential, _ ends: [Int], _ x: Tensor) -> [Tensor] {
    precondition(!ends.isEmpty, "a small-input backbone (total stride 8) has no C3-C5 feature maps for a detector")
    var out: [Tensor] = []
    var h = x
    for (i, layer) in features.layers.enumerated() {
        h = layer(h)
        if ends.contains(i) { out.append(h) }
        if i == ends.last { break }
    }
    return out
}

/// The whole model: features, then global average pooling and the classifier when there is one.
func classify(_ features: Sequential, _ classifier: Sequential?, _ x: Tensor) -> Tensor {
    let f = features(x)
    guard let classifier else { return f }
    return classifier(f.globalAvgPool2d().flattened())
}

// MARK: MobileNetV1

/// MobileNetV1 (Howard et al. 2017): a strided 3x3 conv, then 13 depthwise-separable blocks.
/// Paths: `features.0` (conv-bn-relu), `features.k` = [dw conv, bn, relu, pw conv, bn, relu].
public final class MobileNetV1: Module, Backbone {
    public let features: Sequential
    public let classifier: Sequential?
    public let featureChannels: [Int]
    /// Indices of `features` whose outputs are C3, C4, C5 (`featureMaps`).
    public let ends: [Int]

    /// `numClasses` nil builds the feature extractor only.
    /// `smallInput`: stride 1 in the stem and the first strided block (total stride 8).
    public init(width: Double = 1, numClasses: Int? = 1000, dropout: Float = 0.2, smallInput: Bool = false, rng: inout RNG) throws {
        guard width > 0 else { throw ShapeError(op: "MobileNetV1", "width must be positive, got \(width)") }
        let c = { (v: Int) in makeDivisible(Double(v) * width) }
        var cfg: [(Int, Int)] = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                                 (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
        if smallInput, let i = cfg.firstIndex(where: { $0.1 == 2 }) { cfg[i].1 = 1 }
        let stemStride = smallInput ? 1 : 2
        var layers: [Module] = [try convNormAct(3, c(32), stride: stemStride, act: .relu, rng: &rng)]
        var track = StageTracker(); track.add(stemStride)
        var cin = c(32)
        var chans: [Int] = [cin]
        for (out, s) in cfg {
            let co = c(out)
            layers.append(Sequential(
                try Conv2d(cin, cin, kernel: 3, stride: s, groups: cin, bias: false, rng: &rng), BatchNorm2d(cin), Activation(.relu),
                try Conv2d(cin, co, kernel: 1, bias: false, rng: &rng), BatchNorm2d(co), Activation(.relu)))
            track.add(s); chans.append(co)
            cin = co
        }
        features = Sequential(layers)
        ends = track.ends()
        featureChannels = ends.map { chans[$0] }
        classifier = try numClasses.map { Sequential(Dropout(p: dropout), try Linear(cin, $0, rng: &rng)) }
        super.init()
        torchvisionInit(self, linearStd: 0.01, rng: &rng)
    }

    public override func forward(_ x: Tensor) -> Tensor { classify(features, classifier, x) }
    public func featureMaps(_ x: Tensor) -> [Tensor] { collect(features, ends, x) }
}

// MARK: MobileNetV2

/// MobileNetV2's inverted residual (torchvision paths: `conv.0` expand, `conv.1` depthwise, `conv.2`
/// linear projection, `conv.3` its BatchNorm; without expansion the depthwise is `conv.0`).
public final class InvertedResidual: Module, AddQuantizable {
    public let conv: Sequential
    public let useResidual: Bool
    /// Quantizer after the residual add, where an integer graph requantizes (set by `quantize`).
    public var addQuantizer: Module?
    public var hasQuantizableAdd: Bool { useResidual }

    init(_ cin: Int, _ cout: Int, stride: Int, expandRatio: Int, rng: inout RNG) throws {
        let hidden = Int((Double(cin) * Double(expandRatio)).rounded())
        var layers: [Module] = []
        if expandRatio != 1 { layers.append(try convNormAct(cin, hidden, kernel: 1, act: .relu6, rng: &rng)) }
        layers.append(try convNormAct(hidden, hidden, stride: stride, groups: hidden, act: .relu6, rng: &rng))
        layers.append(try Conv2d(hidden, cout, kernel: 1, bias: false, rng: &rng))
        layers.append(BatchNorm2d(cout))
        conv = Sequential(layers)
        useResidual = stride == 1 && cin == cout
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        guard useResidual else { return conv(x) }
        let y = x + conv(x)
        return addQuantizer?(y) ?? y
    }

    /// Without the residual the input only feeds `conv`, which may take it pre-activated.
    public override var takesPreActivatedInput: Bool { !useResidual && conv.takesPreActivatedInput }
    public override func forward(preActivated a: Tensor, _ act: FakeQuant.PreActivation) -> Tensor? {
        useResidual ? nil : conv.forward(preActivated: a, act)
    }
}

/// MobileNetV2 (Sandler et al. 2018) exactly as torchvision builds it (same paths, channels, init).
public final class MobileNetV2: Module, Backbone {
    public let features: Sequential
    public let classifier: Sequential?
    public let featureChannels: [Int]
    /// Indices of `features` whose outputs are C3, C4, C5 (`featureMaps`).
    public let ends: [Int]

    /// `smallInput`: stride 1 in the stem and the first strided stage (total stride 8), CIFAR practice.
    public init(width: Double = 1, numClasses: Int? = 1000, dropout: Float = 0.2, smallInput: Bool = false, rng: inout RNG) throws {
        guard width > 0 else { throw ShapeError(op: "MobileNetV2", "width must be positive, got \(width)") }
        var settings: [(t: Int, c: Int, n: Int, s: Int)] = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        if smallInput { settings[1].s = 1 }
        let stemStride = smallInput ? 1 : 2
        var cin = makeDivisible(32 * width)
        let last = makeDivisible(1280 * max(1, width))
        var layers: [Module] = [try convNormAct(3, cin, stride: stemStride, act: .relu6, rng: &rng)]
        var track = StageTracker(); track.add(stemStride)
        var chans = [cin]
        for st in settings {
            let cout = makeDivisible(Double(st.c) * width)
            for i in 0..<st.n {
                let s = i == 0 ? st.s : 1
                layers.append(try InvertedResidual(cin, cout, stride: s, expandRatio: st.t, rng: &rng))
                track.add(s); chans.append(cout)
                cin = cout
            }
        }
        layers.append(try convNormAct(cin, last, kernel: 1, act: .relu6, rng: &rng))
        track.add(1); chans.append(last)
        features = Sequential(layers)
        ends = track.ends()
        featureChannels = ends.map { chans[$0] }
        classifier = try numClasses.map { Sequential(Dropout(p: dropout), try Linear(last, $0, rng: &rng)) }
        super.init()
        torchvisionInit(self, linearStd: 0.01, rng: &rng)
    }

    public override func forward(_ x: Tensor) -> Tensor { classify(features, classifier, x) }
    public func featureMaps(_ x: Tensor) -> [Tensor] { collect(features, ends, x) }
}

// MARK: MobileNetV3

/// Squeeze-and-excitation (torchvision.ops.SqueezeExcitation): pool, fc1 (1x1 conv), ReLU, fc2, hard sigmoid, scale.
public final class SqueezeExcitation: Module {
    public let fc1: Conv2d, fc2: Conv2d
    init(_ channels: Int, squeeze: Int, rng: inout RNG) throws {
        fc1 = try Conv2d(channels, squeeze, kernel: 1, rng: &rng)
        fc2 = try Conv2d(squeeze, channels, kernel: 1, rng: &rng)
        super.init()
    }
    public override func forward(_ x: Tensor) -> Tensor {
        x * fc2(fc1(x.globalAvgPool2d()).relu()).hardsigmoid()
    }
}

/// MobileNetV3's bneck block (torchvision paths: `block.0` expand, `block.1` depthwise, `block.2` SE,
/// last: projection conv-bn without activation).
public final class InvertedResidualV3: Module, AddQuantizable {
    public let block: Sequential
    public let useResidual: Bool
    public var addQuantizer: Module?
    public var hasQuantizableAdd: Bool { useResidual }

    init(_ cin: Int, kernel: Int, expanded: Int, _ cout: Int, se: Bool, act: Activation.Kind, stride: Int, rng: inout RNG) throws {
        let eps: Float = 0.001, mom: Float = 0.01
        var layers: [Module] = []
        if expanded != cin { layers.append(try convNormAct(cin, expanded, kernel: 1, act: act, bnEps: eps, bnMomentum: mom, rng: &rng)) }
        layers.append(try convNormAct(expanded, expanded, kernel: kernel, stride: stride, groups: expanded, act: act, bnEps: eps, bnMomentum: mom, rng: &rng))
        if se { layers.append(try SqueezeExcitation(expanded, squeeze: makeDivisible(Double(expanded / 4)), rng: &rng)) }
        layers.append(try convNormAct(expanded, cout, kernel: 1, act: nil, bnEps: eps, bnMomentum: mom, rng: &rng))
        block = Sequential(layers)
        useResidual = stride == 1 && cin == cout
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        guard useResidual else { return block(x) }
        let y = x + block(x)
        return addQuantizer?(y) ?? y
    }

    public override var takesPreActivatedInput: Bool { !useResidual && block.takesPreActivatedInput }
    public override func forward(preActivated a: Tensor, _ act: FakeQuant.PreActivation) -> Tensor? {
        useResidual ? nil : block.forward(preActivated: a, act)
    }
}

/// MobileNetV3 small and large (Howard et al. 2019) as torchvision builds them.
public final class MobileNetV3: Module, Backbone {
    public enum Size: String, Sendable { case small, large }
    public let features: Sequential
    public let classifier: Sequential?
    public let featureChannels: [Int]
    /// Indices of `features` whose outputs are C3, C4, C5 (`featureMaps`).
    public let ends: [Int]

    /// `smallInput`: stride 1 in the stem and the first strided block (total stride 8).
    public init(_ size: Size, width: Double = 1, numClasses: Int? = 1000, dropout: Float = 0.2, smallInput: Bool = false, rng: inout RNG) throws {
        guard width > 0 else { throw ShapeError(op: "MobileNetV3", "width must be positive, got \(width)") }
        typealias B = (cin: Int, k: Int, exp: Int, cout: Int, se: Bool, act: Activation.Kind, s: Int)
        let large: [B] = [(16, 3, 16, 16, false, .relu, 1), (16, 3, 64, 24, false, .relu, 2), (24, 3, 72, 24, false, .relu, 1),
                          (24, 5, 72, 40, true, .relu, 2), (40, 5, 120, 40, true, .relu, 1), (40, 5, 120, 40, true, .relu, 1),
                          (40, 3, 240, 80, false, .hardswish, 2), (80, 3, 200, 80, false, .hardswish, 1),
                          (80, 3, 184, 80, false, .hardswish, 1), (80, 3, 184, 80, false, .hardswish, 1),
                          (80, 3, 480, 112, true, .hardswish, 1), (112, 3, 672, 112, true, .hardswish, 1),
                          (112, 5, 672, 160, true, .hardswish, 2), (160, 5, 960, 160, true, .hardswish, 1),
                          (160, 5, 960, 160, true, .hardswish, 1)]
        let small: [B] = [(16, 3, 16, 16, true, .relu, 2), (16, 3, 72, 24, false, .relu, 2), (24, 3, 88, 24, false, .relu, 1),
                          (24, 5, 96, 40, true, .hardswish, 2), (40, 5, 240, 40, true, .hardswish, 1),
                          (40, 5, 240, 40, true, .hardswish, 1), (40, 5, 120, 48, true, .hardswish, 1),
                          (48, 5, 144, 48, true, .hardswish, 1), (48, 5, 288, 96, true, .hardswish, 2),
                          (96, 5, 576, 96, true, .hardswish, 1), (96, 5, 576, 96, true, .hardswish, 1)]
        var cfg = size == .large ? large : small
        if smallInput, let i = cfg.firstIndex(where: { $0.s == 2 }) { cfg[i].s = 1 }
        let stemStride = smallInput ? 1 : 2
        let adj = { (v: Int) in makeDivisible(Double(v) * width) }
        let eps: Float = 0.001, mom: Float = 0.01
        let first = adj(cfg[0].cin)
        var layers: [Module] = [try convNormAct(3, first, stride: stemStride, act: .hardswish, bnEps: eps, bnMomentum: mom, rng: &rng)]
        var track = StageTracker(); track.add(stemStride)
        var chans = [first]
        for b in cfg {
            layers.append(try InvertedResidualV3(adj(b.cin), kernel: b.k, expanded: adj(b.exp), adj(b.cout), se: b.se, act: b.act, stride: b.s, rng: &rng))
            track.add(b.s); chans.append(adj(b.cout))
        }
        let lastIn = adj(cfg.last!.cout), lastOut = 6 * lastIn
        layers.append(try convNormAct(lastIn, lastOut, kernel: 1, act: .hardswish, bnEps: eps, bnMomentum: mom, rng: &rng))
        track.add(1); chans.append(lastOut)
        features = Sequential(layers)
        ends = track.ends()
        featureChannels = ends.map { chans[$0] }
        let lastChannel = adj(size == .large ? 1280 : 1024)
        classifier = try numClasses.map {
            Sequential(try Linear(lastOut, lastChannel, rng: &rng), Activation(.hardswish), Dropout(p: dropout), try Linear(lastChannel, $0, rng: &rng))
        }
        super.init()
        torchvisionInit(self, linearStd: 0.01, rng: &rng)
    }

    public override func forward(_ x: Tensor) -> Tensor { classify(features, classifier, x) }
    public func featureMaps(_ x: Tensor) -> [Tensor] { collect(features, ends, x) }
}

// MARK: ResNet

/// ResNet basic block (two 3x3 convs; 1x1 projection `downsample` when the shape changes).
public final class BasicBlock: Module, AddQuantizable, ConvBatchNormPairs {
    public let conv1: Conv2d, bn1: BatchNorm2d, conv2: Conv2d, bn2: BatchNorm2d
    public let downsample: Sequential?
    public var addQuantizer: Module?
    public var hasQuantizableAdd: Bool { true }
    /// The downsample's pair belongs to its Sequential.
    public var convBatchNormPairs: [(conv: Conv2d, bn: BatchNorm2d, bnPath: String)] { [(conv1, bn1, "bn1"), (conv2, bn2, "bn2")] }

    init(_ cin: Int, _ cout: Int, stride: Int, rng: inout RNG) throws {
        conv1 = try Conv2d(cin, cout, kernel: 3, stride: stride, bias: false, rng: &rng); bn1 = BatchNorm2d(cout)
        conv2 = try Conv2d(cout, cout, kernel: 3, bias: false, rng: &rng); bn2 = BatchNorm2d(cout)
        downsample = (stride != 1 || cin != cout)
            ? Sequential(try Conv2d(cin, cout, kernel: 1, stride: stride, bias: false, rng: &rng), BatchNorm2d(cout)) : nil
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let y = bn2(conv2(bn1(conv1(x)).relu()))
        let sum = (y + (downsample?(x) ?? x)).relu()
        return addQuantizer?(sum) ?? sum
    }
}

/// ResNet-18 style (He et al. 2016) with torchvision's paths; `width` scales every stage ("ResNet-lite").
public final class ResNet: Module, Backbone, ConvBatchNormPairs {
    public let conv1: Conv2d, bn1: BatchNorm2d
    /// The stem's pair (the blocks report theirs).
    public var convBatchNormPairs: [(conv: Conv2d, bn: BatchNorm2d, bnPath: String)] { [(conv1, bn1, "bn1")] }
    public let layer1: Sequential, layer2: Sequential, layer3: Sequential, layer4: Sequential
    public let fc: Linear?
    public let featureChannels: [Int]

    /// True for the CIFAR stem (3x3 stride-1 conv, no max-pooling; total stride 8).
    public let smallInput: Bool

    /// `smallInput`: the CIFAR ResNet stem, a 3x3 stride-1 conv without max-pooling (total stride 8).
    public init(depths: [Int] = [2, 2, 2, 2], width: Double = 1, numClasses: Int? = 1000, smallInput: Bool = false, rng: inout RNG) throws {
        guard depths.count == 4, depths.allSatisfy({ $0 >= 1 }), width > 0 else {
            throw ShapeError(op: "ResNet", "needs 4 stage depths >= 1 and a positive width, got \(depths), \(width)")
        }
        let ch = [64, 128, 256, 512].map { makeDivisible(Double($0) * width) }
        let stem = makeDivisible(64 * width)
        conv1 = smallInput ? try Conv2d(3, stem, kernelSize: (3, 3), stride: (1, 1), padding: (1, 1), bias: false, rng: &rng)
                           : try Conv2d(3, stem, kernelSize: (7, 7), stride: (2, 2), padding: (3, 3), bias: false, rng: &rng)
        self.smallInput = smallInput
        bn1 = BatchNorm2d(stem)
        var cin = stem
        var stages: [Sequential] = []
        for (i, d) in depths.enumerated() {
            var blocks: [Module] = []
            for j in 0..<d {
                blocks.append(try BasicBlock(cin, ch[i], stride: (j == 0 && i > 0) ? 2 : 1, rng: &rng))
                cin = ch[i]
            }
            stages.append(Sequential(blocks))
        }
        layer1 = stages[0]; layer2 = stages[1]; layer3 = stages[2]; layer4 = stages[3]
        fc = try numClasses.map { try Linear(cin, $0, rng: &rng) }
        featureChannels = smallInput ? [] : Array(ch[1...])
        super.init()
        torchvisionInit(self, linearStd: nil, rng: &rng)
    }

    func stem(_ x: Tensor) -> Tensor {
        let y = bn1(conv1(x)).relu()
        return smallInput ? y : y.maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let f = layer4(layer3(layer2(layer1(stem(x)))))
        guard let fc else { return f }
        return fc(f.globalAvgPool2d().flattened())
    }

    public func featureMaps(_ x: Tensor) -> [Tensor] {
        precondition(!smallInput, "a small-input backbone (total stride 8) has no C3-C5 feature maps for a detector")
        let c3 = layer2(layer1(stem(x)))
        let c4 = layer3(c3)
        return [c3, c4, layer4(c4)]
    }
}

/// Builds a backbone by name (`mobilenet_v1`, `mobilenet_v2`, `mobilenet_v3_small`, `mobilenet_v3_large`,
/// `resnet18`), the names recipes and `qat bench train-step --model` use.
public enum Backbones {
    public static let names = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18"]

    /// `smallInput`: total stride 8 instead of 32 (see each backbone); classification only.
    public static func make(_ name: String, width: Double = 1, numClasses: Int? = nil, smallInput: Bool = false, rng: inout RNG) throws -> any Backbone {
        switch name {
        case "mobilenet_v1": return try MobileNetV1(width: width, numClasses: numClasses, smallInput: smallInput, rng: &rng)
        case "mobilenet_v2": return try MobileNetV2(width: width, numClasses: numClasses, smallInput: smallInput, rng: &rng)
        case "mobilenet_v3_small": return try MobileNetV3(.small, width: width, numClasses: numClasses, smallInput: smallInput, rng: &rng)
        case "mobilenet_v3_large": return try MobileNetV3(.large, width: width, numClasses: numClasses, smallInput: smallInput, rng: &rng)
        case "resnet18": return try ResNet(width: width, numClasses: numClasses, smallInput: smallInput, rng: &rng)
        default:
            throw ShapeError(op: "backbone", "unknown model '\(name)'; choose one of \(names.joined(separator: ", "))")
        }
    }
}
