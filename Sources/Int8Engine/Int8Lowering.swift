import Kernels
import Autodiff
import NN
import CInt8

// How each module lowers (eval-mode forward, the fake-quant model's arithmetic). Mirrors the ONNX
// exporter's conformances: a new block runs on the engine by conforming to Int8Lowerable.

extension Sequential: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        try layers.reduce(x) { try lowerChild($1, $0, &b) }
    }
}

extension Identity: Int8Lowerable { public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int { x } }
/// Eval mode: dropout is the identity.
extension Dropout: Int8Lowerable { public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int { x } }

extension Activation: Int8Lowerable {
    /// relu, relu6 and hardswish join the producing conv's epilogue, else run on the float value.
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        let act: Int32
        switch kind {
        case .relu: act = Int32(QI8_ACT_RELU)
        case .relu6: act = Int32(QI8_ACT_RELU6)
        case .hardswish: act = Int32(QI8_ACT_HARDSWISH)
        case .hardsigmoid: act = Int32(QI8_ACT_HARDSIGMOID)
        default: throw Int8Error(path: path, "activation \(kind.rawValue); the int8 engine runs relu, relu6, hardswish and hardsigmoid")
        }
        if let op = b.openEpilogue(x), op.activation == Int32(QI8_ACT_NONE) {
            op.activation = act
            return x
        }
        guard b.grid(x) == nil else {
            throw Int8Error(path: path, "\(kind.rawValue) on quantized codes (after a quantizer); the fake-quant models the engine runs apply activations before their quantizers")
        }
        let y = b.newValue(nil)
        b.append(Int8Activation(name: path, input: x, output: y, activation: act))
        return y
    }
}

extension BatchNorm2d: Int8Lowerable {
    /// Running statistics merged into the conv before it: y * gamma / sqrt(var + eps) + (beta - mean *
    /// gamma / sqrt(var + eps)). A BN folded during QAT is already inside its conv.
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        if isFolded { return x }
        let c = weight.count
        let std = (0..<c).map { (runningVar.scalars[$0] + eps).squareRoot() }
        let scale = (0..<c).map { weight.scalars[$0] / std[$0] }
        let shift = (0..<c).map { bias.scalars[$0] - runningMean.scalars[$0] * scale[$0] }
        guard let op = b.openEpilogue(x), op.composeAffine(scale: scale, shift: shift) else {
            throw Int8Error(path: path, "BatchNorm2d that does not directly follow a conv; the int8 engine merges each BN into the conv before it")
        }
        return x
    }
}

/// The quantizer a layer's input or weight needs: enabled and of a kind the engine reads.
func requireQuantizer(_ q: Module?, owner: Module, role: String) throws -> Int8Quantizer {
    guard let q else {
        throw Int8Error(path: owner.path, "no \(role) quantizer; the int8 engine runs quantized checkpoints (QAT or PTQ) whose convs and linears quantize input and weight")
    }
    guard let e = q as? Int8Quantizer else { throw Int8Error(path: q.path, "\(type(of: q)) is not a quantizer the int8 engine reads") }
    guard e.isQuantizing else { throw Int8Error(path: q.path, "\(role) quantizer is disabled; the int8 engine needs every conv and linear quantized") }
    return e
}

/// A quantized layer's input codes, weight codes and conv op, appended to the builder (Conv2d, Linear).
func lowerQuantized(_ owner: Module, inputQuantizer: Module?, weightQuantizer: Module?, weight: [Float], bias: [Float]?,
                    cin: Int, cout: Int, groups: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int),
                    dilation: (Int, Int), _ x: Int, _ b: inout Int8Builder) throws -> Int {
    let iq = try requireQuantizer(inputQuantizer, owner: owner, role: "input")
    let wq = try requireQuantizer(weightQuantizer, owner: owner, role: "weight")
    let inGrid = try iq.activationGrid()
    if x == 0, b.inputChannels == nil { b.inputChannels = cin }
    let xin = b.quantized(x, to: inGrid)
    let (codes, scale, zero) = try wq.weightCodes(weight, outChannels: cout)
    let y = b.newValue(nil)
    b.appendEpilogueOp(try Int8Conv(name: owner.path, input: xin, output: y, inGrid: inGrid,
                                    weights: Int8Weights(codes: codes, scale: scale, zero: zero, outChannels: cout), bias: bias,
                                    cin: cin, cout: cout, groups: groups, kernel: kernel, stride: stride, padding: padding, dilation: dilation))
    return y
}

