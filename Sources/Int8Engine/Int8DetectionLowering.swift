import Kernels
import Autodiff
import NN
import Detection
import CInt8

// The detector lowers as the ONNX exporter writes it (DetectionExport.swift): backbone C3-C5, FPN,
// both head branches per level, dense rows; anchors, decoding and NMS stay with the detector
// (`DenseDetector`), so `Int8Detector` hands them the engine's dense outputs.

/// A backbone that lowers its C3, C4, C5 feature maps.
public protocol Int8FeatureLowerable {
    func lowerFeatureMaps(_ x: Int, _ b: inout Int8Builder) throws -> [Int]
}

/// The outputs of `features` at `ends` (NN's `collect`); each is pinned (the FPN and the next stage read it).
func lowerFeatures(_ features: Sequential, ends: [Int], _ x: Int, _ b: inout Int8Builder, owner: Module) throws -> [Int] {
    guard let last = ends.last else {
        throw Int8Error(path: owner.path, "a small-input backbone (total stride 8) has no C3-C5 feature maps for a detector")
    }
    var out: [Int] = [], h = x
    for (i, layer) in features.layers.enumerated() where i <= last {
        h = try lowerChild(layer, h, &b)
        if ends.contains(i) { b.pin(h); out.append(h) }
    }
    return out
}

extension MobileNetV1: Int8FeatureLowerable {
    public func lowerFeatureMaps(_ x: Int, _ b: inout Int8Builder) throws -> [Int] { try lowerFeatures(features, ends: ends, x, &b, owner: self) }
}
extension MobileNetV2: Int8FeatureLowerable {
    public func lowerFeatureMaps(_ x: Int, _ b: inout Int8Builder) throws -> [Int] { try lowerFeatures(features, ends: ends, x, &b, owner: self) }
}
extension MobileNetV3: Int8FeatureLowerable {
    public func lowerFeatureMaps(_ x: Int, _ b: inout Int8Builder) throws -> [Int] { try lowerFeatures(features, ends: ends, x, &b, owner: self) }
}
extension ResNet: Int8FeatureLowerable {
    public func lowerFeatureMaps(_ x: Int, _ b: inout Int8Builder) throws -> [Int] {
        guard !smallInput else { throw Int8Error(path: path, "a small-input backbone (total stride 8) has no C3-C5 feature maps for a detector") }
        var y = try lowerChild(bn1, try lowerChild(conv1, x, &b), &b)
        y = try lowerChild(Activation(.relu), y, &b)
        let p = b.newValue(nil)
        b.append(Int8MaxPool(name: path.isEmpty ? "maxpool" : path + ".maxpool", input: y, output: p, kernel: 3, stride: 2, padding: 1))
        let c3 = try lowerChild(layer2, try lowerChild(layer1, p, &b), &b)
        b.pin(c3)
        let c4 = try lowerChild(layer3, c3, &b)
        b.pin(c4)
        let c5 = try lowerChild(layer4, c4, &b)
        b.pin(c5)
        return [c3, c4, c5]
    }
}

func lowerFeatureMaps(_ backbone: Module, _ x: Int, _ b: inout Int8Builder) throws -> [Int] {
    guard let f = backbone as? Int8FeatureLowerable else {
        throw Int8Error(path: backbone.path, "\(type(of: backbone)) cannot lower its feature maps (conform it to Int8FeatureLowerable)")
    }
    return try f.lowerFeatureMaps(x, &b)
}

extension GroupNorm: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        guard b.grid(x) == nil else { throw Int8Error(path: path, "GroupNorm after a quantizer; the engine normalises float conv outputs") }
        let y = b.newValue(nil)
        b.append(Int8GroupNorm(name: path, input: x, output: y, groups: groups, eps: eps, weight: weight.scalars, bias: bias.scalars))
        return y
    }
}

extension FPN {
    /// P3.. from C3, C4, C5 as `pyramid` computes them; every level is pinned (both head branches read it).
    func lowerPyramid(_ c: [Int], _ b: inout Int8Builder) throws -> [Int] {
        var inner = try lowerChild(lateral[2], c[2], &b)
        b.pin(inner)
        var outs = [try lowerChild(output[2], inner, &b)]
        for i in stride(from: 1, through: 0, by: -1) {
            let m = merges[i]
            let up = b.newValue(b.grid(inner))
            b.append(Int8Upsample2x(name: m.path + ".upsample", input: inner, output: up))
            b.pin(up)
            let lat = try lowerChild(lateral[i], c[i], &b)
            inner = try lowerAdd(lat, up, quantizer: m.addQuantizer, activation: Int32(QI8_ACT_NONE), owner: m, &b)
            b.pin(inner)
            outs.insert(try lowerChild(output[i], inner, &b), at: 0)
        }
        for o in outs { b.pin(o) }
        if let p6 {
            let q6 = try lowerChild(p6, outs[2], &b)
            b.pin(q6)
            outs.append(q6)
            if let p7 {
                let r = b.newValue(nil)
                b.append(Int8Activation(name: p7.path + ".relu_in", input: q6, output: r, activation: Int32(QI8_ACT_RELU)))
                let q7 = try lowerChild(p7, r, &b)
                b.pin(q7)
                outs.append(q7)
            }
        }
        return outs
    }
}

extension RetinaHeadBranch {
    /// tower and predictor per level: (h, w, anchors * outputs) floats each.
    func lowerLevels(_ levels: [Int], _ b: inout Int8Builder) throws -> [Int] {
        try levels.map { try lowerChild(predictor, try lowerChild(tower, $0, &b), &b) }
    }
}

extension RetinaNet: Int8Lowerable {
    /// `forward`: [N, anchors, classes + 4].
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        let levels = try fpn.lowerPyramid(try lowerFeatureMaps(backbone, x, &b), &b)
        let logits = try classificationHead.lowerLevels(levels, &b), boxes = try regressionHead.lowerLevels(levels, &b)
        let y = b.newValue(nil)
        b.append(Int8DenseRows(name: "heads", branches: [(logits, classificationHead.outputsPerAnchor), (boxes, regressionHead.outputsPerAnchor)], output: y))
        b.rows.insert(y)
        return y
    }
}

/// A detector on the int8 engine: the engine computes the dense outputs, the detector (`DenseDetector`)
/// turns them into detections. Inference only. With `compare`, every batch also runs the fake-quant
/// detector and compares codes (`comparison`).
public final class Int8Detector: Module, Detector, Int8EngineModule {
    public static let topLevelModules: [String] = []
    public let program: Int8Program
    let base: any DenseDetector
    let compare: Bool
    public private(set) var comparison = Int8Comparison()

    public init(_ program: Int8Program, base: any DenseDetector, compare: Bool) {
        self.program = program; self.base = base; self.compare = compare
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor { program.run(x) }

    public func losses(images: Tensor, targets: [DetectionTarget]) -> [String: Tensor] {
        preconditionFailure("the int8 engine runs inference only; train the fake-quant model")
    }

    public func detect(_ images: Tensor, imageSizes: [(height: Int, width: Int)]?) -> [Detections] {
        let dense: Tensor
        if compare {
            let (y, c) = Int8Comparison.measure(program, reference: base, input: images)
            comparison.merge(c)
            dense = y
        } else { dense = program.run(images) }
        return base.detections(dense: dense, imageHeight: images.shape[2], imageWidth: images.shape[3], imageSizes: imageSizes)
    }
}
