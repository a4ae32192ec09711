import XCTest
@testable import Recipes

/// The detection surface of recipes: `task: detection`, the `detector` section, detection data formats
/// and metrics, and the keys added with detection (`model.init_from`, `data.dota`, `data.augment.scale_*`).
final class DetectionRecipeTests: XCTestCase {
    func error(_ text: String, file: String = "(recipe)") -> RecipeError? {
        do { _ = try Recipe.parse(text, file: file); return nil } catch let e as RecipeError { return e } catch { XCTFail("unexpected \(error)"); return nil }
    }

    func testDetectionDefaults() throws {
        let r = try Recipe.parse("task: detection\n")
        XCTAssertEqual(r.task, "detection")
        XCTAssertEqual(r.data.format, "synth_coco")
        XCTAssertEqual(r.eval.metric, "map50")
        XCTAssertEqual(r.detector, Recipe.Detector())
        let d = r.detector
        XCTAssertEqual(d.fpn.channels, 64); XCTAssertEqual(d.fpn.levels, [3, 4, 5, 6, 7])
        XCTAssertEqual(d.head.convs, 4); XCTAssertFalse(d.head.groupNorm); XCTAssertEqual(d.head.priorProb, 0.01)
        XCTAssertEqual(d.anchors.sizes, [16, 32, 64, 128, 256])
        XCTAssertEqual(d.anchors.scales, [1.0, pow(2, 1.0 / 3), pow(2, 2.0 / 3)])
        XCTAssertEqual(d.anchors.ratios, [0.5, 1.0, 2.0]); XCTAssertTrue(d.anchors.integerSizes)
        XCTAssertEqual(d.matcher.fgIoU, 0.5); XCTAssertEqual(d.matcher.bgIoU, 0.4); XCTAssertTrue(d.matcher.lowQuality); XCTAssertEqual(d.matcher.ignoreIoF, 0.5)
        XCTAssertEqual(d.loss.focalAlpha, 0.25); XCTAssertEqual(d.loss.focalGamma, 2); XCTAssertEqual(d.loss.regression, "l1")
        XCTAssertEqual(d.loss.smoothL1Beta, 0.11); XCTAssertEqual(d.loss.boxWeights, [1, 1, 1, 1]); XCTAssertEqual(d.loss.regressionWeight, 1)
        XCTAssertEqual(d.test.scoreThreshold, 0.05); XCTAssertEqual(d.test.topk, 1000); XCTAssertEqual(d.test.nmsIoU, 0.5); XCTAssertEqual(d.test.maxDetections, 100)
        XCTAssertNil(r.model.initFrom)
        XCTAssertEqual(r.data.dota.tile, 1024); XCTAssertEqual(r.data.dota.gap, 200)
        XCTAssertEqual(r.data.augment.scaleCrop, 0); XCTAssertEqual(r.data.augment.scaleRange, [0.8, 1.2])
    }

    /// A detection recipe's resolved form has every key, the detector section and the keys added with
    /// detection at their defaults, pinned like the classification recipes'.
    func testDetectionResolvedFormIsCompletePinnedAndLoadsBack() throws {
        let r = try Recipe.parse("task: detection\nname: det\n")
        let yaml = r.resolvedYAML()
        for key in ["detector:", "fpn:", "prior_prob: 0.01", "- 1.2599210498948732", "init_from: null", "dota:", "tile: 1024", "scale_crop: 0.0",
                    "scale_range:", "format: synth_coco", "metric: map50", "regression: l1", "max_detections: 100"] {
            XCTAssertTrue(yaml.contains(key), key)
        }
        XCTAssertEqual(yaml, try String(contentsOf: PinnedResolvedYAMLTests.fixtures.appendingPathComponent("detection-defaults.yaml"), encoding: .utf8))
        XCTAssertEqual(try Recipe.parse(yaml), r)

        let custom = try Recipe.parse("""
        task: detection
        model: {backbone: resnet18, init_from: runs/chips/1/checkpoints/best.h5}
        data: {format: dota, path: /data/dota, dota: {tile: 800, gap: 100}, augment: {scale_crop: 0.5, scale_range: [0.5, 1.5]}}
        eval: {metric: map}
        detector:
          fpn: {channels: 128, levels: [3, 4, 5]}
          head: {convs: 2, group_norm: true, prior_prob: 0.02}
          anchors: {sizes: [32, 64, 128], scales: [1.0], ratios: [1.0], integer_sizes: false}
          matcher: {fg_iou: 0.6, bg_iou: 0.6, low_quality: false, ignore_iof: 0.7}
          loss: {focal_alpha: 0.5, focal_gamma: 1.5, regression: giou, smooth_l1_beta: 0.2, box_weights: [10, 10, 5, 5], regression_weight: 2.0}
          test: {score_threshold: 0.1, topk: 500, nms_iou: 0.6, max_detections: 50}
        """)
        XCTAssertEqual(custom.detector.fpn.levels, [3, 4, 5])
        XCTAssertEqual(custom.detector.loss.boxWeights, [10, 10, 5, 5])
        XCTAssertEqual(custom.data.dota.tile, 800)
        XCTAssertEqual(custom.model.initFrom, "runs/chips/1/checkpoints/best.h5")
        XCTAssertEqual(try Recipe.parse(custom.resolvedYAML()), custom)
    }

