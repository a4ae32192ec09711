import XCTest
import Kernels
import Autodiff
import NN
@testable import Prune

final class PrunerTests: XCTestCase {
    /// Removing channels is exact on every backbone: the pruned model's outputs equal the masked
    /// original's (`Pruner.mask`: the removed channels' filters, biases and BatchNorm outputs zeroed),
    /// for a uniform plan and for a random per-group plan, under every criterion.
    func testPrunedModelsComputeWhatTheMaskedOriginalsCompute() throws {
        let cases: [(String, PruneCriterion, Bool)] = [("mobilenet_v1", .l1, false), ("mobilenet_v2", .fpgm, true), ("mobilenet_v2", .l2, false),
                                                       ("mobilenet_v3_small", .l0, false), ("mobilenet_v3_large", .bn, false), ("resnet18", .l1, true)]
        for (name, criterion, small) in cases {
            let pruned = try randomModel(name, smallInput: small), masked = try randomModel(name, smallInput: small)
            let groups = try ChannelGraph.groups(of: pruned)
            var r = RNG(seed: 7)
            var plan = Pruner.uniform(groups, ratio: 0.4)
            if name == "mobilenet_v2" { plan = plan.map { ($0.0, Double(r.nextInt(below: 80)) / 100) } }
            if criterion == .bn { plan = plan.filter { n, _ in groups.first { $0.name == n }!.slices.contains { $0.layer.channelScale != nil } } }
            let decisions = try Pruner.decide(groups, ratios: plan, criterion: criterion)
            XCTAssertTrue(decisions.contains { $0.kept.count < $0.before }, name)
            try Pruner.apply(decisions, to: groups)
            try Pruner.mask(decisions, in: try ChannelGraph.groups(of: masked))
            let before = masked.parameterCount, after = pruned.parameterCount
            XCTAssertLessThan(Double(after), 0.9 * Double(before), "\(name): \(before) -> \(after) parameters")
            var rng = RNG(seed: 11)
            let x = Tensor.randn([2, 3, 32, 32], rng: &rng)
            let a = noGrad { pruned(x) }.scalars, b = noGrad { masked(x) }.scalars
            let scale = b.map { abs($0) }.max()!
            XCTAssertGreaterThan(scale, 0)
            for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-4 * scale, "\(name) \(criterion) output \(i)") }
            // The pruned model trains: forward and backward in training mode.
            pruned.train()
            pruned(x).square().mean().backward()
            XCTAssertTrue(pruned.parameters().allSatisfy { $0.grad != nil }, name)
        }
    }

    /// A pruned model's shapes come back from the channel counts alone (`resize`, what a recipe's
    /// `model.channels` does before the checkpoint loads).
    func testResizeRebuildsThePrunedShapes() throws {
        let pruned = try randomModel("mobilenet_v2"), rebuilt = try randomModel("mobilenet_v2", seed: 9)
        let groups = try ChannelGraph.groups(of: pruned)
        let decisions = try Pruner.decide(groups, ratios: Pruner.uniform(groups, ratio: 0.5), criterion: .l1)
        try Pruner.apply(decisions, to: groups)
        try Pruner.resize(rebuilt, channels: decisions.map { ($0.group, $0.kept.count) })
        XCTAssertEqual(pruned.namedParameters().map(\.1.shape), rebuilt.namedParameters().map(\.1.shape))
        XCTAssertEqual(pruned.namedBuffers().map(\.1.shape), rebuilt.namedBuffers().map(\.1.shape))
        XCTAssertEqual(pruned.namedParameters().map(\.0), rebuilt.namedParameters().map(\.0))
        // The groups of the pruned model keep their names.
        XCTAssertEqual(try ChannelGraph.groups(of: pruned).map(\.name), groups.map(\.name))
        XCTAssertThrowsError(try Pruner.resize(rebuilt, channels: [("features.2.conv.0.0", 0)])) { e in
            XCTAssertTrue("\(e)".contains("model.channels") && "\(e)".contains("features.2.conv.0.0") && "\(e)".contains("1..."), "\(e)")
        }
    }

    func testCriteria() throws {
        // Three filters of four weights.
        let w = Tensor(shape: [3, 4], scalars: [1, -2, 0, 0.01, 0.5, 0.5, 0.5, 0.5, -3, 0, 0, 1])
        XCTAssertEqual(Importance.layerScores(w, .l1), [3.01, 2, 4].map { Double(Float($0)) }, accuracy: 1e-6)
        XCTAssertEqual(Importance.layerScores(w, .l2)[2], (10.0).squareRoot(), accuracy: 1e-6)
        // L0 at 5% of the largest |w| (0.15): 0.01 does not count.
        XCTAssertEqual(Importance.layerScores(w, .l0), [2, 4, 2])
        // FPGM against a brute-force sum of distances.
        var rng = RNG(seed: 4)
        let f = Tensor.randn([7, 3, 3, 3], rng: &rng)
        let got = Importance.layerScores(f, .fpgm), v = f.scalars
        for i in 0..<7 {
            var s = 0.0
            for j in 0..<7 { s += (0..<27).reduce(0.0) { let e = Double(v[i * 27 + $1] - v[j * 27 + $1]); return $0 + e * e }.squareRoot() }
            XCTAssertEqual(got[i], s, accuracy: 1e-6 * s)
        }
        // The lowest scores go; ties remove the later channel; a ratio below 1 keeps at least one.
        XCTAssertEqual(Pruner.kept(scores: [3, 1, 2, 1], ratio: 0.5), [0, 2])
        XCTAssertEqual(Pruner.kept(scores: [3, 1, 1, 1], ratio: 0.5), [0, 1])
        XCTAssertEqual(Pruner.kept(scores: [3, 1, 2], ratio: 0.99), [0])
        XCTAssertEqual(Pruner.kept(scores: [1], ratio: 0.9), [0])
        // round_to: kept widths rounded to the nearest multiple, at least one multiple, at most every channel.
        XCTAssertEqual(Pruner.keptCount(20, ratio: 0.3, roundTo: 8), 16)
        XCTAssertEqual(Pruner.keptCount(100, ratio: 0.32, roundTo: 8), 72)
        XCTAssertEqual(Pruner.keptCount(5, ratio: 0.5, roundTo: 8), 5)
        XCTAssertEqual(Pruner.keptCount(40, ratio: 0.9, roundTo: 8), 8)
        XCTAssertEqual(Pruner.kept(scores: (0..<20).map(Double.init), ratio: 0.3, roundTo: 8), Array(4..<20))
    }

    func testBadPlansNameTheGroup() throws {
        let m = try randomModel("mobilenet_v2")
        let groups = try ChannelGraph.groups(of: m)
        XCTAssertThrowsError(try Pruner.decide(groups, ratios: [("features.2.conv.0", 0.5)], criterion: .l1)) { e in
            XCTAssertTrue("\(e)".contains("no channel group 'features.2.conv.0'") && "\(e)".contains("closest: 'features.2.conv."), "\(e)")
        }
        XCTAssertThrowsError(try Pruner.decide(groups, ratios: [("classifier.1", 0.5)], criterion: .l1)) { e in
            XCTAssertTrue("\(e)".contains("the model output"), "\(e)")
        }
        XCTAssertThrowsError(try Pruner.decide(groups, ratios: [("features.2.conv.0.0", 1)], criterion: .l1)) { e in
            XCTAssertTrue("\(e)".contains("outside [0, 1)"), "\(e)")
        }
        XCTAssertThrowsError(try Pruner.decide(groups, ratios: [("features.2.conv.0.0", -0.1)], criterion: .l1))
        XCTAssertThrowsError(try Pruner.decide(groups, ratios: [("classifier.0", 0.5)], criterion: .l1))
        // The classifier-facing group has no BatchNorm after classifier... the bn criterion needs one.
        let mv3 = try randomModel("mobilenet_v3_small")
        XCTAssertThrowsError(try Pruner.decide(try ChannelGraph.groups(of: mv3), ratios: [("classifier.0", 0.5)], criterion: .bn)) { e in
            XCTAssertTrue("\(e)".contains("classifier.0") && "\(e)".contains("no BatchNorm"), "\(e)")
        }
    }
}

func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
