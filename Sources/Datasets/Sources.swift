import Foundation

/// A COCO folder (`images/`, `annotations/<split>.json`) as a `SampleSource`. Crowd and `ignore: 1`
/// boxes become the sample's ignore regions (a detector must neither learn nor be penalised on them);
/// labels are 0-based indices into the categories sorted by id; the sample's image id is the COCO one.
public struct COCOSource: SampleSource {
    public let dataset: COCODataset
    public let root: String
    public let categoryIndex: [Int: Int]
    /// Annotations dropped by `skipInvalid` (box outside the image or degenerate, unknown image or
    /// category id), each with its reason; empty without `skipInvalid`.
    public let skipped: [String]
    /// Positions in `dataset.annotations` of each image's annotations, in `dataset.images` order (a
    /// scan of all annotations per sample would cost O(annotations) per image on COCO-sized files).
    let annotationsOfImage: [[Int]]
    public var count: Int { dataset.images.count }

    /// Loads `annotations/<split>.json` and checks that every image exists inside `images/` (a
    /// `file_name` with `..`, an absolute path, or a symlink out of the folder is refused).
    public init(root: String, split: String, skipInvalid: Bool = false) throws {
        self.root = root
        let file = root + "/annotations/\(split).json"
        (dataset, skipped) = try COCODataset.load(file, skipInvalid: skipInvalid)
        categoryIndex = Dictionary(uniqueKeysWithValues: dataset.categories.map(\.id).sorted().enumerated().map { ($1, $0) })
        let imagesDir = root + "/images"
        if !dataset.images.isEmpty {
            guard let base = DatasetPath.canonical(imagesDir) else {
                throw DataError(file: imagesDir, "does not exist, but annotations/\(split).json lists \(dataset.images.count) images; a COCO folder holds images/ and annotations/")
            }
            for im in dataset.images {
                switch DatasetPath.check(im.fileName, in: imagesDir, canonicalFolder: base) {
                case .inside: continue
                case .missing(let path): throw DataError(file: path, "is listed in annotations/\(split).json (image id \(im.id)) but missing")
                case .outside(let why):
                    throw DataError(file: file, "image id \(im.id): file_name '\(im.fileName)' \(why), which leaves \(imagesDir); refused. "
                                    + "Put the image inside images/ and give its path relative to that folder")
                }
            }
        }
        var position: [Int: Int] = [:]
        for (k, im) in dataset.images.enumerated() { position[im.id] = k }
        var of = [[Int]](repeating: [], count: dataset.images.count)
        for (k, a) in dataset.annotations.enumerated() { of[position[a.imageId]!].append(k) }
        annotationsOfImage = of
    }

    public func sample(_ i: Int) throws -> Sample {
        let info = dataset.images[i]
        let img = try ImageCodec.decode(file: root + "/images/" + info.fileName, channels: 3)
        guard img.width == info.width, img.height == info.height else {
            throw DataError(file: root + "/images/" + info.fileName, "is \(img.width)x\(img.height) but the annotations say \(info.width)x\(info.height)")
        }
        var s = Sample(image: img, imageId: info.id)
        var clean: [Int] = [], knowsClean = false
        for k in annotationsOfImage[i] {
            let a = dataset.annotations[k]
            if a.isIgnored { s.ignoreBoxes.append(a.bbox) } else {
                s.boxes.append(a.bbox); s.labels.append(categoryIndex[a.categoryId]!)
                // COCODataset validated clean_category_id against the categories.
                clean.append(categoryIndex[a.cleanCategoryId ?? a.categoryId]!)
                knowsClean = knowsClean || a.cleanCategoryId != nil
            }
        }
        if knowsClean { s.cleanLabels = clean }
        return s
    }
}

/// A DOTA folder (`images/<name>.png|jpg`, `labelTxt/<name>.txt`) cut into DOTA-style patches, each
/// patch a sample. Categories are the sorted set of names found in the labels unless given. A patch's
/// image id is its index in `patches` (images in name order, each image's patches row by row), stable
/// for the same folder, `tile` and `gap`.
public struct DOTASource: SampleSource {
    public struct Patch: Sendable { public var image: String; public var tile: Tiling.Tile }
    public let root: String
    public let categories: [String]
    public let patches: [Patch]
    let categoryIndex: [String: Int]
    public var count: Int { patches.count }

