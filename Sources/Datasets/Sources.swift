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

/// A DOTA folder (`images/<name>.png|jpg`, `labelTxt/<name>.txt`) cut into DOTA-style patches, each
/// patch a sample. Categories are the sorted set of names found in the labels unless given.
public struct DOTASource: SampleSource {
    public struct Patch: Sendable { public var image: String; public var tile: Tiling.Tile }
    public let root: String
    public let categories: [String]
    public let patches: [Patch]
    public var count: Int { patches.count }

    public init(root: String, size: Int = 1024, gap: Int = 200, minVisible: Double = 0.7, categories: [String]? = nil) throws {
        self.root = root
        let fm = FileManager.default
        guard let files = try? fm.contentsOfDirectory(atPath: root + "/images") else {
            throw DataError(file: root + "/images", "DOTA folder needs images/ and labelTxt/")
        }
        var labels: [(String, DOTALabel, Int, Int)] = []
        for f in files.sorted() where ["png", "jpg", "jpeg"].contains((f as NSString).pathExtension.lowercased()) {
            let stem = (f as NSString).deletingPathExtension
            let label = try DOTALabel.load(root + "/labelTxt/" + stem + ".txt")
            guard let data = fm.contents(atPath: root + "/images/" + f) else { throw DataError(file: root + "/images/" + f, "cannot be read") }
            let img = try ImageCodec.decode(data, channels: 3, file: root + "/images/" + f)
            labels.append((f, label, img.width, img.height))
        }
        guard !labels.isEmpty else { throw DataError(file: root + "/images", "has no .png/.jpg images") }
        let names = categories ?? Array(Set(labels.flatMap { $0.1.objects.map(\.category) })).sorted()
        for (f, l, _, _) in labels {
            if let unknown = l.objects.first(where: { !names.contains($0.category) }) {
                throw DataError(file: root + "/labelTxt/" + (f as NSString).deletingPathExtension + ".txt", "unknown category '\(unknown.category)'; known: \(names.joined(separator: ", "))")
            }
        }
        self.categories = names
        patches = try labels.flatMap { f, l, w, h in
            try Tiling.tiles(imageWidth: w, imageHeight: h, objects: l.objects, size: size, gap: gap, minVisible: minVisible).map { Patch(image: f, tile: $0) }
        }
    }

    /// Difficult objects (DOTA's flag, or boxes the tiler cut) are left out of the sample's boxes: DOTA's
    /// evaluation counts them neither as positives nor as negatives.
    public func sample(_ i: Int) throws -> Sample {
        let p = patches[i]
        let img = Tiling.crop(try ImageCodec.decode(file: root + "/images/" + p.image, channels: 3), p.tile)
        let objs = p.tile.objects.filter { !$0.difficult }
        return Sample(image: img, boxes: objs.map(\.bbox), labels: objs.map { categories.firstIndex(of: $0.category)! })
    }
}
