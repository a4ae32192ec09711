import XCTest
import Kernels
import Autodiff
@testable import NN

final class BackboneTests: XCTestCase {
    /// torchvision's published parameter counts (1000-class heads, width 1.0).
    func testParameterCountsMatchTorchvision() throws {
        var rng = RNG(seed: 0)
        XCTAssertEqual(try MobileNetV2(numClasses: 1000, rng: &rng).parameterCount, 3_504_872)
        XCTAssertEqual(try ResNet(numClasses: 1000, rng: &rng).parameterCount, 11_689_512)
        XCTAssertEqual(try MobileNetV3(.large, numClasses: 1000, rng: &rng).parameterCount, 5_483_032)
        XCTAssertEqual(try MobileNetV3(.small, numClasses: 1000, rng: &rng).parameterCount, 2_542_856)
    }

    /// MobileNetV1 has no torchvision model; Keras' MobileNet 1.0 (224) reports 4,253,864 parameters,
    /// counting 4 values per BatchNorm channel (moving mean/var too) and a 1x1-conv head with bias,
    /// which holds as many values as our Linear head.
    func testMobileNetV1MatchesKerasCount() throws {
        var rng = RNG(seed: 0)
        let m = try MobileNetV1(numClasses: 1000, rng: &rng)
        let bnChannels = m.namedModules().compactMap { $0.1 as? BatchNorm2d }.reduce(0) { $0 + $1.weight.count }
        XCTAssertEqual(m.parameterCount + 2 * bnChannels, 4_253_864)
    }

    func testTorchvisionPathsAndBuffers() throws {
        var rng = RNG(seed: 0)
        let m = try MobileNetV2(width: 0.5, numClasses: 10, rng: &rng)
        let names = Set(m.namedParameters().map(\.0))
        for p in ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias", "features.1.conv.0.0.weight",
                  "features.1.conv.1.weight", "features.2.conv.0.0.weight", "features.2.conv.1.0.weight",
                  "features.2.conv.2.weight", "features.2.conv.3.bias", "features.18.0.weight", "classifier.1.weight", "classifier.1.bias"] {
            XCTAssertTrue(names.contains(p), "missing \(p)")
        }
        let buffers = Set(m.namedBuffers().map(\.0))
        XCTAssertTrue(buffers.contains("features.0.1.runningMean") && buffers.contains("features.0.1.runningVar"), "\(buffers.sorted().prefix(4))")
        let v3 = try MobileNetV3(.small, numClasses: nil, rng: &rng)
        let v3names = Set(v3.namedParameters().map(\.0))
        XCTAssertTrue(v3names.contains("features.1.block.1.fc1.weight"), "\(v3names.sorted().prefix(12))")
        let r = try ResNet(numClasses: 10, rng: &rng)
        let rn = Set(r.namedParameters().map(\.0))
        for p in ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias", "fc.weight"] {
            XCTAssertTrue(rn.contains(p), "missing \(p)")
        }
    }

    func testFeatureMapsAtStrides8_16_32() throws {
        var rng = RNG(seed: 1)
        let x = Tensor.randn([1, 3, 64, 96], rng: &rng)
        for name in Backbones.names {
            let b = try Backbones.make(name, width: 0.25, rng: &rng)
            let maps = noGrad { b.featureMaps(x) }
            XCTAssertEqual(maps.count, 3, name)
            for (k, (m, s)) in zip(maps, [8, 16, 32]).enumerated() {
                XCTAssertEqual(Array(m.shape[2...]), [64 / s, 96 / s], "\(name) map \(k)")
                XCTAssertEqual(m.shape[1], b.featureChannels[k], "\(name) channels \(k)")
            }
        }
        XCTAssertThrowsError(try Backbones.make("vgg16", rng: &rng)) { XCTAssertTrue("\($0)".contains("mobilenet_v2")) }
    }

    /// CIFAR practice: with `smallInput` every backbone keeps stride 1 in its stem and first strided
    /// stage, so a 32-px input ends in 4x4 maps (total stride 8, not 32); the MobileNets keep their
    /// parameters (strides only), ResNet-18 swaps its 7x7 stem for a 3x3 one and drops the max-pool.
    /// It has no C3-C5 maps for a detector.
    func testSmallInputEndsAtStride8() throws {
        var rng = RNG(seed: 3)
        let x = Tensor.randn([2, 3, 32, 32], rng: &rng)
        for name in Backbones.names {
            let small = try Backbones.make(name, width: 0.25, smallInput: true, rng: &rng)
            let plain = try Backbones.make(name, width: 0.25, rng: &rng)
            XCTAssertEqual(Array(noGrad { small(x) }.shape[2...]), [4, 4], name)
            XCTAssertEqual(Array(noGrad { plain(x) }.shape[2...]), [1, 1], name)
            XCTAssertTrue(small.featureChannels.isEmpty, name)
            let count = { (m: Module) in m.namedParameters().reduce(0) { $0 + $1.1.count } }
            if name == "resnet18" {
                XCTAssertEqual(count(plain) - count(small), 16 * 3 * (49 - 9), name)   // 16 stem channels at width 0.25
            } else {
                XCTAssertEqual(count(small), count(plain), name)
            }
            let c = try Backbones.make(name, width: 0.25, numClasses: 5, smallInput: true, rng: &rng)
            XCTAssertEqual(noGrad { c(x) }.shape, [2, 5], name)
        }
    }

    func testClassifierForwardBackward() throws {
        var rng = RNG(seed: 2)
        let m = try MobileNetV3(.small, width: 0.25, numClasses: 5, rng: &rng)
        let x = Tensor.randn([2, 3, 32, 32], rng: &rng)
        let loss = Loss.crossEntropy(m(x), targets: [1, 3])
        loss.backward()
        let missing = m.namedParameters().filter { $0.1.grad == nil }.map(\.0)
        XCTAssertTrue(missing.isEmpty, "no gradient for \(missing)")
    }
}

final class SummaryTests: XCTestCase {
    /// torchvision's model cards: ResNet-18 1.81 GFLOPs, MobileNetV2 0.30 GFLOPs (multiply-adds) at 224.
    func testMACsMatchTorchvisionModelCards() throws {
        var rng = RNG(seed: 0)
        let r = ModelSummary(try ResNet(numClasses: 1000, rng: &rng), inputShape: [1, 3, 224, 224])
        XCTAssertEqual(Double(r.totalMACs) / 1e9, 1.81, accuracy: 0.01)
        XCTAssertEqual(r.totalParams, 11_689_512)
        XCTAssertEqual(r.outputShapes, [[1, 1000]])
        let m = ModelSummary(try MobileNetV2(numClasses: 1000, rng: &rng), inputShape: [1, 3, 224, 224])
        XCTAssertEqual(Double(m.totalMACs) / 1e9, 0.30, accuracy: 0.01)
        let conv0 = m.rows.first { $0.path == "features.0.0" }!
        XCTAssertEqual(conv0.macs, 32 * 112 * 112 * 27)
        XCTAssertEqual(conv0.shapes, [[32, 3, 3, 3]])
        XCTAssertTrue(m.format().contains("features.18.0"))
    }
}
