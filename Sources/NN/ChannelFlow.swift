import Kernels
import Autodiff

// How structured pruning reaches layers and blocks without naming them (as `Quantizable.swift` does for
// quantization): a layer whose tensors carry channels conforms to `ChannelSliceable`; every module
// says how channels flow through it (`ChannelFlow`), so the channel groups that must be pruned
// together (a producer's filters, its BatchNorm, the depthwise conv after it, the inputs of its
// consumers, every branch meeting in a residual add) come from the modules themselves. A new block is
// pruned by conforming here, with no code in Prune that knows its type.

/// Where a group's channels sit in a layer.
public enum ChannelRole: String, Sendable {
    /// The layer's output channels (a conv's or linear's filters, a BatchNorm's channels).
    case output
    /// The layer's input channels (a dense conv's or linear's weight columns).
    case input
    /// A depthwise conv: each output channel is computed from the same input channel alone.
    case depthwise
}

/// A layer whose weights and statistics can lose channels.
public protocol ChannelSliceable: Module {
    /// Channels along `role`.
    func channelCount(_ role: ChannelRole) -> Int
    /// Keeps only `indices` (ascending, distinct, in range) along `role`: weights, biases and
    /// statistics shrink, and the layer's channel counts follow.
    func keepChannels(_ indices: [Int], _ role: ChannelRole) throws
    /// Sets output channels `indices` to carry zeros where the layer makes them (a conv's or linear's
    /// filters and biases; a BatchNorm's gamma and beta): the masked form of removing them.
    func zeroOutputChannels(_ indices: [Int])
    /// Filter weights, one row per output channel ([out, ...]); nil for layers without filters.
    var filterWeights: Tensor? { get }
    /// Per-channel scale of a normalisation (a BatchNorm's gamma); nil for other layers.
    var channelScale: Tensor? { get }
}

extension ChannelSliceable {
    public var filterWeights: Tensor? { nil }
    public var channelScale: Tensor? { nil }
}

/// A group's channels in one layer.
public struct ChannelSlice {
    public let layer: any ChannelSliceable
    public let role: ChannelRole
    /// The slice's filters count toward the group's importance (a producing conv's or linear's
    /// filters; not a depthwise conv's, a squeeze-excitation gate's or a consumer's).
    public let scored: Bool
    public init(_ layer: any ChannelSliceable, _ role: ChannelRole, scored: Bool = false) {
        self.layer = layer; self.role = role; self.scored = scored
    }
}

/// How channels flow through a module: given the group of its input's channels, it adds its layers'
/// slices to groups and returns the group of its output's channels.
public protocol ChannelFlow: Module {
    func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID
}

public struct ChannelGroupID: Hashable, Sendable { public let raw: Int }

public struct ChannelFlowError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "'\(path.isEmpty ? "<model>" : path)': \(message)" }
}

/// Channels that are pruned together: every slice holds the same channels in the same order.
public struct ChannelGroup {
    /// The path of the group's first scored layer (else "<first layer's path>:<role>", e.g. the network
    /// input's "features.0.0:input"): a stable name for plans and recipes.
    public let name: String
    public let channels: Int
    public let slices: [ChannelSlice]
    /// Why the group cannot be pruned (the network's input, the model's output); nil when it can.
    public let protectedBecause: String?
    public var isPrunable: Bool { protectedBecause == nil }
    /// Some layer of the group has a per-channel scale (a BatchNorm): the bn criterion can score it.
    public var hasChannelScale: Bool { slices.contains { $0.layer.channelScale != nil } }
    public var scoredSlices: [ChannelSlice] { slices.filter(\.scored) }
}

/// Union-find over channel groups, filled by the modules' `channelFlow`.
public final class ChannelGraphBuilder {
    var parent: [Int] = []
    var counts: [Int?] = []
    var slices: [[ChannelSlice]] = []
    var protected: [Int: String] = [:]
    var order: [Int] = []

    public init() {}

    func root(_ g: Int) -> Int {
        var g = g
        while parent[g] != g { parent[g] = parent[parent[g]]; g = parent[g] }
        return g
    }

    /// A new group (`channels` nil: set by the first slice added).
    public func newGroup(channels: Int?) -> ChannelGroupID {
        let id = parent.count
        parent.append(id); counts.append(channels); slices.append([])
        return ChannelGroupID(raw: id)
    }