extension Conv2d: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        var w = weight.scalars
        var bias = self.bias?.scalars
        if let bn = foldedBN?.bn {
            // torch.ao ConvBn2d in eval: conv(x, q(w * gamma/std)) / (gamma/std) + b, then the BN with
            // running statistics; together: conv(x, q(w')) + (b - mean) * gamma/std + beta.
            let k = w.count / outChannels
            let sf = (0..<outChannels).map { bn.weight.scalars[$0] / (bn.runningVar.scalars[$0] + bn.eps).squareRoot() }
            for o in 0..<outChannels { for i in 0..<k { w[o * k + i] *= sf[o] } }
            bias = (0..<outChannels).map { bn.bias.scalars[$0] + ((bias?[$0] ?? 0) - bn.runningMean.scalars[$0]) * sf[$0] }
        }
        return try lowerQuantized(self, inputQuantizer: inputQuantizer, weightQuantizer: weightQuantizer, weight: w, bias: bias,
                                  cin: inChannels, cout: outChannels, groups: groups, kernel: kernelSize, stride: stride,
                                  padding: padding, dilation: dilation, x, &b)
    }
}

extension Linear: Int8Lowerable {
    /// A 1x1 conv on [N, 1, 1, in] (the pooled features).
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        let y = try lowerQuantized(self, inputQuantizer: inputQuantizer, weightQuantizer: weightQuantizer, weight: weight.scalars,
                                   bias: bias?.scalars, cin: inFeatures, cout: outFeatures, groups: 1, kernel: (1, 1), stride: (1, 1),
                                   padding: (0, 0), dilation: (1, 1), x, &b)
        b.vector.insert(y)
        return y
    }
}

/// `x + block(x)` then the add's quantizer (with `activation` between, ResNet's relu), or `block(x)`.
func lowerResidual(_ block: (Int, inout Int8Builder) throws -> Int, shortcut: ((Int, inout Int8Builder) throws -> Int)?,
                   useResidual: Bool, addQuantizer: Module?, activation: Int32, owner: Module, _ x: Int, _ b: inout Int8Builder) throws -> Int {
    guard useResidual else { return try block(x, &b) }
    b.pin(x)
    // The shortcut first: the add joins the epilogue of the branch's last op, which must run after it.
    let s = try shortcut?(x, &b) ?? x
    b.pin(s)
    let y = try block(x, &b)
    return try lowerAdd(y, s, quantizer: addQuantizer, activation: activation, owner: owner, &b)
}

/// y + s, the activation, then `quantizer` (nil or off: float out). Joins the epilogue of the op that
/// produced y when it can (y's only consumer, no activation yet, s computed before it), else an add op.
func lowerAdd(_ y: Int, _ s: Int, quantizer q: Module?, activation: Int32, owner: Module, _ b: inout Int8Builder) throws -> Int {
    let quantizer: Int8Quantizer?
    if let q {
        guard let e = q as? Int8Quantizer else { throw Int8Error(path: q.path, "\(type(of: q)) is not a quantizer the int8 engine reads") }
        quantizer = e.isQuantizing ? e : nil
    } else { quantizer = nil }
    if let op = b.openEpilogue(y), op.fuseResidual(s) {
        op.activation = activation
        guard let e = quantizer else { return y }
        return b.quantized(y, to: try e.activationGrid())
    }
    let out = b.newValue(nil)
    let add = Int8Add(name: owner.path + ".add", y, s, output: out)
    add.activation = activation
    b.appendEpilogueOp(add)
    guard let e = quantizer else { return out }
    return b.quantized(out, to: try e.activationGrid())
}

