import XCTest
import Foundation

/// torchvision's outputs for the Detection target (scripts/golden/detection_torchvision.py ->
/// Fixtures/torchvision_detection.json). Floats are stored as the shortest decimals that round-trip
/// through Double to the same Float32 (checked by the script), so inputs are bit-identical here.
struct Golden: Decodable {
    struct Anchors: Decodable {
        let name: String; let sizes: [[Double]]; let aspect_ratios: [[Double]]
        let base_sizes: [Double]?; let truncate: Bool?
        let feature_shapes: [[Int]]; let image_size: [Int]; let anchors: [Double]; let counts: [Int]
    }
    struct Coder: Decodable { let weights: [Double]; let anchors: [Double]; let boxes: [Double]; let codes: [Double]; let encoded: [Double]; let decoded: [Double] }
    struct IoU: Decodable { let a: [Double]; let b: [Double]; let iou: [Double]; let giou: [Double] }
    struct MatcherCase: Decodable { let name: String; let gt: Int; let anchors: Int; let allow_low_quality: Bool; let quality: [Double]; let matches: [Int] }
    struct MatcherBoxes: Decodable { let gt: [Double]; let matches: [Int] }
    struct Focal: Decodable {
        let alpha: Double; let gamma: Double; let reduction: String
        let logits: [Double]; let targets: [Double]; let upstream: [Double]; let value: [Double]; let grad_logits: [Double]
    }
    struct GIoULoss: Decodable {
        let reduction: String; let pred: [Double]; let target: [Double]; let upstream: [Double]
        let value: [Double]; let grad_pred: [Double]; let grad_target: [Double]
    }
    struct L1: Decodable {
        let reduction: String; let input: [Double]; let target: [Double]; let upstream: [Double]
        let value: [Double]; let grad_input: [Double]; let grad_target: [Double]
    }
    struct NMSCase: Decodable { let threshold: Double; let boxes: [Double]; let scores: [Double]; let keep: [Int] }
    struct BatchedCase: Decodable {
        let threshold: Double; let boxes: [Double]; let scores: [Double]; let classes: [Int]; let keep: [Int]; let order_defined: Bool
    }
    struct Postprocess: Decodable {
        struct Image: Decodable { let boxes: [Double]; let scores: [Double]; let labels: [Int] }
        let base_sizes: [Double]; let feature_shapes: [[Int]]; let image_size: [Int]; let num_classes: Int
        let logit_primes: [Int]; let image_sizes: [[Int]]; let detections: [Image]
    }

    let torch: String; let torchvision: String
    let anchors: [Anchors]; let box_coder: [Coder]; let iou: IoU
    let matcher: [MatcherCase]; let matcher_boxes: MatcherBoxes
    let focal: [Focal]; let giou_loss: [GIoULoss]; let l1: [L1]
    let nms: [NMSCase]; let batched_nms: [BatchedCase]; let postprocess: Postprocess

    private static let loaded: Result<Golden, Error> = Result {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/torchvision_detection.json")
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    static func load() throws -> Golden { try loaded.get() }
}

func floats(_ v: [Double]) -> [Float] { v.map { Float($0) } }

/// Largest per-element error relative to the reference value, the denominator floored at 1% of the
/// reference's largest magnitude (entries that come out of cancellation near zero carry the rounding
/// of their larger inputs). Tests hold it to 1e-5: torch's vectorized exp/log/sigmoid (SLEEF, within
/// an ulp) and glibc's differ by an ulp, which a few more Float32 ops grow to ~1e-6; any formula
/// slip (a 0.5 shift, a wrong operand order in a cancellation) is orders of magnitude larger.
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "relativeError: \(a.count) vs \(b.count) values")
    let floor = 0.01 * (b.map { abs($0) }.max() ?? 0)
    var worst: Float = 0
    for (x, y) in zip(a, b) {
        if x.isNaN && y.isNaN { continue }
        worst = max(worst, abs(x - y) / max(abs(y), floor, 1e-30))
    }
    return worst
}

let goldenTolerance: Float = 1e-5
