import XCTest
import Kernels
import Autodiff
import NN
import Quant
import CInt8
@testable import Int8Engine

/// The engine against the fake-quant model it is compiled from: every quantized activation's codes,
/// and the outputs.
final class Int8ModelTests: XCTestCase {
    func prepared(_ model: Module, plan: QuantPlan, inputs: [Tensor], seed: UInt64 = 1) throws -> Module {
        try preparedModel(model, plan: plan, inputs: inputs, seed: seed)
    }
    func batch(_ n: Int, _ size: Int, seed: UInt64) -> Tensor { randomBatch(n, size, seed: seed) }

    /// Compiles, runs the agreement check on a fresh batch, and compares outputs.
    @discardableResult
    func check(_ model: Module, size: Int, file: StaticString = #filePath, line: UInt = #line) throws -> Int8Comparison {
        let program = try Int8Engine.compile(model)
        let x = batch(4, size, seed: 99)
        let fake = noGrad { model(x) }
        let (y, c) = Int8Comparison.measure(program, reference: model, input: x)
        let a = c.layerwise
        // Small random models do not amplify a flipped code much: end to end stays close too.
        XCTAssertGreaterThanOrEqual(c.endToEnd.fraction, 0.99, file: file, line: line)
        XCTAssertEqual(y.shape, fake.shape, file: file, line: line)
        XCTAssertGreaterThan(a.elements, 0, file: file, line: line)
        XCTAssertTrue(a.unmatched.isEmpty, "engine codes without a fake-quant counterpart: \(a.unmatched)", file: file, line: line)
        XCTAssertGreaterThanOrEqual(a.fraction, 0.999, "agreement \(a.fraction), differences \(a.perDifference)", file: file, line: line)
        XCTAssertLessThanOrEqual(a.maxDifference, 1, "differences \(a.perDifference)", file: file, line: line)
        // Outputs: within a small share of the output range (one input code apart moves an output a little).
        let range = (fake.scalars.max()! - fake.scalars.min()!)
        let err = zip(y.scalars, fake.scalars).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(err, 0.02 * range, "max output error \(err) of range \(range)", file: file, line: line)
        return c
    }

    func testMobileNetV2W8A8CodesAgree() throws {
        var rng = RNG(seed: 3)
        let m = try MobileNetV2(width: 0.25, numClasses: 10, rng: &rng)
        try check(try prepared(m, plan: .bits(weight: 8, activation: 8), inputs: [batch(4, 64, seed: 1)]), size: 64)
    }

    func testMobileNetV2QATFoldedBatchNormW4A4() throws {
        var rng = RNG(seed: 4)
        let m = try MobileNetV2(width: 0.25, numClasses: 10, smallInput: true, rng: &rng)
        var plan = QuantPlan.bits(weight: 4, activation: 4)
        plan.foldBN = true
        try check(try prepared(m, plan: plan, inputs: [batch(4, 32, seed: 1)]), size: 32)
    }

    func testResNetWithMaxPoolDownsampleAndSignedGrids() throws {
        var rng = RNG(seed: 5)
        let m = try ResNet(width: 0.25, numClasses: 7, rng: &rng)
        var plan = QuantPlan.bits(weight: 8, activation: 8)
        plan.weight.signed = true; plan.weight.symmetric = true; plan.weight.narrow = true   // symmetric int8 weights (zero points 0)
        plan.activation.signed = true                                                        // signed activation grid (stored + 128)
        try check(try prepared(m, plan: plan, inputs: [batch(4, 64, seed: 1)]), size: 64)
    }

    func testMobileNetV1PerTensorWeights() throws {
        var rng = RNG(seed: 6)
        let m = try MobileNetV1(width: 0.25, numClasses: 5, rng: &rng)
        var plan = QuantPlan.bits(weight: 8, activation: 8)
        plan.weight.perChannel = false
        try check(try prepared(m, plan: plan, inputs: [batch(4, 64, seed: 1)]), size: 64)
    }

    func testHardswishJoinsTheConvEpilogue() throws {
        var rng = RNG(seed: 7)
        let m = Sequential(try Conv2d(3, 16, kernel: 3, stride: 2, rng: &rng), BatchNorm2d(16), Activation(.hardswish),
                           try Conv2d(16, 8, kernel: 1, rng: &rng))
        try check(try prepared(m, plan: .bits(weight: 8, activation: 8), inputs: [batch(4, 16, seed: 1)]), size: 16)
        let names = try Int8Engine.compile(m).operationNames
        XCTAssertEqual(names, ["quantize 0.inputQuantizer", "0", "3"], "BN, hardswish and the next input quantizer fuse into conv 0")
    }

