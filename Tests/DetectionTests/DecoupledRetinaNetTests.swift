import XCTest
import Kernels
import Autodiff
import NN
import Optim
import Quant
@testable import Detection

final class DecoupledRetinaNetTests: XCTestCase {
    func tinyModel(types: Int = 3, seed: UInt64 = 0, _ configure: (inout DecoupledConfig) -> Void = { _ in }) throws -> DecoupledRetinaNet {
        var rng = RNG(seed: seed)
        let backbone = try Backbones.make("mobilenet_v2", width: 0.25, numClasses: nil, rng: &rng)
        var base = RetinaNetConfig(numClasses: types)
        base.fpnChannels = 16; base.headConvs = 1
        var c = DecoupledConfig(base: base)
        c.fineHidden = 32
        c.typeCounts = (0..<types).map { 40 / ($0 + 1) }
        configure(&c)
        return try DecoupledRetinaNet(backbone: backbone, config: c, rng: &rng)
    }

    let targets = [DetectionTarget(boxes: XYXYBoxes([[4, 6, 30, 22], [33, 30, 60, 63]]), labels: [2, 0],
                                   ignoreRegions: XYXYBoxes([[0, 40, 20, 64]])),
                   DetectionTarget(boxes: XYXYBoxes([[10, 10, 40, 30]]), labels: [1])]

    func input(_ seed: UInt64 = 1) -> Tensor {
        var rng = RNG(seed: seed)
        return Tensor.randn([2, 3, 64, 64], rng: &rng)
    }

    func testShapesPathsAndLossNames() throws {
        let m = try tinyModel()
        let x = input()
        let h = m.headOutputs(x)
        XCTAssertEqual(h.objectness.shape, [2, h.anchors.count, 1])
        XCTAssertEqual(m.forward(x).shape, [2, h.anchors.count, 5])
        let names = Set(m.namedParameters().map(\.0))
        for p in ["objectnessHead.predictor.bias", "regressionHead.tower.0.weight", "fineGrained.tower.0.weight",
                  "fineGrained.hidden.weight", "fineGrained.classifier.weight"] {
            XCTAssertTrue(names.contains(p), p)
        }
        XCTAssertTrue(m.namedBuffers().map(\.0).contains("lossState.steps"))
        XCTAssertEqual(Set(m.losses(images: x, targets: targets).keys), ["objectness", "bbox_regression", "type"])
    }

    /// Every switch of the design trains: finite losses, and gradients reach the fine-grained module,
    /// the foreground head and the backbone.
    func testEverySwitchGivesFiniteLossesAndGradients() throws {
        var variants: [(String, (inout DecoupledConfig) -> Void)] = []
        for o in DecoupledConfig.ObjectnessLoss.allCases { variants.append(("objectness \(o)", { $0.objectness = o })) }
        for a in DecoupledConfig.Assigner.allCases { variants.append(("assigner \(a)", { $0.assigner = a; $0.assignerWarmupSteps = 0 })) }
        for t in DecoupledConfig.TypeLoss.allCases { variants.append(("type \(t)", { $0.typeLoss = t })) }
        variants.append(("bootstrap", { $0.labelNoise = .bootstrap }))
        variants.append(("small loss", { $0.labelNoise = .smallLoss; $0.smallLossRate = 0.5; $0.noiseWarmupSteps = 0 }))
        variants.append(("support", { $0.supportWeight = 0.5 }))
        for (name, configure) in variants {
            let m = try tinyModel(configure)
            let l = m.losses(images: input(), targets: targets)
            let total = Loss.total(l)
            XCTAssertTrue(total.item.isFinite, name)
            if name == "support" { XCTAssertNotNil(l["support"], name) }
            total.backward()
            XCTAssertGreaterThan(m.fineGrained.classifier.weight.grad?.scalars.map(abs).max() ?? 0, 0, name)
            XCTAssertGreaterThan(m.objectnessHead.predictor.weight.grad?.scalars.map(abs).max() ?? 0, 0, name)
            XCTAssertGreaterThan(m.backbone.namedParameters()[0].1.grad?.scalars.map(abs).max() ?? 0, 0, name)
        }
    }

    /// The foreground head and the boxes never see a type label: relabelling every box changes the
    /// type loss only.
    func testAssignmentIgnoresTypeLabels() throws {
        for assigner in DecoupledConfig.Assigner.allCases {
            let m = try tinyModel { $0.assigner = assigner; $0.objectness = .qfl; $0.assignerWarmupSteps = 0 }
            let x = input()
            let a = m.losses(images: x, targets: targets)
            let relabelled = targets.map { DetectionTarget(boxes: $0.boxes, labels: $0.labels.map { ($0 + 1) % 3 }, ignoreRegions: $0.ignoreRegions) }
            let b = m.losses(images: x, targets: relabelled)
            XCTAssertEqual(a["objectness"]!.item, b["objectness"]!.item, "\(assigner)")
            XCTAssertEqual(a["bbox_regression"]!.item, b["bbox_regression"]!.item, "\(assigner)")
            XCTAssertNotEqual(a["type"]!.item, b["type"]!.item, "\(assigner)")
        }
    }