    /// Adds a layer's slice to a group; its channel count must be the group's.
    public func add(_ slice: ChannelSlice, to g: ChannelGroupID) throws {
        let r = root(g.raw), n = slice.layer.channelCount(slice.role)
        if let c = counts[r], c != n {
            throw ChannelFlowError(path: slice.layer.path, "has \(n) \(slice.role.rawValue) channels where its group carries \(c)")
        }
        counts[r] = n
        slices[r].append(slice)
    }

    /// One group from two (a residual add's branches): their channels are pruned together.
    @discardableResult
    public func merge(_ a: ChannelGroupID, _ b: ChannelGroupID, at path: String) throws -> ChannelGroupID {
        let (ra, rb) = (root(a.raw), root(b.raw))
        guard ra != rb else { return ChannelGroupID(raw: ra) }
        if let x = counts[ra], let y = counts[rb], x != y {
            throw ChannelFlowError(path: path, "adds \(x) channels to \(y)")
        }
        let (keep, gone) = ra < rb ? (ra, rb) : (rb, ra)
        parent[gone] = keep
        counts[keep] = counts[keep] ?? counts[gone]
        slices[keep] += slices[gone]; slices[gone] = []
        if let why = protected.removeValue(forKey: gone) { protected[keep] = protected[keep] ?? why }
        return ChannelGroupID(raw: keep)
    }

    public func protect(_ g: ChannelGroupID, because reason: String) {
        let r = root(g.raw)
        if protected[r] == nil { protected[r] = reason }
    }

    /// The flow through a child module; a module that does not declare one is an error naming it.
    public func flow(_ m: Module, _ input: ChannelGroupID) throws -> ChannelGroupID {
        guard let f = m as? ChannelFlow else {
            throw ChannelFlowError(path: m.path, "\(type(of: m)) does not declare how channels flow through it (ChannelFlow), so it cannot be pruned")
        }
        return try f.channelFlow(input, self)
    }

    /// The groups, in the order their first slice was added, merged groups once.
    public func groups() -> [ChannelGroup] {
        var seen = Set<Int>(), out: [ChannelGroup] = []
        for g in parent.indices {
            let r = root(g)
            guard seen.insert(r).inserted, !slices[r].isEmpty else { continue }
            let s = slices[r]
            let name = s.first(where: \.scored)?.layer.path ?? "\(s[0].layer.path):\(s[0].role.rawValue)"
            out.append(ChannelGroup(name: name, channels: counts[r] ?? 0, slices: s, protectedBecause: protected[r]))
        }
        return out
    }
}

/// The channel groups of a model (paths assigned): the network input's group and the model output's
/// group are protected.
public enum ChannelGraph {
    public static func groups(of model: Module) throws -> [ChannelGroup] {
        model.assignPaths()
        let b = ChannelGraphBuilder()
        let input = b.newGroup(channels: nil)
        b.protect(input, because: "the network input")
        let output = try b.flow(model, input)
        b.protect(output, because: "the model output")
        return b.groups()
    }
}

// MARK: slicing helpers

/// `t` with only `indices` kept along `axis`: a new tensor that requires gradients when `t` does
/// (gradients and optimizer state do not carry).
func keeping(_ t: Tensor, axis: Int, _ indices: [Int]) -> Tensor {
    var shape = t.shape
    let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *), n = shape[axis]
    shape[axis] = indices.count
    let out = Tensor.zeros(shape)
    out.requiresGrad = t.requiresGrad
    let src = t.pointer, dst = out.pointer
    for o in 0..<outer {
        for (j, i) in indices.enumerated() {
            (dst + (o * indices.count + j) * inner).update(from: src + (o * n + i) * inner, count: inner)
        }
    }
    return out
}

/// Zeroes rows `indices` (along axis 0) of each tensor.
func zeroRows(_ tensors: [Tensor?], _ indices: [Int]) {
    for case let t? in tensors {
        let per = t.count / t.shape[0]
        for i in indices { (t.pointer + i * per).update(repeating: 0, count: per) }
    }
}

