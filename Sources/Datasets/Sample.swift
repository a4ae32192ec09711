/// An image with its objects: axis-aligned boxes ([x, y, w, h] in pixels, COCO's layout) and one label
/// per box, plus ignore regions.
public struct Sample: Sendable, Equatable {
    public var image: Image
    public var boxes: [[Double]]
    public var labels: [Int]
    /// Regions ([x, y, w, h]) that are neither objects nor background: COCO crowd and `ignore: 1`
    /// boxes, DOTA difficult objects, and the visible parts of objects a tile or crop cut. Dropping them
    /// instead would turn them into negatives, so a detector would be taught that a crowd of aircraft,
    /// or half an aircraft at a tile edge, is background.
    public var ignoreBoxes: [[Double]]
    /// The source's id for the image (COCO image id, DOTA patch index), so predictions can be written
    /// against it; nil when the source has none (the loader then uses the sample index).
    public var imageId: Int?
    /// The true label of each box when the source knows it (the synthetic benchmark's
    /// `clean_category_id` under injected label noise), else nil. Never used for training: it scores
    /// how well a noise-robust detector flags the wrong labels.
    public var cleanLabels: [Int]?

    public init(image: Image, boxes: [[Double]] = [], labels: [Int] = [], ignoreBoxes: [[Double]] = [], imageId: Int? = nil) {
        precondition(boxes.count == labels.count, "Sample: \(boxes.count) boxes but \(labels.count) labels")
        self.image = image; self.boxes = boxes; self.labels = labels; self.ignoreBoxes = ignoreBoxes; self.imageId = imageId
    }

    /// The same sample with `image` replaced and every box and ignore region moved by `transform`
    /// (geometric augmentations move both alike).
    func with(image: Image, boxes transform: ([Double]) -> [Double]) -> Sample {
        var out = self
        out.image = image
        out.boxes = boxes.map(transform)
        out.ignoreBoxes = ignoreBoxes.map(transform)
        return out
    }
}
