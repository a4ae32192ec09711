import Dispatch
import Kernels

/// Timings of the detection hot paths outside the tape, for `qat bench` (the Bench layer can call
/// `DetectionBench.run` and report the rows) and for a smoke test.
///
/// Workloads (keep identical to shared/tools/reference/bench_torch.py where it has them):
/// - `iou`: `boxIoU` of 100 ground-truth boxes against the 20k anchors of a 256 px image, both as
///   `[gt x anchors]` (what matching uses) and `[anchors x gt]`;
/// - `match`: `Matcher.match(anchors:gtBoxes:)`, IoU included;
/// - `nms10k`: `batchedNMS` on 10,000 random boxes over 12 classes, IoU 0.5 (bench_torch.py's
///   nms10k: corners uniform in [0, 240), sides uniform in [8, 56), uniform scores).
public enum DetectionBench {
    public struct Row: Sendable, Equatable {
        public let name: String
        public let detail: String
        /// Median wall time over the repetitions, milliseconds.
        public let ms: Double
    }

    /// Runs every workload `reps` times (after two warm-up runs) at the given sizes; the defaults are
    /// the published ones.
    public static func run(reps: Int = 20, anchors: Int = 20_000, gtBoxes: Int = 100, nmsBoxes: Int = 10_000,
                           classes: Int = 12, seed: UInt64 = 1) -> [Row] {
        var rng = RNG(seed: seed)
        let a = boxes(anchors, rng: &rng, span: 256, minSide: 8, maxSide: 128)
        let g = boxes(gtBoxes, rng: &rng, span: 224, minSide: 8, maxSide: 64)
        let matcher = try! Matcher()   // the defaults are valid
        var rows: [Row] = []
        rows.append(Row(name: "iou", detail: "boxIoU [\(gtBoxes) gt x \(anchors) anchors]", ms: median(reps) { _ = boxIoU(g, a) }))
        rows.append(Row(name: "iou_t", detail: "boxIoU [\(anchors) anchors x \(gtBoxes) gt]", ms: median(reps) { _ = boxIoU(a, g) }))
        rows.append(Row(name: "match", detail: "Matcher.match, \(gtBoxes) gt vs \(anchors) anchors (IoU included)",
                        ms: median(reps) { _ = matcher.match(anchors: a, gtBoxes: g) }))
        let b = boxes(nmsBoxes, rng: &rng, span: 240, minSide: 8, maxSide: 56)
        var u = [Float](repeating: 0, count: nmsBoxes)
        rng.fillUniform(&u, count: nmsBoxes)
        let cls = (0..<nmsBoxes).map { _ in rng.nextInt(below: classes) }
        rows.append(Row(name: "nms10k", detail: "batchedNMS, \(nmsBoxes) boxes, \(classes) classes, IoU 0.5",
                        ms: median(reps) { _ = batchedNMS(b, scores: u, classes: cls, iouThreshold: 0.5) }))
        return rows
    }

    /// Corners uniform in [0, span), sides uniform in [minSide, maxSide) (also the tests' random boxes).
    static func boxes(_ n: Int, rng: inout RNG, span: Float = 200, minSide: Float = 1, maxSide: Float = 60) -> XYXYBoxes {
        var u = [Float](repeating: 0, count: 4 * n)
        rng.fillUniform(&u, count: u.count)
        var c = [Float](repeating: 0, count: 4 * n)
        for i in 0..<n {
            c[4 * i] = u[4 * i] * span; c[4 * i + 1] = u[4 * i + 1] * span
            c[4 * i + 2] = c[4 * i] + minSide + u[4 * i + 2] * (maxSide - minSide)
            c[4 * i + 3] = c[4 * i + 1] + minSide + u[4 * i + 3] * (maxSide - minSide)
        }
        return XYXYBoxes(coords: c)
    }

    static func median(_ reps: Int, _ body: () -> Void) -> Double { timeMedian(reps: reps, warmup: 2, body) }
}