    func testEveryKernelPathGivesTheSameOutputs() throws {
        var rng = RNG(seed: 8)
        let m = try prepared(try MobileNetV2(width: 0.25, numClasses: 10, rng: &rng), plan: .bits(weight: 8, activation: 8), inputs: [batch(2, 32, seed: 1)])
        let program = try Int8Engine.compile(m)
        let x = batch(2, 32, seed: 5)
        let saved = Int8Kernels.path
        defer { Int8Kernels.path = saved }
        Int8Kernels.path = Int8Kernels.portable
        let a = program.run(x).scalars
        for p in Int8Kernels.available {
            Int8Kernels.path = p
            XCTAssertEqual(program.run(x).scalars, a, Int8Kernels.name(p))
        }
    }

    func testUnquantizedModelIsRefusedWithThePath() throws {
        var rng = RNG(seed: 9)
        let m = try MobileNetV2(width: 0.25, numClasses: 10, rng: &rng)
        XCTAssertThrowsError(try Int8Engine.compile(m)) { e in
            XCTAssertTrue("\(e)".contains("'features.0.0'") && "\(e)".contains("no input quantizer"), "\(e)")
        }
    }

    func testMobileNetV3SqueezeExcitationAndHardswish() throws {
        for size in [MobileNetV3.Size.small, .large] {
            var rng = RNG(seed: 10)
            let m = try prepared(try MobileNetV3(size, width: 0.5, numClasses: 10, rng: &rng), plan: .bits(weight: 8, activation: 8),
                                 inputs: [batch(4, 64, seed: 1)])
            try check(m, size: 64)
            XCTAssertTrue(try Int8Engine.compile(m).operationNames.contains { $0.hasSuffix(".scale") }, "squeeze-excitation scaling")
        }
    }

    func testGroupedConvolutionIsNamedAsUnsupported() throws {
        var rng = RNG(seed: 14)
        let m = Sequential(try Conv2d(3, 8, kernel: 3, rng: &rng), try Conv2d(8, 8, kernel: 3, groups: 2, rng: &rng))
        _ = try prepared(m, plan: .bits(weight: 8, activation: 8), inputs: [batch(2, 16, seed: 1)])
        XCTAssertThrowsError(try Int8Engine.compile(m)) { e in
            XCTAssertTrue("\(e)".contains("'1'") && "\(e)".contains("grouped convolution"), "\(e)")
        }
    }

    func testUninitialisedQuantizerIsRefused() throws {
        var rng = RNG(seed: 11)
        let m = try MobileNetV2(width: 0.25, numClasses: 10, rng: &rng)
        try quantize(m, plan: .bits(weight: 8, activation: 8))
        m.eval()
        XCTAssertThrowsError(try Int8Engine.compile(m)) { e in XCTAssertTrue("\(e)".contains("not initialised"), "\(e)") }
    }
}

/// A residual block whose branch ends in an activation: the add cannot join the conv's epilogue, so the
/// engine runs its own add op (the other residual blocks fuse it).
final class ActivatedResidual: Module, AddQuantizable, Int8Lowerable {
    let block: Sequential
    var addQuantizer: Module?
    var hasQuantizableAdd: Bool { true }
    init(_ c: Int, rng: inout RNG) throws {
        block = Sequential(try Conv2d(c, c, kernel: 3, rng: &rng), BatchNorm2d(c), Activation(.relu6))
        super.init()
    }
    override func forward(_ x: Tensor) -> Tensor {
        let y = x + block(x)
        return addQuantizer?(y) ?? y
    }
    func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int {
        try lowerResidual({ try lowerChild(self.block, $0, &$1) }, shortcut: nil, useResidual: true, addQuantizer: addQuantizer,
                          activation: Int32(QI8_ACT_NONE), owner: self, x, &b)
    }
}

extension Int8ModelTests {
    func testUnfusedResidualAddRunsItsOwnOp() throws {
        var rng = RNG(seed: 12)
        let m = Sequential(try Conv2d(3, 8, kernel: 3, rng: &rng), BatchNorm2d(8), try ActivatedResidual(8, rng: &rng), try Conv2d(8, 4, kernel: 1, rng: &rng))
        try check(try prepared(m, plan: .bits(weight: 8, activation: 8), inputs: [batch(4, 16, seed: 1)]), size: 16)
        XCTAssertTrue(try Int8Engine.compile(m).operationNames.contains("2.add"))
    }

    func testResidualAddsJoinTheProjectionEpilogue() throws {
        var rng = RNG(seed: 13)
        let m = try prepared(try MobileNetV2(width: 0.25, numClasses: 10, rng: &rng), plan: .bits(weight: 8, activation: 8), inputs: [batch(2, 32, seed: 1)])
        XCTAssertFalse(try Int8Engine.compile(m).operationNames.contains { $0.hasSuffix(".add") })
    }
}
