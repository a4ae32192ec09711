import XCTest
import Kernels
import Autodiff
import NN
@testable import Quant

/// A block Quant has never heard of, shaped like an FPN top-down merge: a lateral conv -> BN branch and
/// a second conv branch, added. It takes part in quantization only through the NN protocols.
final class TwoBranchMerge: Module, AddQuantizable, ConvBatchNormPairs {
    let lateral: Conv2d, lateralBN: BatchNorm2d
    let topDown: Conv2d
    var addQuantizer: Module?
    let hasQuantizableAdd: Bool
    var convBatchNormPairs: [(conv: Conv2d, bn: BatchNorm2d, bnPath: String)] { [(lateral, lateralBN, "lateralBN")] }

    init(_ channels: Int, merges: Bool = true, rng: inout RNG) throws {
        lateral = try Conv2d(channels, channels, kernel: 1, bias: false, rng: &rng)
        lateralBN = BatchNorm2d(channels)
        topDown = try Conv2d(channels, channels, kernel: 3, rng: &rng)
        hasQuantizableAdd = merges
        super.init()
        var r = RNG(seed: 77)
        r.fillUniform(lateralBN.weight.pointer, count: channels, low: 0.5, high: 1.5)
        r.fillUniform(lateralBN.bias.pointer, count: channels, low: -0.3, high: 0.3)
        r.fillUniform(lateralBN.runningMean.pointer, count: channels, low: -0.2, high: 0.2)
        r.fillUniform(lateralBN.runningVar.pointer, count: channels, low: 0.5, high: 2)
    }

    override func forward(_ x: Tensor) -> Tensor {
        let y = lateralBN(lateral(x)) + topDown(x)
        return addQuantizer?(y) ?? y
    }
}

/// A layer type Quant has never heard of: a per-channel gain with a weight and an input to quantize.
final class ChannelGain: Module, QuantizableLayer {
    @Param var weight: Tensor
    var weightQuantizer: Module?
    var inputQuantizer: Module?
    var quantizationChannels: (output: Int, input: Int) { (weight.count, weight.count) }

    init(_ channels: Int) {
        weight = Tensor(shape: [channels], scalars: (0..<channels).map { 0.5 + Float($0) / Float(channels) })
        super.init()
    }

    override func forward(_ x: Tensor) -> Tensor {
        let xin = inputQuantizer?(x) ?? x
        let w = weightQuantizer?(weight) ?? weight
        return xin * w.reshaped([1, weight.count, 1, 1])
    }
}

final class ProtocolTests: XCTestCase {
    func model(seed: UInt64 = 4) throws -> Sequential {
        var r = RNG(seed: seed)
        return Sequential(try Conv2d(3, 4, kernel: 3, bias: false, rng: &r), BatchNorm2d(4), Activation(.relu),
                          try TwoBranchMerge(4, rng: &r), try TwoBranchMerge(4, merges: false, rng: &r), ChannelGain(4))
    }

    func testQuantizeReachesANewBlockAndLayerThroughTheProtocols() throws {
        let m = try model()
        var plan = QuantPlan(); plan.foldBN = true
        let h = try quantize(m, plan: plan)
        XCTAssertEqual(h.quantizedLayers, ["0", "3.lateral", "3.topDown", "4.lateral", "4.topDown", "5"])
        let q = Dictionary(uniqueKeysWithValues: h.quantizers)
        let block = m[3] as! TwoBranchMerge, noAdd = m[4] as! TwoBranchMerge
        for conv in [block.lateral, block.topDown] {
            let wq = try XCTUnwrap(conv.weightQuantizer as? FakeQuantize)
            XCTAssertEqual(wq.channels, 4); XCTAssertEqual(wq.scheme.axis, 0)
            XCTAssertTrue(conv.inputQuantizer is FakeQuantize)
        }
        XCTAssertTrue(block.addQuantizer is FakeQuantize)
        XCTAssertTrue(q["3.addQuantizer"] === block.addQuantizer)
        XCTAssertNil(noAdd.addQuantizer); XCTAssertNil(q["4.addQuantizer"])
        let gain = m[5] as! ChannelGain
        XCTAssertEqual((gain.weightQuantizer as? FakeQuantize)?.channels, 4)
        XCTAssertTrue(q["5.inputQuantizer"] === gain.inputQuantizer)
        // The block's conv -> BN pair is folded by path, next to the Sequential's own pair.
        XCTAssertEqual(h.foldedBN.map(\.0), ["1", "3.lateralBN", "4.lateralBN"])
        XCTAssertTrue(block.lateral.foldedBN?.bn === block.lateralBN)
        XCTAssertTrue(block.lateralBN.isFolded)
        XCTAssertNil(block.topDown.foldedBN)
        // Quantizers sit at paths under the block (checkpoint keys `/quant/3.addQuantizer/...`).
        let params = Set(m.namedParameters().map(\.0))
        XCTAssertTrue(params.isSuperset(of: ["3.addQuantizer.scale", "3.lateral.weightQuantizer.scale", "5.weightQuantizer.scale"]))

        // A training step reaches the add quantizer and the folded BN's gamma.
        var rng = RNG(seed: 8)
        let x = Tensor.randn([2, 3, 8, 8], rng: &rng)
        m(x).square().mean().backward()
        XCTAssertNotNil((block.addQuantizer as! FakeQuantize).scale.grad)
        XCTAssertNotNil(block.lateralBN.weight.grad)
        XCTAssertNotNil(gain.weight.grad)
    }

    /// With quantization off, the folded block computes what the float block computes.
    func testFoldedNewBlockMatchesTheFloatBlock() throws {
        let plainModel = try model(), folded = try model()
        var plan = QuantPlan(); plan.foldBN = true
        let h = try quantize(folded, plan: plan)
        h.setEnabled(false)
        var rng = RNG(seed: 9)
        let x = Tensor.randn([2, 3, 8, 8], rng: &rng)
        for training in [true, false] {
            plainModel.train(training); folded.train(training)
            let a = plainModel(x).scalars, b = folded(x).scalars
            for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-4 * max(1, abs(a[i])), "training \(training) at \(i)") }
        }
    }

    func testPTQFoldsTheNewBlocksPairAndKeepsOutputs() throws {
        let m = try model()
        m.eval()
        var rng = RNG(seed: 10)
        let x = Tensor.randn([2, 3, 8, 8], rng: &rng)
        let ref = m(x).scalars
        XCTAssertEqual(PTQ.foldBatchNorms(m), ["1", "3.lateralBN", "4.lateralBN"])
        let y = m(x).scalars
        for i in ref.indices { XCTAssertEqual(y[i], ref[i], accuracy: 1e-4 * max(1, abs(ref[i]))) }
    }

    /// A ResNet inside another module folds its stem BN under its own path (a detector's `backbone.bn1`).
    func testNestedResNetFoldsUnderItsPath() throws {
        var rng = RNG(seed: 1)
        let m = Sequential(try ResNet(depths: [1, 1, 1, 1], width: 0.125, numClasses: nil, rng: &rng))
        var plan = QuantPlan(); plan.foldBN = true
        let folded = try quantize(m, plan: plan).foldedBN.map(\.0)
        XCTAssertEqual(folded.first, "0.bn1")
        XCTAssertTrue(folded.contains("0.layer1.0.bn2"))
        XCTAssertTrue(folded.contains("0.layer2.0.downsample.1"))
    }
}
