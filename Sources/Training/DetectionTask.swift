import Foundation
import Files
import Kernels
import Autodiff
import NN
import Prune
import Datasets
import Detection
import Evaluation
import Recipes

/// Object detection (the aircraft detector): a RetinaNet on the recipe's backbone, trained on a loss
/// dictionary (`classification`, `bbox_regression`), evaluated with COCO metrics equal to pycocotools'
/// (mAP@[.5:.95], mAP50, mAP75, by area, recall) plus class-agnostic AP ("does it find aircraft at all").
public final class DetectionTask: TrainingTask {
    public let recipe: Recipe
    public let data: DetectionData
    let trainLoader: Loader
    /// Detections of the last evaluation per split (original image coordinates), for results files.
    var lastResults: [String: [DetectionResult]] = [:]
    var lastEvaluation: [String: COCOEvalResult] = [:]

    public init(recipe: Recipe, log: (String) -> Void = { _ in }) throws {
        guard recipe.data.inputSize % 32 == 0 else {
            throw TrainingError("data.input_size \(recipe.data.inputSize): a detector needs a multiple of 32 (the FPN adds levels 32 px apart), e.g. 256")
        }
        if let t = recipe.detector.test.inputSize, t % 32 != 0 {
            throw TrainingError("detector.test.input_size \(t): a detector needs a multiple of 32 (the FPN adds levels 32 px apart), e.g. 320")
        }
        self.recipe = recipe
        data = try DetectionData.open(recipe.data, log: log)
        trainLoader = try Loader(data.train, config: loaderConfig(recipe, batch: recipe.train.batch, train: true))
    }

    public var classes: [String] { data.classes }
    public var trainCount: Int { data.train.count }
    public var dataRoot: String { data.root }

