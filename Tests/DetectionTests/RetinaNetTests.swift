import XCTest
import Kernels
import Autodiff
import NN
import Optim
@testable import Detection

final class RetinaNetTests: XCTestCase {
    func tinyModel(classes: Int = 3, regression: RetinaNetConfig.Regression = .l1, seed: UInt64 = 0) throws -> RetinaNet {
        var rng = RNG(seed: seed)
        let backbone = try Backbones.make("mobilenet_v2", width: 0.25, numClasses: nil, rng: &rng)
        var c = RetinaNetConfig(numClasses: classes)
        c.fpnChannels = 16; c.headConvs = 1; c.regression = regression
        return try RetinaNet(backbone: backbone, config: c, rng: &rng)
    }

    func testShapesPathsAndAnchorOrder() throws {
        let m = try tinyModel()
        var rng = RNG(seed: 1)
        let x = Tensor.randn([2, 3, 64, 64], rng: &rng)
        let h = m.headOutputs(x)
        // 64 px: P3..P7 are 8, 4, 2, 1, 1 locations a side, 9 anchors each.
        XCTAssertEqual(h.anchors.countsPerLevel, [64 * 9, 16 * 9, 4 * 9, 9, 9])
        XCTAssertEqual(h.logits.shape, [2, h.anchors.count, 3])
        XCTAssertEqual(h.regression.shape, [2, h.anchors.count, 4])
        XCTAssertEqual(m.forward(x).shape, [2, h.anchors.count, 7])
        let names = Set(m.namedParameters().map(\.0))
        for p in ["backbone.features.0.0.weight", "fpn.lateral.0.weight", "fpn.p7.weight", "classificationHead.predictor.bias",
                  "regressionHead.tower.0.weight"] {
            XCTAssertTrue(names.contains(p), p)
        }
        // The prior bias makes every anchor start at probability 0.01.
        XCTAssertEqual(h.logits.sigmoid().mean().item, 0.01, accuracy: 0.003)
    }

    /// The loss against torchvision's compute_loss written out per image: focal loss summed over the
    /// non-ignored anchors and L1 over foreground anchors, each over max(1, #fg), averaged over images.
    func testLossMatchesPerImageReference() throws {
        let m = try tinyModel()
        var rng = RNG(seed: 2)
        let x = Tensor.randn([2, 3, 64, 64], rng: &rng)
        let targets = [DetectionTarget(boxes: XYXYBoxes([[4, 6, 30, 22], [33, 30, 60, 63]]), labels: [2, 0],
                                       ignoreRegions: XYXYBoxes([[0, 40, 20, 64]])),
                       DetectionTarget(boxes: XYXYBoxes(), labels: [])]
        let h = noGrad { m.headOutputs(x) }
        let l = m.losses(logits: h.logits, regression: h.regression, anchors: h.anchors, targets: targets)
        let a = h.anchors.count, k = 3
        var cls = 0.0, box = 0.0
        for (i, t) in targets.enumerated() {
            let matches = m.matcher.match(anchors: h.anchors.boxes, gtBoxes: t.boxes, ignoreRegions: t.ignoreRegions)
            let fg = matches.filter { $0 >= 0 }.count
            var c = 0.0, b = 0.0
            for j in 0..<a where matches[j] != Matcher.betweenThresholds {
                for q in 0..<k {
                    let z = Double(h.logits.scalars[(i * a + j) * k + q])
                    let y: Double = matches[j] >= 0 && t.labels[matches[j]] == q ? 1 : 0
                    let p = 1 / (1 + exp(-z))
                    let ce = -(y * log(p) + (1 - y) * log(1 - p))
                    let pt = p * y + (1 - p) * (1 - y)
                    c += (0.25 * y + 0.75 * (1 - y)) * ce * (1 - pt) * (1 - pt)
                }
                guard matches[j] >= 0 else { continue }
                let enc = m.boxCoder.encode(t.boxes.selecting([matches[j]]), anchors: h.anchors.boxes.selecting([j]))
                for q in 0..<4 { b += abs(Double(h.regression.scalars[(i * a + j) * 4 + q]) - Double(enc[q])) }
            }
            cls += c / Double(max(1, fg)); box += b / Double(max(1, fg))
        }
        XCTAssertEqual(Double(l["classification"]!.item), cls / 2, accuracy: 1e-4 * cls)
        XCTAssertEqual(Double(l["bbox_regression"]!.item), box / 2, accuracy: 1e-4 * max(box, 1e-3))
        XCTAssertGreaterThan(box, 0)
    }

