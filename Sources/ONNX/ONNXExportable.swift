import Foundation
import Kernels
import Autodiff
import NN

/// A module that writes its eval-mode forward as ONNX nodes: given the name of its input value, it
/// appends nodes to the graph and returns the name of its output. A new block exports by conforming
/// (composites call `exportChild` on their children); the exporter never casts to concrete types.
public protocol ONNXExportable {
    func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String
}

/// Exports any module: an error naming its path and type when it does not conform.
public func exportChild(_ m: Module, _ x: String, _ g: inout ONNXGraph) throws -> String {
    guard let e = m as? ONNXExportable else {
        throw ONNXExportError(path: m.path, "\(type(of: m)) has no ONNX export (conform it to ONNXExportable); exportable: Conv2d, Linear, BatchNorm2d, Activation, Dropout, Identity, Sequential and the MobileNet V1/V2/V3 and ResNet backbones")
    }
    return try e.exportONNX(x, &g)
}

extension Sequential: ONNXExportable {
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        try layers.reduce(x) { try exportChild($1, $0, &g) }
    }
}

extension Identity: ONNXExportable { public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String { x } }
/// Eval mode: dropout is the identity.
extension Dropout: ONNXExportable { public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String { x } }

extension Activation: ONNXExportable {
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        let name = path.isEmpty ? "act" : path
        switch kind {
        case .relu: return g.op("Relu", [x], name: name)
        case .relu6:
            let lo = g.floats(name + ".min", [0], shape: []), hi = g.floats(name + ".max", [6], shape: [])
            return g.op("Clip", [x, lo, hi], name: name)
        case .hardswish: return g.op("HardSwish", [x], name: name)
        case .hardsigmoid: return hardSigmoid(x, &g, name: name)
        case .sigmoid: return g.op("Sigmoid", [x], name: name)
        case .silu: return g.op("Mul", [x, g.op("Sigmoid", [x], name: name + ".sigmoid")], name: name)
        case .tanh: return g.op("Tanh", [x], name: name)
        case .leakyRelu: return g.op("LeakyRelu", [x], name: name, attributes: [ONNXGraph.float("alpha", slope)])
        }
    }
}

extension BatchNorm2d: ONNXExportable {
    /// BatchNormalization with the running statistics; in QDQ mode a BN folded into its conv during QAT
    /// is already inside that conv's weights and bias (see `Conv2d`'s export).
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        if g.qdq && isFolded { return x }
        let c = [weight.count]
        return g.op("BatchNormalization", [x, g.floats(path + ".weight", weight.scalars, shape: c), g.floats(path + ".bias", bias.scalars, shape: c),
                                           g.floats(path + ".running_mean", runningMean.scalars, shape: c),
                                           g.floats(path + ".running_var", runningVar.scalars, shape: c)],
                    name: path, attributes: [ONNXGraph.float("epsilon", eps)])
    }
}

extension Conv2d: ONNXExportable {
    /// Conv with the input quantizer (QDQ mode) in front and the weight as DequantizeLinear of its
    /// integer codes. A BN folded during QAT (torch.ao ConvBn2d) is merged as deployment does: the
    /// quantized weight is the folded one, w * gamma / sqrt(var + eps) (the fake-quant model's own
    /// codes), and the bias becomes beta + (b - mean) * gamma / sqrt(var + eps).
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        let xin = try quantizeActivation(inputQuantizer, x, &g, owner: self)
        var w = weight.scalars
        var b = bias?.scalars
        let folded = g.qdq ? foldedBN?.bn : nil
        if let bn = folded {
            let k = w.count / outChannels
            let std = (0..<outChannels).map { (bn.runningVar.scalars[$0] + bn.eps).squareRoot() }
            let sf = (0..<outChannels).map { bn.weight.scalars[$0] / std[$0] }
            for o in 0..<outChannels { for i in 0..<k { w[o * k + i] *= sf[o] } }
            b = (0..<outChannels).map { bn.bias.scalars[$0] + ((b?[$0] ?? 0) - bn.runningMean.scalars[$0]) * sf[$0] }
        }
        var inputs = [xin, try weightValue(weightQuantizer, w, shape: weight.shape, &g, name: path + ".weight")]
        if let b { inputs.append(g.floats(path + ".bias", b, shape: [outChannels])) }
        return g.op("Conv", inputs, name: path, attributes: [
            ONNXGraph.ints("kernel_shape", [kernelSize.0, kernelSize.1]), ONNXGraph.ints("strides", [stride.0, stride.1]),
            ONNXGraph.ints("pads", [padding.0, padding.1, padding.0, padding.1]), ONNXGraph.ints("dilations", [dilation.0, dilation.1]),
            ONNXGraph.int("group", groups)])
    }
}

extension Linear: ONNXExportable {
    /// Gemm(x, W, b, transB = 1), quantizers as for `Conv2d`.
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        let xin = try quantizeActivation(inputQuantizer, x, &g, owner: self)
        var inputs = [xin, try weightValue(weightQuantizer, weight.scalars, shape: weight.shape, &g, name: path + ".weight")]
        if let bias { inputs.append(g.floats(path + ".bias", bias.scalars, shape: [outFeatures])) }
        return g.op("Gemm", inputs, name: path, attributes: [ONNXGraph.int("transB", 1)])
    }
}

