import Foundation
import Kernels
import Autodiff
import NN
import Detection

/// A backbone that writes its C3, C4, C5 feature maps (the detector's input to the FPN).
public protocol ONNXFeatureExportable {
    func exportFeatureMaps(_ x: String, _ g: inout ONNXGraph) throws -> [String]
}

/// The outputs of `features` at `ends` (NN's `collect`).
func featureGraph(_ features: Sequential, ends: [Int], _ x: String, _ g: inout ONNXGraph, owner: Module) throws -> [String] {
    guard let last = ends.last else {
        throw ONNXExportError(path: owner.path, "a small-input backbone (total stride 8) has no C3-C5 feature maps for a detector")
    }
    var out: [String] = [], h = x
    for (i, layer) in features.layers.enumerated() where i <= last {
        h = try exportChild(layer, h, &g)
        if ends.contains(i) { out.append(h) }
    }
    return out
}

extension MobileNetV1: ONNXFeatureExportable {
    public func exportFeatureMaps(_ x: String, _ g: inout ONNXGraph) throws -> [String] { try featureGraph(features, ends: ends, x, &g, owner: self) }
}
extension MobileNetV2: ONNXFeatureExportable {
    public func exportFeatureMaps(_ x: String, _ g: inout ONNXGraph) throws -> [String] { try featureGraph(features, ends: ends, x, &g, owner: self) }
}
extension MobileNetV3: ONNXFeatureExportable {
    public func exportFeatureMaps(_ x: String, _ g: inout ONNXGraph) throws -> [String] { try featureGraph(features, ends: ends, x, &g, owner: self) }
}
extension ResNet: ONNXFeatureExportable {
    public func exportFeatureMaps(_ x: String, _ g: inout ONNXGraph) throws -> [String] {
        guard !smallInput else { throw ONNXExportError(path: path, "a small-input backbone (total stride 8) has no C3-C5 feature maps for a detector") }
        var y = g.op("Relu", [try exportChild(bn1, try exportChild(conv1, x, &g), &g)], name: path.isEmpty ? "relu" : path + ".relu")
        y = g.op("MaxPool", [y], name: path.isEmpty ? "maxpool" : path + ".maxpool",
                 attributes: [ONNXGraph.ints("kernel_shape", [3, 3]), ONNXGraph.ints("strides", [2, 2]), ONNXGraph.ints("pads", [1, 1, 1, 1])])
        let c3 = try exportChild(layer2, try exportChild(layer1, y, &g), &g)
        let c4 = try exportChild(layer3, c3, &g)
        return [c3, c4, try exportChild(layer4, c4, &g)]
    }
}

func featureMaps(_ backbone: Module, _ x: String, _ g: inout ONNXGraph) throws -> [String] {
    guard let b = backbone as? ONNXFeatureExportable else {
        throw ONNXExportError(path: backbone.path, "\(type(of: backbone)) cannot export its feature maps (conform it to ONNXFeatureExportable)")
    }
    return try b.exportFeatureMaps(x, &g)
}

extension GroupNorm: ONNXExportable {
    /// Reshape to [N, G, -1], InstanceNormalization (unit scale, zero bias: the statistics of each
    /// group), reshape back, then the per-channel affine, as `GroupNorm.forward` composes it.
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        let grouped = g.op("Reshape", [x, g.int64s(path + ".groups_shape", [0, groups, -1], shape: [3])], name: path + ".group")
        let ones = g.floats(path + ".unit", [Float](repeating: 1, count: groups), shape: [groups])
        let zeros = g.floats(path + ".zero", [Float](repeating: 0, count: groups), shape: [groups])
        let normed = g.op("InstanceNormalization", [grouped, ones, zeros], name: path + ".norm", attributes: [ONNXGraph.float("epsilon", eps)])
        let back = g.op("Reshape", [normed, g.op("Shape", [x], name: path + ".shape")], name: path + ".ungroup")
        let w = g.floats(path + ".weight", weight.scalars, shape: [1, channels, 1, 1]), b = g.floats(path + ".bias", bias.scalars, shape: [1, channels, 1, 1])
        return g.op("Add", [g.op("Mul", [back, w], name: path + ".scale"), b], name: path + ".shift")
    }
}