    /// The detector a recipe describes, for `classes` classes: `detector.design` retinanet (the
    /// baseline) or decoupled (the thesis' design). `typeCounts` (training boxes per class) feed the
    /// decoupled design's long-tail type losses; evaluation and prediction need none.
    public static func makeDetector(_ r: Recipe, classes: Int, typeCounts: [Int] = [], rng: inout RNG) throws -> any Detector {
        let d = r.detector
        var c = RetinaNetConfig(numClasses: classes)
        c.fpnChannels = d.fpn.channels; c.levels = d.fpn.levels
        c.headConvs = d.head.convs; c.groupNorm = d.head.groupNorm; c.priorProbability = Float(d.head.priorProb)
        c.anchorSizes = d.anchors.sizes.map(Double.init); c.anchorScales = d.anchors.scales; c.anchorRatios = d.anchors.ratios
        c.integerSizes = d.anchors.integerSizes
        c.fgIoU = Float(d.matcher.fgIoU); c.bgIoU = Float(d.matcher.bgIoU); c.lowQualityMatches = d.matcher.lowQuality
        c.ignoreIoF = Float(d.matcher.ignoreIoF)
        c.focalAlpha = Float(d.loss.focalAlpha); c.focalGamma = Float(d.loss.focalGamma)
        guard let reg = RetinaNetConfig.Regression(rawValue: d.loss.regression) else {
            throw TrainingError("detector.loss.regression: '\(d.loss.regression)' is not one of \(RetinaNetConfig.Regression.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        c.regression = reg; c.smoothL1Beta = Float(d.loss.smoothL1Beta); c.boxWeights = d.loss.boxWeights.map(Float.init)
        c.regressionWeight = Float(d.loss.regressionWeight)
        c.scoreThreshold = Float(d.test.scoreThreshold); c.topkCandidates = d.test.topk; c.nmsIoU = d.test.nmsIoU
        c.maxDetections = d.test.maxDetections
        do {
            let backbone = try Backbones.make(r.model.backbone, width: r.model.width, numClasses: nil, rng: &rng)
            let model: any Detector = d.design == "decoupled"
                ? try DecoupledRetinaNet(backbone: backbone, config: try decoupledConfig(d, base: c, typeCounts: typeCounts), rng: &rng)
                : try RetinaNet(backbone: backbone, config: c, rng: &rng)
            if !r.model.channels.isEmpty {   // a pruned detector's shapes (`qat prune`)
                do { try Pruner.resize(model, channels: r.model.channels.map { ($0.group, $0.keep) }) } catch { throw TrainingError("\(error)") }
            }
            return model
        } catch let e as TrainingError { throw e } catch { throw TrainingError("detector: \(error)") }
    }

    /// The recipe's thesis switches (`detector.objectness`, `assigner`, `fine_grained`, `type_loss`,
    /// `support`, `label_noise`); the recipe reader has already checked every value's range and choice.
    static func decoupledConfig(_ d: Recipe.Detector, base: RetinaNetConfig, typeCounts: [Int]) throws -> DecoupledConfig {
        func choice<T: RawRepresentable>(_ key: String, _ v: String) throws -> T where T.RawValue == String {
            guard let x = T(rawValue: v) else { throw TrainingError("detector.\(key): '\(v)' is not supported") }
            return x
        }
        var c = DecoupledConfig(base: base)
        c.objectness = try choice("objectness.loss", d.objectness.loss)
        c.qflBeta = Float(d.objectness.qflBeta); c.vflAlpha = Float(d.objectness.vflAlpha); c.vflGamma = Float(d.objectness.vflGamma)
        c.ohemRatio = Float(d.objectness.ohemRatio); c.ghmBins = d.objectness.ghmBins; c.ghmMomentum = Float(d.objectness.ghmMomentum)
        c.assigner = try choice("assigner.name", d.assigner.name); c.atssTopk = d.assigner.atssTopk
        c.talTopk = d.assigner.talTopk; c.talAlpha = Float(d.assigner.talAlpha); c.talBeta = Float(d.assigner.talBeta)
        c.assignerWarmupSteps = d.assigner.warmupSteps
        let f = d.fineGrained
        c.pool = f.pool; c.samplingRatio = f.samplingRatio; c.fineConvs = f.convs; c.fineHidden = f.hidden
        c.canonicalSize = f.canonicalSize; c.canonicalLevel = f.canonicalLevel
        c.roisPerBox = f.roisPerBox; c.typesPerBox = f.typesPerBox; c.typeLossWeight = Float(f.lossWeight)
        let t = d.typeLoss
        c.typeLoss = try choice("type_loss.name", t.name); c.classWeightBeta = Float(t.beta); c.eqlLambda = Float(t.eqlLambda); c.eqlGamma = Float(t.eqlGamma)
        c.eqlv2Gamma = Float(t.eqlv2Gamma); c.eqlv2Mu = Float(t.eqlv2Mu); c.eqlv2Alpha = Float(t.eqlv2Alpha)
        c.seesawP = Float(t.seesawP); c.seesawQ = Float(t.seesawQ)
        c.typeCounts = typeCounts
        c.supportWeight = Float(d.support.weight); c.supportMargin = Float(d.support.margin)
        let n = d.labelNoise
        c.labelNoise = try choice("label_noise.method", n.method); c.bootstrapBeta = Float(n.bootstrapBeta)
        c.smallLossRate = Float(n.smallLossRate); c.noiseWarmupSteps = n.warmupSteps
        return c
    }

    /// Training boxes per class (crowd and ignore regions left out), in label order.
    var trainTypeCounts: [Int] {
        let gt = data.groundTruth("train")
        var count: [Int: Int] = [:]
        for a in gt.annotations where (a.iscrowd ?? 0) == 0 && (a.ignore ?? 0) == 0 { count[a.categoryId, default: 0] += 1 }
        return data.categoryIds.map { count[$0] ?? 0 }
    }

    public func makeModel(rng: inout RNG) throws -> Module { try DetectionTask.makeDetector(recipe, classes: classes.count, typeCounts: trainTypeCounts, rng: &rng) }

    public func trainOrder(epoch: Int) -> [Int] { trainLoader.order(epoch: epoch) }

    static func detector(_ model: Module) -> any Detector {
        guard let d = model as? any Detector else { preconditionFailure("DetectionTask: the model is a \(type(of: model)), not a detector") }
        return d
    }

    static func targets(_ b: Batch) -> [DetectionTarget] {
        (0..<b.boxes.count).map { i in
            DetectionTarget(boxes: XYXYBoxes(xywh: b.boxes[i]), labels: b.labels[i], ignoreRegions: XYXYBoxes(xywh: b.ignoreBoxes[i]))
        }
    }

    public func losses(model: Module, epoch: Int, indices: [Int]) throws -> [String: Tensor] {
        let b = try trainLoader.makeBatch(epoch: epoch, indices: indices)
        return DetectionTask.detector(model).losses(images: Tensor(shape: b.shape, storage: b.images), targets: DetectionTask.targets(b))
    }

    public func calibrationInputs(batches: Int) throws -> [Tensor] { try unaugmentedBatches(data.train, recipe: recipe, batches: batches) }

    /// Evaluation inputs of a split (letterboxed to the test size), `eval.batch` images a batch.
    public func inputs(split: String, batches: Int) throws -> [Tensor] {
        try orderedBatches(data.split(split), config: testLoaderConfig(batch: recipe.eval.batch), batches: batches)
    }

    /// Evaluation batches: unaugmented, letterboxed to `detector.test.input_size` (else the training size).
    func testLoaderConfig(batch: Int) -> Loader.Config {
        var c = loaderConfig(recipe, batch: batch, train: false)
        c.size = recipe.detector.test.inputSize ?? recipe.data.inputSize
        return c
    }

    /// Detections of a whole split in original image coordinates (COCO results entries).
    public func detect(model: Module, split: String) throws -> [DetectionResult] {
        let det = DetectionTask.detector(model), source = data.split(split), size = recipe.eval.batch
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        let loader = try Loader(source, config: testLoaderConfig(batch: size))
        var out: [DetectionResult] = []
        var start = 0
        while start < source.count {
            let b = try loader.makeBatch(epoch: 0, indices: Array(start..<min(start + size, source.count)))
            let dets = det.detect(Tensor(shape: b.shape, storage: b.images))
            for (i, d) in dets.enumerated() {
                for j in 0..<d.count {
                    let box = b.letterboxes[i].toOriginal(d.boxes.xywh(j))
                    guard box[2] > 0, box[3] > 0 else { continue }   // wholly in the letterbox padding
                    out.append(DetectionResult(imageId: b.imageIds[i], categoryId: data.categoryIds[d.labels[j]], box: COCOBox(xywh: box),
                                               score: Double(d.scores[j])))
                }
            }
            start += size
        }
        return out
    }

    /// The 12 pycocotools numbers (map, map50, map75, map_small, map_medium, map_large, ar1, ar10, ar100,
    /// ar_small, ar_medium, ar_large; -1 where undefined), class-agnostic AP (agnostic_map50,
    /// agnostic_map: pycocotools' useCats=0 after `ClassAgnosticMerge` at the recipe's test NMS IoU),
    /// per-class AP and AP50, objects per class.
    public func evaluate(model: Module, split: String) throws -> TaskMetrics {
        let results = try detect(model: model, split: split)
        let gt = data.groundTruth(split)
        let coco: COCOEvalResult, agnostic: COCOEvalResult
        do {
            coco = try COCOEval.evaluate(gt, results)
            agnostic = try COCOEval.evaluate(gt, ClassAgnosticMerge.merge(results, iouThreshold: recipe.detector.test.nmsIoU), classAgnostic: true)
        } catch { throw TrainingError("evaluation of \(split): \(error)") }
        lastResults[split] = results
        lastEvaluation[split] = coco
        var values: [String: Double] = [:]
        for (name, v) in zip(DetectionTask.statNames, coco.stats) { values[name] = v }
        values["agnostic_map50"] = agnostic.stats[1]
        values["agnostic_map"] = agnostic.stats[0]
        if let m = model as? any TypeClassifier {
            var c = loaderConfig(recipe, batch: recipe.eval.batch, train: false)
            c.size = recipe.data.inputSize
            if let audit = try LabelAudit.run(m, source: data.train, config: c, margin: Float(recipe.detector.labelNoise.flagMargin)) {
                values["noise_flag_precision"] = audit.precision
                values["noise_flag_recall"] = audit.recall
                values["noise_wrong_labels"] = Double(audit.wrong)
                values["noise_flagged"] = Double(audit.flagged)
            }
        }
        let byId = Dictionary(uniqueKeysWithValues: coco.perClass.map { ($0.categoryId, $0) })
        let count = data.categoryIds.map { id in gt.annotations.filter { $0.categoryId == id && ($0.iscrowd ?? 0) == 0 }.count }
        var m = TaskMetrics(split: split, samples: gt.images.count, values: values,
                            perClass: ["ap": data.categoryIds.map { byId[$0]?.ap ?? -1 }, "ap50": data.categoryIds.map { byId[$0]?.ap50 ?? -1 }],
                            perClassCount: count)
        HeadTail.add(to: &m, perClass: ["ap50"])
        return m
    }

    static let statNames = ["map", "map50", "map75", "map_small", "map_medium", "map_large",
                            "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large"]

    /// pycocotools' summary lines, class-agnostic AP and a per-class AP table.
    public func report(_ m: TaskMetrics) -> String {
        let labels = [("Average Precision", "0.50:0.95", "all", 100), ("Average Precision", "0.50", "all", 100),
                      ("Average Precision", "0.75", "all", 100), ("Average Precision", "0.50:0.95", "small", 100),
                      ("Average Precision", "0.50:0.95", "medium", 100), ("Average Precision", "0.50:0.95", "large", 100),
                      ("Average Recall", "0.50:0.95", "all", 1), ("Average Recall", "0.50:0.95", "all", 10),
                      ("Average Recall", "0.50:0.95", "all", 100), ("Average Recall", "0.50:0.95", "small", 100),
                      ("Average Recall", "0.50:0.95", "medium", 100), ("Average Recall", "0.50:0.95", "large", 100)]
        var s = "split \(m.split), \(m.samples) images\n"
        for (name, l) in zip(DetectionTask.statNames, labels) {
            let short = l.0 == "Average Precision" ? "(AP)" : "(AR)"
            // pycocotools' ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}'
            let area = String(repeating: " ", count: max(0, 6 - l.2.count)) + l.2
            let dets = String(repeating: " ", count: max(0, 3 - String(l.3).count)) + String(l.3)
            s += " " + l.0.padding(toLength: 18, withPad: " ", startingAt: 0) + " \(short) @[ IoU=" + l.1.padding(toLength: 9, withPad: " ", startingAt: 0)
                + " | area=\(area) | maxDets=\(dets) ] = " + String(format: "%.3f\n", m.values[name] ?? -1)
        }
        s += String(format: "class-agnostic AP50 %.3f, AP %.3f (any aircraft found, whatever its type)\n", m.values["agnostic_map50"] ?? -1, m.values["agnostic_map"] ?? -1)
        s += "class                           objects     AP   AP50\n"
        let ap = m.perClass["ap"] ?? [], ap50 = m.perClass["ap50"] ?? []
        for (i, name) in classes.enumerated() where i < ap.count {
            func f(_ v: Double) -> String { v < 0 ? "     -" : String(format: "%6.3f", v) }
            s += name.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: " %8d ", i < m.perClassCount.count ? m.perClassCount[i] : 0) + f(ap[i]) + " " + f(ap50[i]) + "\n"
        }
        return s
    }

    /// `<prefix>.results.json`: the detections of the last evaluation of `split` as a COCO results file
    /// (original image coordinates, the dataset's category ids), for any COCO tool.
    public func writeEvaluationFiles(split: String, prefix: String) throws -> [String] {
        guard let results = lastResults[split] else { return [] }
        let path = prefix + ".results.json"
        do { try COCOResults.write(results, to: path) } catch { throw TrainingError("writing \(path): \(error)") }
        return [path]
    }

    /// `curves.json`: precision-recall curves per class at IoU 0.5 (area all, 100 detections) of the
    /// last evaluation of `split`; `figures/predictions-<image id>.png`: the first four images of the
    /// split with ground truth (white) and detections scoring at least 0.3 drawn.
    public func writeRunFigures(model: Module, split: String, dir: String) throws {
        if let e = lastEvaluation[split] {
            var series: [[String: Any]] = []
            for (k, id) in e.categoryIds.enumerated() {
                guard let c = e.precisionRecallCurve(category: k), let i = data.categoryIds.firstIndex(of: id) else { continue }
                series.append(["name": classes[i], "x": c.recall, "y": c.precision.map { max($0, 0) }])
            }
            let o: [String: Any] = ["title": "Precision-recall at IoU 0.5 (\(split) split)", "xlabel": "recall", "ylabel": "precision", "series": series]
            try AtomicFile.write(JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), to: dir + "/curves.json", replacing: .anything)
        }
        let source = data.split(split), n = min(4, source.count)
        guard n > 0 else { return }
        try FileManager.default.createDirectory(atPath: dir + "/figures", withIntermediateDirectories: true)
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        let b = try Loader(source, config: testLoaderConfig(batch: n)).makeBatch(epoch: 0, indices: Array(0..<n))
        let dets = DetectionTask.detector(model).detect(Tensor(shape: b.shape, storage: b.images))
        for i in 0..<n {
            let sample = try source.sample(i)
            var img = sample.image
            for box in sample.boxes + sample.ignoreBoxes { Draw.box(&img, box, color: (255, 255, 255)) }
            Prediction.draw(&img, dets[i], letterbox: b.letterboxes[i], classes: classes, minScore: 0.3)
            try ImageCodec.writePNG(Draw.upscale(img, 2), to: dir + "/figures/predictions-\(b.imageIds[i]).png")
        }
    }

    /// A classifier checkpoint initialises the backbone (its classifier is left out); a detector
    /// checkpoint loads as it is.
    public func initPath(forCheckpointPath path: String) -> String? {
        if (RetinaNet.topLevelModules + DecoupledRetinaNet.topLevelModules).contains(where: { path.hasPrefix($0 + ".") }) { return path }
        if path.hasPrefix("classifier") || path.hasPrefix("fc.") { return nil }
        return "backbone." + path
    }
}