    func testIgnoreRegionsRemoveAnchorsFromTheClassificationLoss() throws {
        let m = try tinyModel()
        var rng = RNG(seed: 3)
        let x = Tensor.randn([1, 3, 64, 64], rng: &rng)
        let h = noGrad { m.headOutputs(x) }
        let plain = m.losses(logits: h.logits, regression: h.regression, anchors: h.anchors, targets: [DetectionTarget(boxes: XYXYBoxes(), labels: [])])
        let ignored = m.losses(logits: h.logits, regression: h.regression, anchors: h.anchors,
                               targets: [DetectionTarget(boxes: XYXYBoxes(), labels: [], ignoreRegions: XYXYBoxes([[-1000, -1000, 1000, 1000]]))])
        XCTAssertGreaterThan(plain["classification"]!.item, 0)
        XCTAssertEqual(ignored["classification"]!.item, 0)          // every anchor inside the region: none left
        XCTAssertEqual(plain["bbox_regression"]!.item, 0)
    }

    func testEveryRegressionLossTrainsAndBackpropagates() throws {
        for r in RetinaNetConfig.Regression.allCases {
            let m = try tinyModel(regression: r)
            var rng = RNG(seed: 4)
            let x = Tensor.randn([1, 3, 64, 64], rng: &rng)
            let l = m.losses(images: x, targets: [DetectionTarget(boxes: XYXYBoxes([[10, 10, 40, 30]]), labels: [1])])
            let total = l["classification"]! + l["bbox_regression"]!
            XCTAssertTrue(total.item.isFinite, "\(r)")
            total.backward()
            XCTAssertNotNil(m.regressionHead.predictor.weight.grad, "\(r)")
            XCTAssertGreaterThan(m.backbone.namedParameters()[0].1.grad!.scalars.map(abs).max()!, 0, "\(r)")
        }
    }

    /// A detector that cannot fit one box on one image would be broken somewhere between anchors,
    /// matching, targets and decoding: after a few dozen steps the box must come back as the top detection.
    func testOverfitsOneImage() throws {
        let m = try tinyModel(seed: 5)
        var rng = RNG(seed: 6)
        let x = Tensor.uniform([1, 3, 64, 64], low: -1, high: 1, rng: &rng)
        let box: [Float] = [12, 20, 44, 36]
        let target = [DetectionTarget(boxes: XYXYBoxes([box]), labels: [2])]
        let opt = Adam(m.namedParameters(), lr: 2e-3)
        var first: Float = 0, last: Float = 0
        for s in 0..<60 {
            opt.zeroGrad()
            let l = m.losses(images: x, targets: target)
            let total = l["classification"]! + l["bbox_regression"]!
            if s == 0 { first = total.item }
            last = total.item
            total.backward()
            opt.step()
        }
        XCTAssertLessThan(last, 0.3 * first)
        // BatchNorm's running statistics trail the last weights after 60 fast steps on one image (how far
        // depends on the BLAS kernels' rounding): re-estimate them at the final weights ("precise BN",
        // 40 forward passes at momentum 0.1) so eval mode sees what training saw.
        noGrad { for _ in 0..<40 { _ = m.headOutputs(x) } }
        m.eval()
        let d = m.detect(x)[0]
        XCTAssertGreaterThan(d.count, 0)
        guard d.count > 0 else { return }
        XCTAssertEqual(d.labels[0], 2)
        XCTAssertGreaterThan(boxIoU(d.boxes.selecting([0]), XYXYBoxes([box]))[0], 0.5)
    }
}

import Quant

final class RetinaNetQuantizationTests: XCTestCase {
    /// quantize() reaches every conv of the detector (backbone, FPN laterals/outputs/P6/P7, head towers
    /// and predictors) and requantizes the FPN's top-down adds, with nothing detector-specific in Quant.
    func testQuantizeReachesEveryConvAndTopDownAdd() throws {
        var rng = RNG(seed: 0)
        let backbone = try Backbones.make("mobilenet_v2", width: 0.25, numClasses: nil, rng: &rng)
        var c = RetinaNetConfig(numClasses: 2)
        c.fpnChannels = 8; c.headConvs = 2
        let m = try RetinaNet(backbone: backbone, config: c, rng: &rng)
        let convs = m.namedModules().filter { $0.1 is Conv2d }.map(\.0)
        let h = try quantize(m, plan: .bits(weight: 8, activation: 8))
        XCTAssertEqual(Set(h.quantizedLayers), Set(convs))
        for p in ["fpn.lateral.0", "fpn.output.2", "fpn.p6", "fpn.p7", "classificationHead.tower.0", "regressionHead.predictor"] {
            XCTAssertTrue(h.quantizedLayers.contains(p), p)
        }
        let adds = h.quantizers.map(\.0).filter { $0.hasPrefix("fpn.merges.") }
        XCTAssertEqual(adds, ["fpn.merges.0.addQuantizer", "fpn.merges.1.addQuantizer"])
        var r2 = RNG(seed: 1)
        let x = Tensor.randn([1, 3, 64, 64], rng: &r2)
        h.calibrate(m, batches: [x]) { m($0) }
        let l = m.losses(images: x, targets: [DetectionTarget(boxes: XYXYBoxes([[8, 8, 40, 40]]), labels: [1])])
        (l["classification"]! + l["bbox_regression"]!).backward()
        XCTAssertNotNil((m.fpn.merges[0].addQuantizer as! FakeQuantize).namedParameters().first?.1.grad)
    }
}