    /// `task_aligned` is ATSS (same losses, bit for bit) during its warm-up, then TOOD's rule on the
    /// model's own foreground probabilities and decoded boxes, whose normalised metric becomes the QFL
    /// target.
    func testTaskAlignedFollowsATSSUntilWarmUpThenThePredictions() throws {
        let x = input()
        let atss = try tinyModel { $0.assigner = .atss; $0.objectness = .qfl }
        let tal = try tinyModel { $0.assigner = .taskAligned; $0.objectness = .qfl; $0.assignerWarmupSteps = 1 }
        let a = atss.losses(images: x, targets: targets), b = tal.losses(images: x, targets: targets)
        for k in a.keys { XCTAssertEqual(a[k]!.item, b[k]!.item, k) }
        // Step 1 (after the warm-up): TOOD's assignment from this forward pass's predictions.
        let h = tal.headOutputs(x)
        let assigned = tal.assign(h, targets: targets, step: 1)
        let n = h.anchors.count
        let scores = h.objectness.scalars[0..<n].map { 1 / (1 + expf(-$0)) }
        let boxes = tal.boxCoder.decode(Array(h.regression.scalars[0..<(4 * n)]), anchors: h.anchors.boxes)
        XCTAssertEqual(assigned[0], try TaskAlignedAssigner().assign(anchors: h.anchors, target: targets[0], scores: scores, predicted: boxes))
        XCTAssertNotEqual(assigned.map(\.matches), tal.assign(h, targets: targets, step: 0).map(\.matches))
        XCTAssertGreaterThan(assigned[0].matches.filter { $0 >= 0 }.count, 0)
        let c = tal.losses(images: x, targets: targets)
        XCTAssertNotEqual(c["objectness"]!.item, a["objectness"]!.item)
        XCTAssertTrue(c["objectness"]!.item.isFinite)
    }

