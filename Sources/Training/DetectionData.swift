import Foundation
import Datasets
import Recipes

/// The splits of a detection dataset and the COCO ground truth each split is scored against.
/// `synth_coco` generates the synthetic aircraft benchmark once into the cache, `coco` reads a COCO
/// folder (`images/`, `annotations/{train,val,test}.json`), `dota` a folder of DOTA splits
/// (`<split>/images`, `<split>/labelTxt`) cut into tiles; DOTA patches are scored as COCO images of
/// the patch, with difficult and cut objects as crowd regions (neither found nor missed).
public struct DetectionData: Sendable {
    public let train: SampleSource
    public let val: SampleSource
    public let test: SampleSource
    public let root: String
    /// Class names in label order.
    public let classes: [String]
    /// The COCO category id of each label.
    public let categoryIds: [Int]
    let groundTruth: [String: COCODataset]

    public func split(_ name: String) -> SampleSource {
        switch name {
        case "train": return train
        case "val": return val
        default: return test
        }
    }

    /// Ground truth of a split for COCO evaluation.
    public func groundTruth(_ split: String) -> COCODataset { groundTruth[split] ?? groundTruth["test"]! }

    public static func open(_ spec: Recipe.DataSpec, log: (String) -> Void = { _ in }) throws -> DetectionData {
        switch spec.format {
        case "dota":
            return try openDOTA(spec.path!, tile: spec.dota.tile, gap: spec.dota.gap)
        case "coco":
            return try openCOCO(spec.path!)
        default:
            return try openCOCO(try SyntheticBenchmark.folder(spec, log: log))
        }
    }

    static func openCOCO(_ root: String) throws -> DetectionData {
        func load(_ split: String) throws -> COCOSource {
            let p = root + "/annotations/\(split).json"
            guard FileManager.default.fileExists(atPath: p) else {
                throw TrainingError("data: \(p) does not exist (data.path must be a COCO folder with images/ and annotations/{train,val,test}.json, as `qat data synth` writes)")
            }
            do { return try COCOSource(root: root, split: split) } catch { throw TrainingError("data: \(error)") }
        }
        let train = try load("train"), val = try load("val"), test = try load("test")
        guard train.count > 0 else { throw TrainingError("data: \(root)/annotations/train.json lists no images") }
        let cats = train.dataset.categories.sorted { $0.id < $1.id }
        for (name, s) in [("val", val), ("test", test)] where s.dataset.categories.sorted(by: { $0.id < $1.id }).map(\.id) != cats.map(\.id) {
            throw TrainingError("data: \(root)/annotations/\(name).json has other categories than train.json (\(s.dataset.categories.count) vs \(cats.count)); every split must list the same categories")
        }
        return DetectionData(train: train, val: val, test: test, root: root, classes: cats.map(\.name), categoryIds: cats.map(\.id),
                             groundTruth: ["train": train.dataset, "val": val.dataset, "test": test.dataset])
    }

    static func openDOTA(_ root: String, tile: Int, gap: Int) throws -> DetectionData {
        do {
            let train = try DOTASource(root: root, split: "train", tile: tile, gap: gap)
            let val = try DOTASource(root: root, split: "val", tile: tile, gap: gap, categories: train.categories)
            let test = try DOTASource(root: root, split: "test", tile: tile, gap: gap, categories: train.categories)
            let ids = Array(1...max(1, train.categories.count))
            func truth(_ s: DOTASource) -> COCODataset {
                var anns: [COCODataset.Annotation] = []
                let images = s.patches.enumerated().map { i, p -> COCODataset.ImageInfo in
                    for o in p.tile.objects where !o.difficult {
                        anns.append(.init(id: anns.count + 1, imageId: i, categoryId: ids[s.categories.firstIndex(of: o.category)!], bbox: o.bbox,
                                          area: o.bbox[2] * o.bbox[3]))
                    }
                    // Difficult objects are crowd regions of their own type; a cut object's visible part has no
                    // type left in the tile, so it is a crowd region of every type.
                    for o in p.tile.objects where o.difficult {
                        anns.append(.init(id: anns.count + 1, imageId: i, categoryId: ids[s.categories.firstIndex(of: o.category)!], bbox: o.bbox,
                                          area: o.bbox[2] * o.bbox[3], iscrowd: 1))
                    }
                    for b in p.tile.ignoreBoxes {
                        for c in ids { anns.append(.init(id: anns.count + 1, imageId: i, categoryId: c, bbox: b, area: b[2] * b[3], iscrowd: 1)) }
                    }
                    return .init(id: i, fileName: p.image, width: p.tile.width, height: p.tile.height)
                }
                return COCODataset(images: images, annotations: anns,
                                   categories: s.categories.enumerated().map { .init(id: ids[$0.offset], name: $0.element) })
            }
            return DetectionData(train: train, val: val, test: test, root: root, classes: train.categories, categoryIds: ids,
                                 groundTruth: ["train": truth(train), "val": truth(val), "test": truth(test)])
        } catch let e as TrainingError { throw e } catch { throw TrainingError("data: \(error)") }
    }
}
