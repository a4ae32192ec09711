import NN

// Channel flow (structured pruning) through the FPN and RetinaNet, as `ChannelFlow` in NN says.

extension FPN {
    /// The lateral convs read C3-C5; the top-down adds join their outputs into one group; the output
    /// convs (and P6/P7) feed heads shared by every level, so their outputs are one group too, which
    /// this returns.
    public func channelFlow(features c: [ChannelGroupID], _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        guard c.count == 3 else { throw ChannelFlowError(path: path, "needs the C3, C4 and C5 groups, got \(c.count)") }
        var inner = try graph.flow(lateral[2], c[2])
        for i in stride(from: 1, through: 0, by: -1) {
            inner = try graph.merge(try graph.flow(lateral[i], c[i]), inner, at: merges[i].path)
        }
        var out = try graph.flow(output[2], inner)
        for i in 0..<2 { out = try graph.merge(out, try graph.flow(output[i], inner), at: path) }
        if let p6 {
            let q6 = try graph.flow(p6, out)
            out = try graph.merge(out, q6, at: p6.path)
            if let p7 { out = try graph.merge(out, try graph.flow(p7, out), at: p7.path) }
        }
        return out
    }
}

extension RetinaHeadBranch: ChannelFlow {
    /// The tower's convs each make a group; the predictor's outputs (anchors x outputs) end the flow.
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        try graph.flow(predictor, try graph.flow(tower, input))
    }
}

extension RetinaNet: ChannelFlow {
    /// Backbone C3-C5, the FPN, then both heads on the pyramid's group; the heads' outputs (class
    /// logits, box deltas) are protected.
    public func channelFlow(_ input: ChannelGroupID, _ graph: ChannelGraphBuilder) throws -> ChannelGroupID {
        guard let b = backbone as? any FeatureChannelFlow else {
            throw ChannelFlowError(path: backbone.path, "\(type(of: backbone)) does not declare the channel flow of its C3-C5 maps (FeatureChannelFlow)")
        }
        let pyramid = try fpn.channelFlow(features: try b.featureChannelFlow(input, graph), graph)
        let logits = try graph.flow(classificationHead, pyramid)
        graph.protect(logits, because: "the class logits")
        let boxes = try graph.flow(regressionHead, pyramid)
        graph.protect(boxes, because: "the box regression")
        return logits
    }
}