    func testTypeRoIsAreGroundTruthThenBestPredictions() throws {
        let anchors = MultiLevelAnchors(boxes: XYXYBoxes([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 12, 12]]), countsPerLevel: [4])
        let target = DetectionTarget(boxes: XYXYBoxes([[0, 0, 10, 10], [20, 20, 30, 30]]), labels: [1, 2])
        let t = AnchorTargets(matches: [[0, 0, 1, 0]], anchors: anchors, targets: [target])
        let predicted = XYXYBoxes([[0, 0, 9, 9], [0, 0, 10, 10], [21, 21, 30, 30], [5, 5, 50, 50]])
        let quality = pairedIoU(predicted, XYXYBoxes(coords: t.boxes))
        let rois = TypeRoIs(targets: [target], anchorTargets: t, predicted: predicted, quality: quality, perBox: 2)
        // Ground truth first, then per box its best predictions (quality 1.0, then 0.81; the 0.05 one is cut).
        XCTAssertEqual(rois.labels, [1, 2, 1, 1, 2])
        XCTAssertEqual(rois.owner, [0, 1, 0, 0, 1])
        XCTAssertEqual(rois.boxes[0].coords, [0, 0, 10, 10, 20, 20, 30, 30, 0, 0, 10, 10, 0, 0, 9, 9, 21, 21, 30, 30])
        let none = TypeRoIs(targets: [target], anchorTargets: t, predicted: predicted, quality: quality, perBox: 0)
        XCTAssertEqual(none.count, 2)
    }

    func testSmallLossDropsTheWorstGroundTruthAfterWarmUp() throws {
        let m = try tinyModel { $0.labelNoise = .smallLoss; $0.smallLossRate = 0.5; $0.noiseWarmupSteps = 10 }
        var rois = TypeRoIs(targets: [], anchorTargets: AnchorTargets(matches: [], anchors: MultiLevelAnchors(boxes: XYXYBoxes(), countsPerLevel: [0]), targets: []),
                            predicted: XYXYBoxes(), quality: [], perBox: 0)
        rois.labels = [0, 1, 2, 0]; rois.owner = [0, 1, 2, 1]
        // Owner 1's two RoIs have the largest mean cross-entropy (label 1 and 0 against logits that favour 2).
        let logits = Tensor(shape: [4, 3], scalars: [5, 0, 0, 0, -3, 5, 0, 0, 5, -5, 0, 5])
        XCTAssertEqual(m.keptRoIs(logits, rois, step: 0), [0, 1, 2, 3])          // ramp at 0: nothing dropped
        XCTAssertEqual(m.keptRoIs(logits, rois, step: 10), [0, 2])               // 3 owners * 0.5 -> 1 dropped
    }

    func testDetectionsArePerTypeProductsOrderedByScore() throws {
        let m = try tinyModel { $0.typesPerBox = 2 }
        let found = [Detections(boxes: XYXYBoxes([[0, 0, 10, 10], [5, 5, 20, 20]]), scores: [0.9, 0.5], labels: [0, 0]), Detections()]
        let p: [Float] = [0.1, 0.7, 0.2, 0.6, 0.3, 0.1]
        let d = m.typedDetections(found, probabilities: p)
        XCTAssertEqual(d[0].labels, [1, 0, 2, 1])
        XCTAssertEqual(d[0].scores, [0.9 * 0.7, 0.5 * 0.6, 0.9 * 0.2, 0.5 * 0.3])
        XCTAssertEqual(d[0].boxes.coords, [0, 0, 10, 10, 5, 5, 20, 20, 0, 0, 10, 10, 5, 5, 20, 20])
        XCTAssertEqual(d[1].count, 0)
    }

    /// The loss state is a buffer: a model rebuilt from another's parameters and buffers continues
    /// the same stateful losses (what checkpoint resume relies on).
    func testStatefulLossesContinueFromBuffers() throws {
        let configure: (inout DecoupledConfig) -> Void = { $0.typeLoss = .eqlv2; $0.objectness = .ghmc }
        let a = try tinyModel(configure), b = try tinyModel(configure)
        let x = input()
        _ = a.losses(images: x, targets: targets)
        for ((_, src), (_, dst)) in zip(a.namedParameters() + a.namedBuffers(), b.namedParameters() + b.namedBuffers()) {
            for i in 0..<src.count { dst.pointer[i] = src.pointer[i] }
        }
        XCTAssertEqual(a.lossState.steps.item, 1)
        XCTAssertGreaterThan(a.lossState.eqlv2Positive.scalars.max()!, 0)
        let la = a.losses(images: x, targets: targets), lb = b.losses(images: x, targets: targets)
        for k in la.keys { XCTAssertEqual(la[k]!.item, lb[k]!.item, k) }
        XCTAssertEqual(a.lossState.ghmCounts.scalars, b.lossState.ghmCounts.scalars)
    }

    func testTypeProbabilitiesPerImage() throws {
        let m = try tinyModel()
        m.eval()
        let p = m.typeProbabilities(input(), boxes: [XYXYBoxes([[4, 6, 30, 22], [33, 30, 60, 63]]), XYXYBoxes()])
        XCTAssertEqual(p[0].count, 6)
        XCTAssertEqual(p[1].count, 0)
        XCTAssertEqual(p[0][0..<3].reduce(0, +), 1, accuracy: 1e-5)
    }

    /// quantize() reaches the fine-grained module's convs and linears like every other layer.
    func testQuantizeReachesTheFineGrainedModule() throws {
        let m = try tinyModel()
        let h = try quantize(m, plan: .bits(weight: 8, activation: 8))
        for p in ["fineGrained.tower.0", "fineGrained.hidden", "fineGrained.classifier", "objectnessHead.predictor"] {
            XCTAssertTrue(h.quantizedLayers.contains(p), p)
        }
    }

    /// One image, two aircraft of different types: after a few dozen steps both come back with their types.
    func testOverfitsOneImage() throws {
        let m = try tinyModel(seed: 5) { $0.objectness = .qfl }
        var rng = RNG(seed: 6)
        let x = Tensor.uniform([1, 3, 64, 64], low: -1, high: 1, rng: &rng)
        let boxes: [[Float]] = [[12, 20, 44, 36], [40, 40, 60, 60]]
        let target = [DetectionTarget(boxes: XYXYBoxes(boxes), labels: [2, 0])]
        let opt = Adam(m.namedParameters(), lr: 2e-3)
        var first: Float = 0, last: Float = 0
        for s in 0..<60 {
            opt.zeroGrad()
            let l = m.losses(images: x, targets: target)
            let total = Loss.total(l)
            if s == 0 { first = total.item }
            last = total.item
            total.backward()
            opt.step()
        }
        XCTAssertLessThan(last, 0.3 * first)
        noGrad { for _ in 0..<40 { _ = m.forward(x) } }     // precise BN, as in RetinaNetTests
        m.eval()
        let d = m.detect(x)[0]
        for (box, label) in zip(boxes, [2, 0]) {
            let hit = (0..<d.count).first { boxIoU(d.boxes.selecting([$0]), XYXYBoxes([box]))[0] > 0.5 }
            XCTAssertNotNil(hit, "\(box)")
            if let hit { XCTAssertEqual(d.labels[hit], label, "\(box)") }
        }
    }
}