    /// One split of a DOTA dataset: `<root>/<split>/images` and `<root>/<split>/labelTxt`. Each split
    /// would otherwise derive its own category list (val may lack a rare type), so pass the train
    /// split's `categories` to val and test; a category missing from the list is an error naming the
    /// label file and line.
    public init(root: String, split: String, tile: Int = 1024, gap: Int = 200, minVisible: Double = 0.7, categories: [String]? = nil) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root + "/" + split, isDirectory: &isDir), isDir.boolValue else {
            throw DataError(file: root + "/" + split, "does not exist; a DOTA dataset holds one folder per split, each with images/ and labelTxt/ (\(root)/\(split)/images, \(root)/\(split)/labelTxt)")
        }
        try self.init(root: root + "/" + split, tile: tile, gap: gap, minVisible: minVisible, categories: categories)
    }

    /// A folder holding `images/` and `labelTxt/` directly.
    public init(root: String, tile: Int = 1024, gap: Int = 200, minVisible: Double = 0.7, categories: [String]? = nil) throws {
        self.root = root
        let fm = FileManager.default
        let imagesDir = root + "/images", labelDir = root + "/labelTxt"
        guard let files = try? fm.contentsOfDirectory(atPath: imagesDir), let base = DatasetPath.canonical(imagesDir) else {
            throw DataError(file: imagesDir, "DOTA folder needs images/ and labelTxt/")
        }
        let labelBase = DatasetPath.canonical(labelDir)
        var labels: [(String, DOTALabel, Int, Int)] = []
        for f in files.sorted() where ["png", "jpg", "jpeg"].contains((f as NSString).pathExtension.lowercased()) {
            let stem = (f as NSString).deletingPathExtension
            if case .outside(let why) = DatasetPath.check(f, in: imagesDir, canonicalFolder: base) {
                throw DataError(file: imagesDir + "/" + f, "\(why), which leaves \(imagesDir); refused. Copy the image into images/ (or link the whole folder instead of single files)")
            }
            if let lb = labelBase, case .outside(let why) = DatasetPath.check(stem + ".txt", in: labelDir, canonicalFolder: lb) {
                throw DataError(file: labelDir + "/" + stem + ".txt", "\(why), which leaves \(labelDir); refused. Copy the label file into labelTxt/")
            }
            let label = try DOTALabel.load(labelDir + "/" + stem + ".txt")
            let img = try ImageCodec.decode(file: imagesDir + "/" + f, channels: 3)
            labels.append((f, label, img.width, img.height))
        }
        guard !labels.isEmpty else { throw DataError(file: imagesDir, "has no .png/.jpg images") }
        let names = categories ?? Array(Set(labels.flatMap { $0.1.objects.map(\.category) })).sorted()
        let index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        guard index.count == names.count else { throw DataError(file: root, "categories must not repeat a name, got \(names)") }
        for (f, l, _, _) in labels {
            if let unknown = l.objects.first(where: { index[$0.category] == nil }) {
                throw DataError(file: labelDir + "/" + (f as NSString).deletingPathExtension + ".txt",
                                "line \(unknown.line): unknown category '\(unknown.category)'; known: \(names.joined(separator: ", ")). "
                                + "Every split must use one list: pass the train split's categories to the others, or fix the label")
            }
        }
        self.categories = names
        categoryIndex = index
        patches = try labels.flatMap { f, l, w, h in
            try Tiling.tiles(imageWidth: w, imageHeight: h, objects: l.objects, size: tile, gap: gap, minVisible: minVisible).map { Patch(image: f, tile: $0) }
        }
    }

    /// Difficult objects (DOTA's flag, or boxes the tiler cut) and the parts of objects cut below
    /// `minVisible` become ignore regions: DOTA's evaluation counts difficult objects neither as
    /// positives nor as negatives, and a cut aircraft is not background.
    public func sample(_ i: Int) throws -> Sample {
        let p = patches[i]
        let img = Tiling.crop(try ImageCodec.decode(file: root + "/images/" + p.image, channels: 3), p.tile)
        var s = Sample(image: img, ignoreBoxes: p.tile.ignoreBoxes, imageId: i)
        for o in p.tile.objects {
            if o.difficult { s.ignoreBoxes.append(o.bbox) } else { s.boxes.append(o.bbox); s.labels.append(categoryIndex[o.category]!) }
        }
        return s
    }
}
