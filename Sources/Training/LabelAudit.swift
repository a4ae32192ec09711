import Foundation
import Autodiff
import Datasets
import Detection

/// How well a detector's fine-grained module flags wrong training labels: each training box (the
/// unaugmented image at the training size) is classified on its ground-truth box, and its given label
/// is flagged when the most probable type differs from it by at least `margin` in probability. Where
/// the data knows the true labels (the synthetic benchmark's `clean_category_id`), precision = share of
/// flagged labels that are wrong, recall = share of wrong labels flagged (Learning from Noisy Anchors
/// and co-teaching report the same two). Never used in training.
struct LabelAudit {
    var boxes = 0, wrong = 0, flagged = 0, flaggedWrong = 0

    /// nil when the split has no known true labels or none of its labels is wrong (nothing to find).
    static func run(_ model: any TypeClassifier, source: SampleSource, config: Loader.Config, margin: Float) throws -> LabelAudit? {
        let loader = try Loader(source, config: config)
        var audit = LabelAudit(), known = false
        var start = 0
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        while start < source.count {
            let b = try loader.makeBatch(epoch: 0, indices: Array(start..<min(start + config.batchSize, source.count)))
            start += config.batchSize
            let boxes = b.boxes.map { XYXYBoxes(xywh: $0) }
            guard boxes.contains(where: { !$0.isEmpty }) else { continue }
            let p = model.typeProbabilities(Tensor(shape: b.shape, storage: b.images), boxes: boxes)
            for i in 0..<boxes.count {
                guard let clean = b.cleanLabels[i] else { continue }
                known = true
                let k = boxes[i].count == 0 ? 0 : p[i].count / boxes[i].count
                for j in 0..<boxes[i].count {
                    let probs = p[i][(j * k)..<((j + 1) * k)]
                    let given = b.labels[i][j]
                    var best = probs.startIndex
                    for q in probs.indices where probs[q] > probs[best] { best = q }
                    let flag = best - j * k != given && probs[best] - probs[j * k + given] >= margin
                    let isWrong = clean[j] != given
                    audit.boxes += 1
                    if isWrong { audit.wrong += 1 }
                    if flag { audit.flagged += 1; if isWrong { audit.flaggedWrong += 1 } }
                }
            }
        }
        return known && audit.wrong > 0 ? audit : nil
    }

    var precision: Double { flagged == 0 ? 0 : Double(flaggedWrong) / Double(flagged) }
    var recall: Double { wrong == 0 ? 0 : Double(flaggedWrong) / Double(wrong) }
}
