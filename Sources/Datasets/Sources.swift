import Foundation

/// A COCO folder (`images/`, `annotations/<split>.json`) as a `SampleSource`. Crowd and ignored boxes
/// are left out of the sample's boxes (a detector must neither learn nor be penalised on them);
/// labels are 0-based indices into `categories` (sorted by category id).
public struct COCOSource: SampleSource {
    public let dataset: COCODataset
    public let root: String
    public let categoryIndex: [Int: Int]
    public var count: Int { dataset.images.count }

    public init(root: String, split: String) throws {
        self.root = root
        dataset = try COCODataset.load(root + "/annotations/\(split).json")
        categoryIndex = Dictionary(uniqueKeysWithValues: dataset.categories.map(\.id).sorted().enumerated().map { ($1, $0) })
        for im in dataset.images where !FileManager.default.fileExists(atPath: root + "/images/" + im.fileName) {
            throw DataError(file: root + "/images/" + im.fileName, "is listed in annotations/\(split).json (image id \(im.id)) but missing")
        }
    }

    public func sample(_ i: Int) throws -> Sample {
        let info = dataset.images[i]
        let img = try ImageCodec.decode(file: root + "/images/" + info.fileName, channels: 3)
        guard img.width == info.width, img.height == info.height else {
            throw DataError(file: root + "/images/" + info.fileName, "is \(img.width)x\(img.height) but the annotations say \(info.width)x\(info.height)")
        }
        let anns = dataset.annotations(forImage: info.id).filter { !$0.isIgnored }
        return Sample(image: img, boxes: anns.map(\.bbox), labels: anns.map { categoryIndex[$0.categoryId]! })
    }
}
