import Kernels

/// Per-image timings of the anchor assigners (the loss builds one assignment per image every step):
/// RetinaNet's default anchors (`RetinaNetConfig`: levels P3-P7, base sizes 16-256 with
/// integer-truncated octave scales, ratios 0.5/1/2, 9 anchors per location; 12,276 anchors at 256 px)
/// against random ground truths of 8-64 px (the aircraft sizes), for `Matcher` and `ATSSAssigner`
/// through `AnchorAssigner.assign`. Release-build numbers: see the measuring command in the tests
/// (`AssignerBenchTests`).
public enum AssignerBench {
    /// Rows `matcher_<g>` and `atss_<g>` for each ground-truth count g, median milliseconds per image
    /// over `reps` runs after two warm-ups.
    public static func run(reps: Int = 20, inputSize: Int = 256, gtCounts: [Int] = [10, 100], seed: UInt64 = 1) throws -> [DetectionBench.Row] {
        guard inputSize >= 128 && inputSize % 128 == 0 else {
            throw DetectionConfigError(key: "input_size", "\(inputSize) must be a positive multiple of 128 (P7 has stride 128)")
        }
        let config = RetinaNetConfig(numClasses: 1)
        let generator = try AnchorGenerator(baseSizes: config.anchorSizes, scales: config.anchorScales,
                                            aspectRatios: config.anchorRatios, truncateScaledSizes: config.integerSizes)
        let shapes = config.levels.map { (height: inputSize >> $0, width: inputSize >> $0) }
        let anchors = generator.anchors(featureShapes: shapes, imageHeight: inputSize, imageWidth: inputSize)
        let assigners: [(String, any AnchorAssigner)] = [("matcher", try Matcher()), ("atss", try ATSSAssigner())]
        var rng = RNG(seed: seed)
        var rows: [DetectionBench.Row] = []
        for g in gtCounts {
            let boxes = DetectionBench.boxes(g, rng: &rng, span: Float(inputSize) - 64, minSide: 8, maxSide: 64)
            let target = DetectionTarget(boxes: boxes, labels: [Int](repeating: 0, count: g))
            for (name, assigner) in assigners {
                rows.append(DetectionBench.Row(name: "\(name)_\(g)", detail: "\(name), \(g) gt vs \(anchors.count) anchors (\(inputSize) px input)",
                                               ms: timeMedian(reps: reps, warmup: 2) { _ = assigner.assign(anchors: anchors, target: target) }))
            }
        }
        return rows
    }
}
