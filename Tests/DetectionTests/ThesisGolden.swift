import XCTest
import Foundation

/// Reference values for Sources/Detection/Losses (scripts/golden/thesis_losses.py ->
/// Fixtures/thesis_losses.json): mmdetection's and the EQL authors' formulas run with torch autograd.
/// Floats are shortest round-tripping decimals, so inputs are bit-identical here (see `Golden`).
struct ThesisGolden: Decodable {
    struct QFL: Decodable {
        let m: Int; let k: Int; let beta: Double; let reduction: String
        let labels: [Int]; let quality: [Double]; let logits: [Double]
        let upstream: [Double]; let value: [Double]; let grad_logits: [Double]
    }
    struct VFL: Decodable {
        let m: Int; let k: Int; let alpha: Double; let gamma: Double; let iou_weighted: Bool; let reduction: String
        let targets: [Double]; let logits: [Double]; let upstream: [Double]; let value: [Double]; let grad_logits: [Double]
    }
    struct GHMCCase: Decodable {
        struct Step: Decodable {
            let m: Int; let k: Int; let logits: [Double]; let targets: [Double]; let label_weights: [Double]
            let value: [Double]; let grad_logits: [Double]; let acc_sum: [Double]
        }
        let bins: Int; let momentum: Double; let steps: [Step]
    }
    struct OHEM: Decodable { let losses: [Double]; let labels: [Int]; let ratio: Int; let minimum: Int; let weights: [Double] }
    struct EQL: Decodable {
        let m: Int; let k: Int; let labels: [Int]; let frequencies: [Double]; let lambda: Double
        let logits: [Double]; let value: [Double]; let grad_logits: [Double]
    }
    struct EQLEmpty: Decodable { let k: Int; let frequencies: [Double]; let lambda: Double }
    struct SEQL: Decodable {
        let m: Int; let k: Int; let labels: [Int]; let frequencies: [Double]; let lambda: Double; let beta: [Double]
        let logits: [Double]; let value: [Double]; let grad_logits: [Double]
    }
    struct EQLv2Case: Decodable {
        struct Step: Decodable {
            let m: Int; let labels: [Int]; let logits: [Double]; let value: [Double]; let grad_logits: [Double]
            let pos_grad: [Double]; let neg_grad: [Double]
        }
        let k: Int; let gamma: Double; let mu: Double; let alpha: Double; let steps: [Step]
    }
    struct SeesawCase: Decodable {
        struct Step: Decodable {
            let m: Int; let labels: [Int]; let logits: [Double]; let upstream: [Double]; let value: [Double]
            let grad_logits: [Double]; let cum_samples: [Double]
        }
        let k: Int; let p: Double; let q: Double; let eps: Double; let reduction: String; let steps: [Step]
    }
    struct WCE: Decodable {
        let counts: [Int]; let scheme: String; let beta: Double; let reduction: String; let m: Int; let k: Int
        let labels: [Int]; let logits: [Double]; let weights: [Double]; let upstream: [Double]; let value: [Double]
        let grad_logits: [Double]
    }
    struct Margin: Decodable {
        let m: Int; let k: Int; let margin: Double; let labels: [Int]; let logits: [Double]; let weights: [Double]
        let value: [Double]; let grad_logits: [Double]; let support: [Bool]
    }
    struct BinaryMargin: Decodable {
        let m: Int; let margin: Double; let targets: [Double]; let logits: [Double]; let weights: [Double]
        let value: [Double]; let grad_logits: [Double]; let support: [Bool]
    }

    let torch: String
    let qfl: [QFL]; let vfl: [VFL]; let ghmc: [GHMCCase]; let ohem: [OHEM]
    let eql: [EQL]; let eql_empty: EQLEmpty; let seql: [SEQL]; let eqlv2: [EQLv2Case]; let seesaw: [SeesawCase]
    let wce: [WCE]; let margin: [Margin]; let margin_binary: [BinaryMargin]

    private static let loaded: Result<ThesisGolden, Error> = Result {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/thesis_losses.json")
        return try JSONDecoder().decode(ThesisGolden.self, from: Data(contentsOf: url))
    }

    static func load() throws -> ThesisGolden { try loaded.get() }
}