    /// The thesis' switches act on the decoupled design only; a baseline recipe setting one, or
    /// bootstrapping with a long-tail type loss, is refused at the key.
    func testThesisSwitchesNeedTheDecoupledDesign() throws {
        for (text, key) in [("detector: {assigner: {name: atss}}", "detector.assigner.name"),
                            ("detector: {objectness: {loss: qfl}}", "detector.objectness.loss"),
                            ("detector: {type_loss: {name: eql}}", "detector.type_loss.name"),
                            ("detector: {support: {weight: 0.5}}", "detector.support.weight"),
                            ("detector: {label_noise: {method: small_loss}}", "detector.label_noise.method"),
                            ("detector: {design: decoupled, type_loss: {name: seesaw}, label_noise: {method: bootstrap}}", "detector.label_noise.method")] {
            XCTAssertThrowsError(try Recipe.parse("task: detection\n" + text + "\n")) { e in
                XCTAssertTrue("\(e)".contains(key), "\(text): \(e)")
            }
        }
        let r = try Recipe.parse("task: detection\ndetector: {design: decoupled, assigner: {name: atss}, objectness: {loss: vfl}, type_loss: {name: eqlv2}, support: {weight: 0.5}, label_noise: {method: small_loss}}\n")
        XCTAssertEqual(r.detector.assigner.name, "atss"); XCTAssertEqual(r.detector.objectness.loss, "vfl")
        XCTAssertEqual(try Recipe.parse(r.resolvedYAML()), r)
        XCTAssertThrowsError(try Recipe.parse("task: detection\ndetector: {design: decoupled, objectness: {loss: focall}}\n")) { e in
            XCTAssertTrue("\(e)".contains("focal"), "\(e)")
        }
    }

    /// Keys added with detection stay out of a classification recipe's resolved form at their defaults
    /// (so stored run directories still resume) and appear once set.
    func testClassificationWritesKeysAddedWithDetectionOnlyWhenSet() throws {
        let plain = try Recipe.parse("seed: 1\n").resolvedYAML()
        for key in ["init_from: null\n  data", "dota", "scale_crop", "scale_range", "detector"] { XCTAssertFalse(plain.contains(key), key) }
        let set = try Recipe.parse("model: {init_from: a.h5}\ndata: {augment: {scale_crop: 0.3}, dota: {gap: 10}}\n")
        let yaml = set.resolvedYAML()
        XCTAssertTrue(yaml.contains("init_from: a.h5") && yaml.contains("scale_crop: 0.3") && yaml.contains("gap: 10"), yaml)
        XCTAssertFalse(yaml.contains("scale_range"), yaml)   // still at its default
        XCTAssertEqual(try Recipe.parse(yaml), set)
    }

    /// model.small_input: written only when set (stored recipes keep their text), refused for detection.
    func testSmallInputIsWrittenWhenSetAndRefusedForDetection() throws {
        XCTAssertFalse(try Recipe.parse("seed: 1\n").resolvedYAML().contains("small_input"))
        let set = try Recipe.parse("model: {small_input: true}\n")
        XCTAssertTrue(set.model.smallInput)
        XCTAssertTrue(set.resolvedYAML().contains("small_input: true"))
        XCTAssertEqual(try Recipe.parse(set.resolvedYAML()), set)
        XCTAssertThrowsError(try Recipe.parse("task: detection\nmodel: {small_input: true}\n")) { e in
            XCTAssertTrue("\(e)".contains("model.small_input") && "\(e)".contains("classification"), "\(e)")
        }
    }