extension FPN {
    /// P3.. from C3, C4, C5: laterals, nearest 2x upsampling and adds (with their quantizers), 3x3
    /// outputs, and P6 / P7 as `pyramid` builds them.
    func exportPyramid(_ c: [String], _ g: inout ONNXGraph) throws -> [String] {
        var inner = try exportChild(lateral[2], c[2], &g)
        var outs = [try exportChild(output[2], inner, &g)]
        for i in stride(from: 1, through: 0, by: -1) {
            let lat = try exportChild(lateral[i], c[i], &g)
            let m = merges[i]
            let scales = g.floats(m.path + ".scales", [1, 1, 2, 2], shape: [4])
            let up = g.op("Resize", [inner, "", scales], name: m.path + ".upsample",
                          attributes: [stringAttribute("mode", "nearest"), stringAttribute("coordinate_transformation_mode", "asymmetric"),
                                       stringAttribute("nearest_mode", "floor")])
            inner = try quantizeActivation(m.addQuantizer, g.op("Add", [lat, up], name: m.path + ".add"), &g, owner: m)
            outs.insert(try exportChild(output[i], inner, &g), at: 0)
        }
        if let p6 {
            let q6 = try exportChild(p6, outs[2], &g)
            outs.append(q6)
            if let p7 { outs.append(try exportChild(p7, g.op("Relu", [q6], name: p7.path + ".relu_in"), &g)) }
        }
        return outs
    }
}

func stringAttribute(_ name: String, _ v: String) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto(); a.name = name; a.type = .string; a.s = Data(v.utf8); return a
}

extension RetinaHeadBranch {
    /// [N, sum of H*W*A, outputsPerAnchor]: per level tower and predictor, NCHW -> NHWC, rows of one
    /// anchor, levels concatenated finest first (`predict`).
    func exportPredict(_ levels: [String], _ g: inout ONNXGraph) throws -> String {
        let shape = g.int64s(path + ".rows_shape", [0, -1, outputsPerAnchor], shape: [3])
        let rows = try levels.enumerated().map { l, f -> String in
            let y = try exportChild(predictor, try exportChild(tower, f, &g), &g)
            let t = g.op("Transpose", [y], name: path + ".nhwc\(l)", attributes: [ONNXGraph.ints("perm", [0, 2, 3, 1])])
            return g.op("Reshape", [t, shape], name: path + ".rows\(l)")
        }
        return rows.count == 1 ? rows[0] : g.op("Concat", rows, name: path + ".levels", attributes: [ONNXGraph.int("axis", 1)])
    }
}

extension RetinaNet: ONNXExportable {
    /// `forward`: [N, anchors, classes + 4], class logits then box deltas per anchor (anchors, decoding
    /// and NMS stay outside the graph, as the anchors depend only on the input size).
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        let levels = try fpn.exportPyramid(try featureMaps(backbone, x, &g), &g)
        let logits = try classificationHead.exportPredict(levels, &g), boxes = try regressionHead.exportPredict(levels, &g)
        return g.op("Concat", [logits, boxes], name: "heads", attributes: [ONNXGraph.int("axis", 2)])
    }
}

extension DecoupledRetinaNet: ONNXExportable {
    /// `forward`'s dense part: [N, anchors, 5], the foreground logit then box deltas per anchor. The
    /// fine-grained type module runs on post-NMS boxes (RoIAlign), which this graph does not hold.
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        let levels = try fpn.exportPyramid(try featureMaps(backbone, x, &g), &g)
        let fg = try objectnessHead.exportPredict(levels, &g), boxes = try regressionHead.exportPredict(levels, &g)
        return g.op("Concat", [fg, boxes], name: "heads", attributes: [ONNXGraph.int("axis", 2)])
    }
}
