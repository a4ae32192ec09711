import XCTest
import Kernels
import Autodiff
import NN
@testable import Prune

/// A backbone classifier with random BatchNorm statistics and affine parameters (so no BN is an
/// identity), in eval mode; the same seed gives the same model.
func randomModel(_ name: String, width: Double = 0.35, classes: Int = 5, smallInput: Bool = false, seed: UInt64 = 3) throws -> Module {
    var rng = RNG(seed: seed)
    let m = try Backbones.make(name, width: width, numClasses: classes, smallInput: smallInput, rng: &rng)
    var r = RNG(seed: seed + 100)
    for (_, mod) in m.namedModules() {
        guard let bn = mod as? BatchNorm2d else { continue }
        let n = bn.weight.count
        r.fillUniform(bn.weight.pointer, count: n, low: 0.5, high: 1.5)
        r.fillUniform(bn.bias.pointer, count: n, low: -0.3, high: 0.3)
        r.fillUniform(bn.runningMean.pointer, count: n, low: -0.2, high: 0.2)
        r.fillUniform(bn.runningVar.pointer, count: n, low: 0.5, high: 2)
    }
    m.eval()
    return m
}

func slicePaths(_ g: ChannelGroup) -> [String] { g.slices.map { "\($0.layer.path):\($0.role.rawValue)\($0.scored ? "*" : "")" } }

final class ChannelGraphTests: XCTestCase {
    func group(_ groups: [ChannelGroup], _ name: String) throws -> ChannelGroup { try XCTUnwrap(groups.first { $0.name == name }, name) }

    /// MobileNetV2: the stem's channels run through the first block's depthwise conv; an expansion's
    /// channels through its depthwise conv to the projection's input; a stage's residual adds join every
    /// projection of the stage and the inputs of everything that reads the stream.
    func testMobileNetV2Groups() throws {
        let groups = try ChannelGraph.groups(of: try randomModel("mobilenet_v2"))
        XCTAssertEqual(slicePaths(try group(groups, "features.0.0")),
                       ["features.0.0:output*", "features.0.1:output", "features.1.conv.0.0:depthwise", "features.1.conv.0.1:output", "features.1.conv.1:input"])
        XCTAssertEqual(slicePaths(try group(groups, "features.2.conv.0.0")),
                       ["features.2.conv.0.0:output*", "features.2.conv.0.1:output", "features.2.conv.1.0:depthwise", "features.2.conv.1.1:output", "features.2.conv.2:input"])
        // Stage 3 (32 channels x 0.35 -> 16): blocks 4, 5, 6; 5 and 6 add their input.
        let stream = try group(groups, "features.4.conv.2")
        XCTAssertEqual(Set(slicePaths(stream)), Set(["features.4.conv.2:output*", "features.4.conv.3:output", "features.5.conv.0.0:input",
                                                     "features.5.conv.2:output*", "features.5.conv.3:output", "features.6.conv.0.0:input",
                                                     "features.6.conv.2:output*", "features.6.conv.3:output", "features.7.conv.0.0:input"]))
        XCTAssertEqual(stream.scoredSlices.count, 3)
        // The last conv's channels reach the classifier; its outputs (the classes) are protected, as is the input.
        XCTAssertEqual(slicePaths(try group(groups, "features.18.0")), ["features.18.0:output*", "features.18.1:output", "classifier.1:input"])
        XCTAssertEqual(try group(groups, "classifier.1").protectedBecause, "the model output")
        XCTAssertEqual(try group(groups, "features.0.0:input").protectedBecause, "the network input")
        // Every slice of every layer is in exactly one group.
        var seen = Set<String>()
        for g in groups { for s in slicePaths(g) { XCTAssertTrue(seen.insert(s.replacingOccurrences(of: "*", with: "")).inserted, s) } }
        // Groups: stem, 16 expansions, 7 streams, last conv, input, output.
        XCTAssertEqual(groups.count, 1 + 16 + 7 + 1 + 2)
    }

