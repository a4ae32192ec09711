import Foundation
import Int8Engine
import UserPaths
import Kernels
import Autodiff
import NN
import Quant
import Checkpoint
import Datasets
import Detection
import Evaluation
import Recipes
import Files

/// Image files as a sample source (no annotations); sample i has image id i.
struct ImageFiles: SampleSource {
    let paths: [String]
    var count: Int { paths.count }
    func sample(_ i: Int) throws -> Sample { Sample(image: try ImageCodec.decode(file: paths[i], channels: 3), imageId: i) }
}

/// `qat predict`: a detector checkpoint on image files; draws boxes with type names and scores into PNGs
/// and writes the detections as a COCO results file (with an `images.json` naming each image id).
public enum Prediction {
    public struct Output: Sendable {
        public var images: [String]
        public var results: String
        public var detections: Int
    }

    /// The images named by `inputs` (files, or folders whose .png/.jpg/.jpeg files are taken in name order).
    static func collect(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        for p in inputs {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
                throw TrainingError("\(p)" + (PathProblem.brokenLink(p).map { ": " + $0 } ?? " does not exist"))
            }
            if isDir.boolValue {
                let files = ((try? FileManager.default.contentsOfDirectory(atPath: p)) ?? []).sorted()
                    .filter { ["png", "jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased()) }
                guard !files.isEmpty else { throw TrainingError("\(p) holds no .png/.jpg/.jpeg images") }
                out += files.map { p + "/" + $0 }
            } else { out.append(p) }
        }
        return out
    }

    static let palette: [(UInt8, UInt8, UInt8)] = [(255, 64, 64), (64, 220, 64), (64, 128, 255), (255, 200, 0), (255, 64, 255), (0, 230, 230),
                                                   (255, 140, 0), (160, 100, 255), (180, 255, 100), (255, 120, 160), (120, 200, 255), (230, 230, 230)]

    /// `int8`: run the detector's dense part on the int8 engine (a quantized checkpoint).
    public static func run(checkpoint path: String, inputs: [String], out: String, score: Double, int8: Bool = false,
                           log: (String) -> Void = { print($0) }) throws -> Output {
        guard (0...1).contains(score) else { throw TrainingError("--score \(score): a score threshold is in [0, 1]") }
        let (model, recipe, classes) = try loadDetector(path, int8: int8)
        let files = try collect(inputs)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let outputs = files.map { out + "/" + (($0 as NSString).lastPathComponent as NSString).deletingPathExtension + ".png" }
        let resolvedInputs = Set(files.map { URL(fileURLWithPath: $0).standardizedFileURL.path })
        for o in outputs where resolvedInputs.contains(URL(fileURLWithPath: o).standardizedFileURL.path) {
            throw TrainingError("--out \(out): writing \(o) would overwrite an input image; choose another folder")
        }
        guard Set(outputs).count == outputs.count else { throw TrainingError("two inputs have the same file name; predict them into separate --out folders") }
        let source = ImageFiles(paths: files)
        var c = Loader.Config()
        c.batchSize = max(1, min(recipe.eval.batch, 8)); c.size = recipe.detector.test.inputSize ?? recipe.data.inputSize; c.shuffle = false; c.policy = nil; c.prefetch = 1
        let loader = try Loader(source, config: c)
        var results: [DetectionResult] = []
        var infos: [COCODataset.ImageInfo] = []
        var start = 0
        model.eval()
        while start < files.count {
            let b = try loader.makeBatch(epoch: 0, indices: Array(start..<min(start + c.batchSize, files.count)))
            let dets = model.detect(Tensor(shape: b.shape, storage: b.images))
            for (k, d) in dets.enumerated() {
                let id = b.imageIds[k], lb = b.letterboxes[k]
                var img = try ImageCodec.decode(file: files[id], channels: 3)
                infos.append(.init(id: id, fileName: (files[id] as NSString).lastPathComponent, width: img.width, height: img.height))
                for (box, label, s) in draw(&img, d, letterbox: lb, classes: classes, minScore: score) {
                    results.append(DetectionResult(imageId: id, categoryId: label + 1, box: COCOBox(xywh: box), score: s))
                }
                try ImageCodec.writePNG(img, to: outputs[id])
            }
            start += c.batchSize
        }
        results.sort { ($0.imageId, -$0.score) < ($1.imageId, -$1.score) }
        let resultsPath = out + "/results.json"
        do { try AtomicFile.write(try COCOResults.encode(results), to: resultsPath) } catch { throw TrainingError("\(error)") }
        // The image ids and category ids the results refer to, as a COCO skeleton (no annotations).
        let skeleton = COCODataset(images: infos.sorted { $0.id < $1.id }, annotations: [],
                                   categories: classes.enumerated().map { .init(id: $0.offset + 1, name: $0.element) })
        do { try AtomicFile.write(try JSONCoding.encoder().encode(COCOSkeleton(skeleton)), to: out + "/images.json") } catch { throw TrainingError("\(error)") }
        log("predicted \(files.count) images: \(results.count) detections at score >= \(score); drawn into \(out)/, results in \(resultsPath) (category ids: 1 + class index, see \(out)/images.json)")
        return Output(images: outputs, results: resultsPath, detections: results.count)
    }

    /// Draws the detections with at least `minScore` (mapped from input to original coordinates) on the
    /// original image: a box in the class colour, the type name and the score in percent. Returns what
    /// was drawn as ([x, y, w, h], label, score).
    @discardableResult
    static func draw(_ img: inout Image, _ d: Detections, letterbox lb: Letterbox, classes: [String], minScore: Double) -> [([Double], Int, Double)] {
        var drawn: [([Double], Int, Double)] = []
        // Lowest score first, so the strongest boxes are drawn on top.
        for j in (0..<d.count).reversed() where Double(d.scores[j]) >= minScore {
            let box = lb.toOriginal(d.boxes.xywh(j))
            guard box[2] > 0, box[3] > 0 else { continue }
            let color = palette[d.labels[j] % palette.count]
            Draw.box(&img, box, color: color)
            Draw.text(&img, "\(classes[d.labels[j]]) \(Int((d.scores[j] * 100).rounded()))", x: Int(box[0]), y: max(0, Int(box[1]) - 9), color: color)
            drawn.append((box, d.labels[j], Double(d.scores[j])))
        }
        return drawn.reversed()
    }

    /// The detector of a checkpoint written by `qat train` on a detection recipe (quantized if it was).
    static func loadDetector(_ path: String, int8: Bool = false) throws -> (any Detector, Recipe, [String]) {
        let c = try TrainingRun.loadCheckpoint(path)   // missing files and folders are named there
        let recipe: Recipe
        do { recipe = try Recipe.parse(c.recipe, file: "\(path) (stored recipe)") } catch { throw TrainingError("\(error)") }
        guard recipe.task == "detection" else { throw TrainingError("\(path) is a \(recipe.task) checkpoint; qat predict needs a detector (task: detection)") }
        guard let classes = TrainingRun.state(c)["classes"] as? [String], !classes.isEmpty else {
            throw TrainingError("\(path) does not name its classes (written by an older version?)")
        }
        // The same build as `qat eval` (PTQ structure, quantizers), without opening the recipe's data.
        let (model, _) = try buildModel(recipe, quantized: TrainingRun.isQuantized(c), ptqStructure: TrainingRun.isQuantized(c)) {
            try DetectionTask.makeDetector(recipe, classes: classes.count, rng: &$0)
        }
        try loadForEvaluation(c, into: model, recipe: recipe, path: path)
        guard int8 else { return (DetectionTask.detector(model), recipe, classes) }
        guard TrainingRun.isQuantized(c) else { throw TrainingError("\(path): --engine int8 runs quantized checkpoints (QAT or PTQ); this one has float weights only") }
        model.eval()
        do { return (DetectionTask.detector(try Int8Engine.module(for: model)), recipe, classes) } catch { throw TrainingError("\(path): \(error)") }
    }
}

/// COCODataset's file layout for writing (images, annotations, categories).
struct COCOSkeleton: Encodable {
    let images: [COCODataset.ImageInfo], annotations: [COCODataset.Annotation], categories: [COCODataset.Category]
    init(_ d: COCODataset) { images = d.images; annotations = d.annotations; categories = d.categories }
}