    func testTaskSpecificFormatsMetricsAndSections() throws {
        for (text, key, what) in [
            ("task: detection\ndata: {format: hdf5_chips, path: x}\n", "data.format", "classification format but the recipe's task is detection, which takes synth_coco, coco, dota"),
            ("data: {format: dota, path: x}\n", "data.format", "is a detection format but the recipe's task is classification"),
            ("data: {format: cocoo}\n", "data.format", "did you mean 'coco'"),
            ("eval: {metric: map50}\n", "eval.metric", "not a metric of task classification, which has accuracy, macro_accuracy"),
            ("task: detection\neval: {metric: accuracy}\n", "eval.metric", "not a metric of task detection, which has map50, map, map75, agnostic_map50"),
            ("detector: {fpn: {channels: 32}}\n", "detector", "only detection recipes have a detector section"),
            ("task: detection\ndata: {format: coco}\n", "data.path", "annotations/{train,val,test}.json"),
            ("task: detection\ndata: {format: dota}\n", "data.path", "labelTxt/"),
            ("task: detektion\n", "task", "did you mean 'detection'"),
        ] {
            let e = error(text)
            XCTAssertEqual(e?.key, key, text)
            XCTAssertTrue(e?.description.contains(what) ?? false, "\(text): \(String(describing: e))")
        }
        XCTAssertEqual(try Recipe.parse("task: detection\neval: {metric: agnostic_map50}\n").eval.metric, "agnostic_map50")
    }

    func testDetectorValidation() throws {
        for (body, key, what) in [
            ("fpn: {levels: [3, 5]}", "detector.fpn.levels", "contiguous levels starting at 3"),
            ("fpn: {levels: [4, 5, 6]}", "detector.fpn.levels", "contiguous levels starting at 3"),
            ("fpn: {levels: [3, 4, 5, 6, 7, 8]}", "detector.fpn.levels", "ending at 7 at most"),
            ("fpn: {levels: [3, 4, 5]}", "detector.anchors.sizes", "one size per FPN level: 3 levels"),
            ("anchors: {sizes: [16, 32, 0, 128, 256]}", "detector.anchors.sizes", "positive sizes"),
            ("anchors: {ratios: []}", "detector.anchors.ratios", "positive height/width ratios"),
            ("anchors: {scales: [1, -1]}", "detector.anchors.scales", "positive scale factors"),
            ("matcher: {fg_iou: 0.4, bg_iou: 0.5}", "detector.matcher.bg_iou", "must not exceed fg_iou (0.4)"),
            ("matcher: {fg_iou: 1.5}", "detector.matcher.fg_iou", "must be at most 1"),
            ("loss: {box_weights: [1, 1, 1]}", "detector.loss.box_weights", "four positive weights"),
            ("loss: {regression: smoothl1}", "detector.loss.regression", "did you mean 'smooth_l1'"),
            ("head: {prior_prob: 0}", "detector.head.prior_prob", "strictly between 0 and 1"),
            ("head: {convs: 9}", "detector.head.convs", "must be 0..8"),
            ("test: {topk: 0}", "detector.test.topk", "must be at least 1"),
            ("matcher: {fg_io: 0.5}", "detector.matcher.fg_io", "did you mean 'detector.matcher.fg_iou'"),
            ("heads: {convs: 2}", "detector.heads", "did you mean 'detector.head'"),
        ] {
            let text = "task: detection\ndetector:\n  \(body)\n"
            let e = error(text, file: "det.yaml")
            XCTAssertEqual(e?.key, key, body)
            XCTAssertTrue(e?.description.contains(what) ?? false, "\(body): \(String(describing: e))")
            XCTAssertEqual(e?.origin?.file, "det.yaml", body)
        }
        // Line and column of the offending value.
        let e = error("task: detection\ndetector:\n  matcher:\n    fg_iou: 2\n", file: "det.yaml")
        XCTAssertTrue(e!.description.hasPrefix("det.yaml:4:13: 'detector.matcher.fg_iou'"), e!.description)
        for (text, key, what) in [
            ("task: detection\ndata: {format: dota, path: x, dota: {tile: 512, gap: 512}}\n", "data.dota.gap", "smaller than tile (512)"),
            ("task: detection\ndata: {augment: {scale_range: [1.2, 0.8]}}\n", "data.augment.scale_range", "0 < low <= high"),
            ("task: detection\ndata: {augment: {scale_crop: 2}}\n", "data.augment.scale_crop", "must be at most 1"),
        ] {
            let e = error(text)
            XCTAssertEqual(e?.key, key, text)
            XCTAssertTrue(e?.description.contains(what) ?? false, "\(text): \(String(describing: e))")
        }
    }

    func testSetOverridesReachTheDetectorSection() throws {
        let r = try Recipe.parse("task: detection\n", overrides: ["detector.loss.regression=giou", "detector.fpn.levels=[3,4,5]", "detector.anchors.sizes=[32,64,128]"])
        XCTAssertEqual(r.detector.loss.regression, "giou")
        XCTAssertEqual(r.detector.anchors.sizes, [32, 64, 128])
    }
}