    /// ResNet: the stem's channels are layer1's stream (identity shortcuts); a stage with a downsample
    /// joins the downsample's outputs to its stream.
    func testResNetGroups() throws {
        let groups = try ChannelGraph.groups(of: try randomModel("resnet18"))
        XCTAssertEqual(Set(slicePaths(try group(groups, "conv1"))),
                       Set(["conv1:output*", "bn1:output", "layer1.0.conv1:input", "layer1.0.conv2:output*", "layer1.0.bn2:output",
                            "layer1.1.conv1:input", "layer1.1.conv2:output*", "layer1.1.bn2:output", "layer2.0.conv1:input", "layer2.0.downsample.0:input"]))
        let l2 = try group(groups, "layer2.0.conv2")
        XCTAssertTrue(slicePaths(l2).contains("layer2.0.downsample.0:output*"))
        XCTAssertTrue(slicePaths(l2).contains("layer3.0.downsample.0:input"))
        XCTAssertEqual(slicePaths(try group(groups, "layer2.0.conv1")), ["layer2.0.conv1:output*", "layer2.0.bn1:output", "layer2.0.conv2:input"])
        XCTAssertEqual(slicePaths(try group(groups, "layer4.0.conv2")).last, "fc:input")
    }

    /// MobileNetV3: squeeze-excitation squeezes the expansion's channels into a group of its own and
    /// gates them (the gate's filters are not scored); the classifier's hidden layer is a group.
    func testMobileNetV3Groups() throws {
        let groups = try ChannelGraph.groups(of: try randomModel("mobilenet_v3_large"))
        let hidden = try group(groups, "features.4.block.0.0")
        XCTAssertEqual(slicePaths(hidden), ["features.4.block.0.0:output*", "features.4.block.0.1:output", "features.4.block.1.0:depthwise",
                                            "features.4.block.1.1:output", "features.4.block.2.fc1:input", "features.4.block.2.fc2:output",
                                            "features.4.block.3.0:input"])
        XCTAssertEqual(slicePaths(try group(groups, "features.4.block.2.fc1")), ["features.4.block.2.fc1:output*", "features.4.block.2.fc2:input"])
        XCTAssertEqual(slicePaths(try group(groups, "classifier.0")), ["classifier.0:output*", "classifier.3:input"])
    }

    func testMobileNetV1Groups() throws {
        let groups = try ChannelGraph.groups(of: try randomModel("mobilenet_v1"))
        XCTAssertEqual(slicePaths(try group(groups, "features.1.3")),
                       ["features.1.3:output*", "features.1.4:output", "features.2.0:depthwise", "features.2.1:output", "features.2.3:input"])
    }

    /// A module that does not declare its channel flow is an error naming it; so is a quantized layer.
    func testUndeclaredModulesAndQuantizedLayersAreErrors() throws {
        final class Opaque: Module { override func forward(_ x: Tensor) -> Tensor { x } }
        var rng = RNG(seed: 1)
        let m = Sequential(try Conv2d(3, 4, kernel: 3, rng: &rng), Opaque())
        XCTAssertThrowsError(try ChannelGraph.groups(of: m)) { e in
            XCTAssertTrue("\(e)".contains("'1'") && "\(e)".contains("Opaque") && "\(e)".contains("ChannelFlow"), "\(e)")
        }
        let c = try Conv2d(3, 4, kernel: 3, rng: &rng)
        c.weightQuantizer = Identity()
        c.path = "features.3"
        XCTAssertThrowsError(try c.keepChannels([0, 1], .output)) { e in
            XCTAssertTrue("\(e)".contains("features.3") && "\(e)".contains("prune the float model"), "\(e)")
        }
        let d = try Conv2d(3, 4, kernel: 3, rng: &rng)
        XCTAssertThrowsError(try d.keepChannels([1, 0], .output)) { e in XCTAssertTrue("\(e)".contains("ascending"), "\(e)") }
        XCTAssertThrowsError(try d.keepChannels([], .output)) { e in XCTAssertTrue("\(e)".contains("all 4"), "\(e)") }
        XCTAssertThrowsError(try d.keepChannels([0, 4], .output)) { e in XCTAssertTrue("\(e)".contains("0..<4"), "\(e)") }
    }
}