func checkIndices(_ indices: [Int], count: Int, _ layer: Module, _ role: ChannelRole) throws {
    guard !indices.isEmpty else { throw ChannelFlowError(path: layer.path, "would lose all \(count) \(role.rawValue) channels") }
    for (k, i) in indices.enumerated() where i < 0 || i >= count || (k > 0 && indices[k - 1] >= i) {
        throw ChannelFlowError(path: layer.path, "channel indices must be ascending, distinct and in 0..<\(count) (got \(i) at position \(k))")
    }
}

func checkUnquantized(_ layer: QuantizableLayer) throws {
    guard layer.weightQuantizer == nil && layer.inputQuantizer == nil else {
        throw ChannelFlowError(path: layer.path, "is quantized: prune the float model, then quantize the pruned one")
    }
}

// MARK: layers

extension Conv2d: ChannelSliceable, ChannelFlow {
    public func channelCount(_ role: ChannelRole) -> Int { role == .input ? inChannels : outChannels }

    public func keepChannels(_ indices: [Int], _ role: ChannelRole) throws {
        try checkUnquantized(self)
        guard foldedBN == nil else { throw ChannelFlowError(path: path, "folds a BatchNorm (QAT): prune the float model") }
        try checkIndices(indices, count: channelCount(role), self, role)
        switch role {
        case .output, .depthwise:
            guard role == .depthwise ? isDepthwise : groups == 1 else {
                throw ChannelFlowError(path: path, "a conv with \(groups) groups cannot lose \(role.rawValue) channels alone")
            }
            weight = keeping(weight, axis: 0, indices)
            if let b = bias { bias = keeping(b, axis: 0, indices) }
            outChannels = indices.count
            if role == .depthwise { inChannels = indices.count; groups = indices.count }
        case .input:
            guard groups == 1 else { throw ChannelFlowError(path: path, "a conv with \(groups) groups cannot lose input channels alone") }
            weight = keeping(weight, axis: 1, indices)
            inChannels = indices.count
        }
    }

    public var filterWeights: Tensor? { weight }
    public func zeroOutputChannels(_ indices: [Int]) { zeroRows([weight, bias], indices) }

    /// A dense conv consumes its input's group and produces a new one; a depthwise conv keeps its
    /// input's channels (same group). Other grouped convs are not supported.
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        if isDepthwise {
            try graph.add(ChannelSlice(self, .depthwise), to: input)
            return input
        }
        guard groups == 1 else { throw ChannelFlowError(path: path, "grouped convs (\(groups) groups) cannot be pruned yet") }
        try graph.add(ChannelSlice(self, .input), to: input)
        let out = graph.newGroup(channels: outChannels)
        try graph.add(ChannelSlice(self, .output, scored: true), to: out)
        return out
    }
}

extension Linear: ChannelSliceable, ChannelFlow {
    public func channelCount(_ role: ChannelRole) -> Int { role == .input ? inFeatures : outFeatures }

    public func keepChannels(_ indices: [Int], _ role: ChannelRole) throws {
        try checkUnquantized(self)
        try checkIndices(indices, count: channelCount(role), self, role)
        switch role {
        case .output:
            weight = keeping(weight, axis: 0, indices)
            if let b = bias { bias = keeping(b, axis: 0, indices) }
            outFeatures = indices.count
        case .input:
            weight = keeping(weight, axis: 1, indices)
            inFeatures = indices.count
        case .depthwise: throw ChannelFlowError(path: path, "a linear layer has no depthwise channels")
        }
    }

    public var filterWeights: Tensor? { weight }
    public func zeroOutputChannels(_ indices: [Int]) { zeroRows([weight, bias], indices) }

    /// Features after global pooling are the channels before it, one to one.
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        try graph.add(ChannelSlice(self, .input), to: input)
        let out = graph.newGroup(channels: outFeatures)
        try graph.add(ChannelSlice(self, .output, scored: true), to: out)
        return out
    }
}

extension BatchNorm2d: ChannelSliceable, ChannelFlow {
    public func channelCount(_ role: ChannelRole) -> Int { weight.count }

    public func keepChannels(_ indices: [Int], _ role: ChannelRole) throws {
        guard !isFolded else { throw ChannelFlowError(path: path, "is folded into its conv: prune the float model") }
        try checkIndices(indices, count: weight.count, self, role)
        weight = keeping(weight, axis: 0, indices); bias = keeping(bias, axis: 0, indices)
        runningMean = keeping(runningMean, axis: 0, indices); runningVar = keeping(runningVar, axis: 0, indices)
    }