extension SqueezeExcitation: Int8Lowerable {
    /// x * hardsigmoid(fc2(relu(fc1(avgpool(x))))): fc1 and fc2 are quantized 1x1 convs on the pooled
    /// features; the scaling is a float op (the next layer's quantizer follows it).
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        b.pin(x)
        let p = b.newValue(nil)
        b.append(Int8GlobalAvgPool(name: path + ".pool", input: x, output: p))
        var h = try lowerChild(Activation(.relu), try lowerChild(fc1, p, &b), &b)
        h = try lowerChild(Activation(.hardsigmoid), try lowerChild(fc2, h, &b), &b)
        let y = b.newValue(nil)
        b.append(Int8ChannelScale(name: path + ".scale", input: x, scale: h, output: y))
        return y
    }
}

extension InvertedResidual: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        try lowerResidual({ try lowerChild(self.conv, $0, &$1) }, shortcut: nil, useResidual: useResidual, addQuantizer: addQuantizer,
                          activation: Int32(QI8_ACT_NONE), owner: self, x, &b)
    }
}

extension InvertedResidualV3: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        try lowerResidual({ try lowerChild(self.block, $0, &$1) }, shortcut: nil, useResidual: useResidual, addQuantizer: addQuantizer,
                          activation: Int32(QI8_ACT_NONE), owner: self, x, &b)
    }
}

extension BasicBlock: Int8Lowerable {
    /// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), then the add's quantizer.
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        try lowerResidual({ x, b in
            var y = try lowerChild(self.bn1, try lowerChild(self.conv1, x, &b), &b)
            y = try lowerChild(Activation(.relu), y, &b)
            return try lowerChild(self.bn2, try lowerChild(self.conv2, y, &b), &b)
        }, shortcut: downsample.map { d in { try lowerChild(d, $0, &$1) } }, useResidual: true, addQuantizer: addQuantizer,
           activation: Int32(QI8_ACT_RELU), owner: self, x, &b)
    }
}

/// features, then (with a classifier) global pooling and the classifier: `classify` in NN.
func lowerClassifier(_ features: Sequential, _ classifier: Sequential?, _ x: Int, _ b: inout Int8Builder) throws -> Int {
    let f = try lowerChild(features, x, &b)
    guard let classifier else { return f }
    return try lowerChild(classifier, pooled(f, &b, name: "classifier.pool"), &b)
}

func pooled(_ x: Int, _ b: inout Int8Builder, name: String) -> Int {
    let y = b.newValue(nil)
    b.append(Int8GlobalAvgPool(name: name, input: x, output: y))
    b.vector.insert(y)
    return y
}

extension MobileNetV1: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int { try lowerClassifier(features, classifier, x, &b) }
}
extension MobileNetV2: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int { try lowerClassifier(features, classifier, x, &b) }
}
extension MobileNetV3: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int { try lowerClassifier(features, classifier, x, &b) }
}

extension ResNet: Int8Lowerable {
    public func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        var y = try lowerChild(bn1, try lowerChild(conv1, x, &b), &b)
        y = try lowerChild(Activation(.relu), y, &b)
        if !smallInput {
            let p = b.newValue(nil)
            b.append(Int8MaxPool(name: "maxpool", input: y, output: p, kernel: 3, stride: 2, padding: 1))
            y = p
        }
        for layer in [layer1, layer2, layer3, layer4] { y = try lowerChild(layer, y, &b) }
        guard let fc else { return y }
        return try lowerChild(fc, pooled(y, &b, name: "fc.pool"), &b)
    }
}