/// A weight as the model uses it: float, or in QDQ mode with an enabled quantizer its codes and a
/// DequantizeLinear.
func weightValue(_ q: Module?, _ w: [Float], shape: [Int], _ g: inout ONNXGraph, name: String) throws -> String {
    guard g.qdq, let q else { return g.floats(name, w, shape: shape) }
    guard let e = q as? ONNXQuantizer else {
        throw ONNXExportError(path: q.path, "\(type(of: q)) cannot be written as ONNX quantize/dequantize nodes")
    }
    return e.isQuantizing ? try e.exportWeight(w, shape: shape, &g, name: name) : g.floats(name, w, shape: shape)
}

/// PyTorch's hardsigmoid, relu6(x + 3) / 6: ONNX HardSigmoid with alpha 1/6 (its default is 0.2).
func hardSigmoid(_ x: String, _ g: inout ONNXGraph, name: String) -> String {
    g.op("HardSigmoid", [x], name: name, attributes: [ONNXGraph.float("alpha", 1.0 / 6), ONNXGraph.float("beta", 0.5)])
}

/// Global average pooling and flattening: the classifier input of every backbone.
func pooledFeatures(_ x: String, _ g: inout ONNXGraph, name: String) -> String {
    let p = g.op("GlobalAveragePool", [x], name: name + ".pool")
    return g.op("Flatten", [p], name: name + ".flatten", attributes: [ONNXGraph.int("axis", 1)])
}

/// `y = x + block(x)` with the add's quantizer (QDQ mode), or `block(x)` without a residual.
func residual(_ block: Module, useResidual: Bool, addQuantizer: Module?, owner: Module, _ x: String, _ g: inout ONNXGraph) throws -> String {
    let y = try exportChild(block, x, &g)
    guard useResidual else { return y }
    let sum = g.op("Add", [x, y], name: owner.path + ".add")
    return try quantizeActivation(addQuantizer, sum, &g, owner: owner)
}

extension InvertedResidual: ONNXExportable {
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        try residual(conv, useResidual: useResidual, addQuantizer: addQuantizer, owner: self, x, &g)
    }
}

extension InvertedResidualV3: ONNXExportable {
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        try residual(block, useResidual: useResidual, addQuantizer: addQuantizer, owner: self, x, &g)
    }
}

extension SqueezeExcitation: ONNXExportable {
    /// x * hardsigmoid(fc2(relu(fc1(avgpool(x))))).
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        let p = g.op("GlobalAveragePool", [x], name: path + ".pool")
        let h = g.op("Relu", [try exportChild(fc1, p, &g)], name: path + ".relu")
        let s = hardSigmoid(try exportChild(fc2, h, &g), &g, name: path + ".hardsigmoid")
        return g.op("Mul", [x, s], name: path + ".scale")
    }
}

extension BasicBlock: ONNXExportable {
    /// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), then the add's quantizer.
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        var y = try exportChild(bn1, try exportChild(conv1, x, &g), &g)
        y = g.op("Relu", [y], name: path + ".relu1")
        y = try exportChild(bn2, try exportChild(conv2, y, &g), &g)
        let shortcut = try downsample.map { try exportChild($0, x, &g) } ?? x
        let sum = g.op("Relu", [g.op("Add", [y, shortcut], name: path + ".add")], name: path + ".relu")
        return try quantizeActivation(addQuantizer, sum, &g, owner: self)
    }
}

extension MobileNetV1: ONNXExportable {
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String { try classifierGraph(features, classifier, x, &g) }
}
extension MobileNetV2: ONNXExportable {
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String { try classifierGraph(features, classifier, x, &g) }
}
extension MobileNetV3: ONNXExportable {
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String { try classifierGraph(features, classifier, x, &g) }
}

/// features, then (with a classifier) pool, flatten, classifier: `classify` in NN.
func classifierGraph(_ features: Sequential, _ classifier: Sequential?, _ x: String, _ g: inout ONNXGraph) throws -> String {
    let f = try exportChild(features, x, &g)
    guard let classifier else { return f }
    return try exportChild(classifier, pooledFeatures(f, &g, name: "classifier"), &g)
}

extension ResNet: ONNXExportable {
    public func exportONNX(_ x: String, _ g: inout ONNXGraph) throws -> String {
        var y = g.op("Relu", [try exportChild(bn1, try exportChild(conv1, x, &g), &g)], name: "relu")
        if !smallInput {
            y = g.op("MaxPool", [y], name: "maxpool", attributes: [ONNXGraph.ints("kernel_shape", [3, 3]), ONNXGraph.ints("strides", [2, 2]),
                                                                   ONNXGraph.ints("pads", [1, 1, 1, 1])])
        }
        for layer in [layer1, layer2, layer3, layer4] { y = try exportChild(layer, y, &g) }
        guard let fc else { return y }
        return try exportChild(fc, pooledFeatures(y, &g, name: "fc"), &g)
    }
}