    public var channelScale: Tensor? { weight }
    public func zeroOutputChannels(_ indices: [Int]) { zeroRows([weight, bias], indices) }

    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        try graph.add(ChannelSlice(self, .output), to: input)
        return input
    }
}

/// Channel-wise layers: the output's channels are the input's.
extension Activation: ChannelFlow {
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID { input }
}
extension Dropout: ChannelFlow {
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID { input }
}
extension Identity: ChannelFlow {
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID { input }
}

extension Sequential: ChannelFlow {
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        try layers.reduce(input) { g, m in try graph.flow(m, g) }
    }
}

// MARK: blocks and backbones

extension InvertedResidual: ChannelFlow {
    /// The residual add joins the block's input and output channels into one group.
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        let out = try graph.flow(conv, input)
        return useResidual ? try graph.merge(input, out, at: path) : out
    }
}

extension InvertedResidualV3: ChannelFlow {
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        let out = try graph.flow(block, input)
        return useResidual ? try graph.merge(input, out, at: path) : out
    }
}

extension SqueezeExcitation: ChannelFlow {
    /// fc1 reads the block's channels and squeezes them to its own group; fc2's outputs gate the same
    /// channels (its filters are not scored: a gate says little about a channel's use).
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        let squeezed = try graph.flow(fc1, input)
        try graph.add(ChannelSlice(fc2, .input), to: squeezed)
        try graph.add(ChannelSlice(fc2, .output), to: input)
        return input
    }
}

extension BasicBlock: ChannelFlow {
    /// conv1's outputs are the block's own group; conv2's, the shortcut's (downsample or identity) and
    /// the block's output are one group.
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        let h = try graph.flow(bn1, try graph.flow(conv1, input))
        let y = try graph.flow(bn2, try graph.flow(conv2, h))
        let shortcut = try downsample.map { try graph.flow($0, input) } ?? input
        return try graph.merge(y, shortcut, at: path)
    }
}

/// A backbone that is a `features` stack (C3-C5 at `ends`) and an optional classifier: the MobileNets.
public protocol FeatureStackBackbone: Backbone {
    var features: Sequential { get }
    var classifier: Sequential? { get }
    var ends: [Int] { get }
}

extension FeatureStackBackbone {
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        let f = try graph.flow(features, input)
        return try classifier.map { try graph.flow($0, f) } ?? f
    }

    public func featureChannelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> [ChannelGroupID] {
        guard let last = ends.last else { throw ChannelFlowError(path: path, "a small-input backbone has no C3-C5 feature maps") }
        var g = input, out: [ChannelGroupID] = []
        for (i, layer) in features.layers.enumerated() where i <= last {
            g = try graph.flow(layer, g)
            if ends.contains(i) { out.append(g) }
        }
        return out
    }
}

extension MobileNetV1: FeatureStackBackbone, ChannelFlow, FeatureChannelFlow {}
extension MobileNetV2: FeatureStackBackbone, ChannelFlow, FeatureChannelFlow {}
extension MobileNetV3: FeatureStackBackbone, ChannelFlow, FeatureChannelFlow {}

extension ResNet: ChannelFlow {
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        var g = try graph.flow(bn1, try graph.flow(conv1, input))
        for stage in [layer1, layer2, layer3, layer4] { g = try graph.flow(stage, g) }
        return try fc.map { try graph.flow($0, g) } ?? g
    }
}

// MARK: backbones as detector feature extractors

/// A backbone whose C3, C4 and C5 maps' channel groups can be traced (a detector's FPN reads them).
public protocol FeatureChannelFlow: Backbone {
    /// The groups of the C3, C4 and C5 maps, given the input's group.
    func featureChannelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> [ChannelGroupID]
}

extension ResNet: FeatureChannelFlow {
    public func featureChannelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> [ChannelGroupID] {
        guard !smallInput else { throw ChannelFlowError(path: path, "a small-input backbone has no C3-C5 feature maps") }
        let stem = try graph.flow(bn1, try graph.flow(conv1, input))
        let c3 = try graph.flow(layer2, try graph.flow(layer1, stem))
        let c4 = try graph.flow(layer3, c3)
        return [c3, c4, try graph.flow(layer4, c4)]
    }
}
