/// pycocotools' `Params.setDetParams`: the fixed grid every COCO bbox number is read from.
public enum COCOParams {
    /// `np.linspace(.5, 0.95, 10)`: 0.5, 0.55, ..., 0.8999999999999999, 0.95. Built the way numpy builds
    /// it (`i * step + start`, last = stop) so every value is bit-identical: matching compares IoUs
    /// with `>=` against these, and `summarize` finds 0.5 and 0.75 by `==`.
    public static let iouThresholds: [Double] = linspace(0.5, 0.95, count: 10)
    /// `np.linspace(.0, 1.00, 101)`: the recall points precision is sampled at.
    public static let recallThresholds: [Double] = linspace(0.0, 1.0, count: 101)
    /// Detections kept per image (and category), ascending; the evaluation runs at the last.
    public static let maxDets = [1, 10, 100]
    public static let areaRanges: [COCOAreaRange] = [.all, .small, .medium, .large]

    /// numpy's `linspace(start, stop, num, endpoint=True)` in double: `y[i] = i * step + start`,
    /// `step = (stop - start) / (num - 1)`, `y[num - 1] = stop`.
    public static func linspace(_ start: Double, _ stop: Double, count: Int) -> [Double] {
        precondition(count >= 2, "linspace needs at least 2 points")
        let step = (stop - start) / Double(count - 1)
        var y = (0..<count).map { Double($0) * step + start }
        y[count - 1] = stop
        return y
    }
}

/// An object-area range in square pixels, inclusive at both ends (pycocotools tests `area < lo or
/// area > hi`), so an area of exactly 32^2 is both small and medium.
public struct COCOAreaRange: Sendable, Equatable {
    public var label: String
    public var min: Double
    public var max: Double

    public init(label: String, min: Double, max: Double) { self.label = label; self.min = min; self.max = max }

    public static let all = COCOAreaRange(label: "all", min: 0, max: 1e10)
    public static let small = COCOAreaRange(label: "small", min: 0, max: 1024)
    public static let medium = COCOAreaRange(label: "medium", min: 1024, max: 9216)
    public static let large = COCOAreaRange(label: "large", min: 9216, max: 1e10)

    @inline(__always) func excludes(_ area: Double) -> Bool { area < min || area > max }
}
