import XCTest
import Kernels
import Autodiff
import NN
import Prune
@testable import Detection

/// Structured pruning reaches RetinaNet through `ChannelFlow` (backbone C3-C5, FPN, heads).
final class DetectorPruningTests: XCTestCase {
    func detector(_ backbone: String, seed: UInt64 = 5) throws -> RetinaNet {
        var rng = RNG(seed: seed)
        let b = try Backbones.make(backbone, width: 0.35, numClasses: nil, rng: &rng)
        var c = RetinaNetConfig(numClasses: 3)
        c.fpnChannels = 16; c.headConvs = 2; c.levels = [3, 4, 5, 6, 7]
        let d = try RetinaNet(backbone: b, config: c, rng: &rng)
        var r = RNG(seed: seed + 1)
        for (_, m) in d.namedModules() {
            if let bn = m as? BatchNorm2d {
                let n = bn.weight.count
                r.fillUniform(bn.weight.pointer, count: n, low: 0.5, high: 1.5); r.fillUniform(bn.bias.pointer, count: n, low: -0.3, high: 0.3)
                r.fillUniform(bn.runningMean.pointer, count: n, low: -0.2, high: 0.2); r.fillUniform(bn.runningVar.pointer, count: n, low: 0.5, high: 2)
            } else if let conv = m as? Conv2d, let bias = conv.bias {
                r.fillUniform(bias.pointer, count: bias.count, low: -0.1, high: 0.1)   // nonzero biases: masking must zero them
            }
        }
        d.eval()
        return d
    }

    func testRetinaNetGroups() throws {
        let groups = try ChannelGraph.groups(of: try detector("mobilenet_v2"))
        func group(_ name: String) throws -> ChannelGroup { try XCTUnwrap(groups.first { $0.name == name }, name) }
        // The laterals' outputs meet in the top-down adds: one group, read by every output conv.
        let merged = try group("fpn.lateral.2")
        XCTAssertEqual(Set(merged.slices.map { "\($0.layer.path):\($0.role.rawValue)" }),
                       Set(["fpn.lateral.0:output", "fpn.lateral.1:output", "fpn.lateral.2:output",
                            "fpn.output.0:input", "fpn.output.1:input", "fpn.output.2:input"]))
        // The pyramid's outputs (P3-P7) feed both heads, shared by every level.
        let pyramid = try group("fpn.output.2")
        for s in ["fpn.output.0:output", "fpn.p6:input", "fpn.p6:output", "fpn.p7:input", "fpn.p7:output",
                  "classificationHead.tower.0:input", "regressionHead.tower.0:input"] {
            XCTAssertTrue(pyramid.slices.contains { "\($0.layer.path):\($0.role.rawValue)" == s }, s)
        }
        // C5 (the backbone's last conv) is read by the last lateral; the heads' outputs are protected.
        XCTAssertTrue(try group("backbone.features.18.0").slices.contains { $0.layer.path == "fpn.lateral.2" && $0.role == .input })
        XCTAssertEqual(try group("classificationHead.predictor").protectedBecause, "the class logits")
        XCTAssertEqual(try group("regressionHead.predictor").protectedBecause, "the box regression")
        XCTAssertEqual(try group("classificationHead.tower.0").slices.count, 2)
    }

    /// Removing channels from a detector is exact: its dense outputs equal those of the original with
    /// the removed channels' filters, biases and BatchNorm outputs zeroed.
    func testPrunedDetectorsComputeWhatTheMaskedOriginalsCompute() throws {
        for backbone in ["mobilenet_v2", "resnet18", "mobilenet_v3_small"] {
            let pruned = try detector(backbone), masked = try detector(backbone)
            let groups = try ChannelGraph.groups(of: pruned)
            let decisions = try Pruner.decide(groups, ratios: Pruner.uniform(groups, ratio: 0.4), criterion: .l1)
            try Pruner.apply(decisions, to: groups)
            try Pruner.mask(decisions, in: try ChannelGraph.groups(of: masked))
            XCTAssertLessThan(Double(pruned.parameterCount), 0.75 * Double(masked.parameterCount), backbone)
            var rng = RNG(seed: 3)
            let x = Tensor.randn([1, 3, 64, 64], rng: &rng)
            let a = noGrad { pruned(x) }.scalars, b = noGrad { masked(x) }.scalars
            XCTAssertEqual(a.count, b.count)
            let scale = b.map { abs($0) }.max()!
            for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-4 * scale, "\(backbone) output \(i)") }
        }
    }
}
