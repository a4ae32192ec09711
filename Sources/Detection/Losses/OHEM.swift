/// Online hard example mining for dense detectors (Shrivastava et al., CVPR 2016; the 3:1 hard-negative
/// ratio of SSD, Liu et al. 2016): per-sample weights 0/1 that keep every positive and the negatives
/// with the largest loss. Outside the tape: it takes the detached per-sample losses (for a multi-class
/// sigmoid head, each anchor's loss summed over classes) and returns weights to multiply the loss with.
///
/// `labels` follow the matcher: a class index (>= 0) is a positive, `Matcher.belowLowThreshold` (-1) a
/// negative, `Matcher.betweenThresholds` (-2) ignored (weight 0). The number of negatives kept is
/// `max(negativesPerPositive * positives, minimumNegatives)`, capped at the negatives present; the
/// minimum keeps an image without positives training on its hardest background (SSD keeps none; our
/// default keeps as many as one positive would bring). Call it per image for per-image quotas.
///
/// Deterministic: negatives are ordered by loss, descending, equal losses by lower index; a NaN loss
/// counts as the hardest (it is not hidden from the loss that would report it).
public func ohemWeights(losses: [Float], labels: [Int], negativesPerPositive: Int = 3, minimumNegatives: Int = 3) -> [Float] {
    precondition(losses.count == labels.count, "ohemWeights: \(losses.count) losses for \(labels.count) labels")
    precondition(labels.allSatisfy { $0 >= -2 }, "ohemWeights: labels are class indices, -1 (negative) or -2 (ignored)")
    precondition(negativesPerPositive >= 0 && minimumNegatives >= 0,
                 "ohemWeights: negativesPerPositive \(negativesPerPositive) and minimumNegatives \(minimumNegatives) must be >= 0")
    var weights = [Float](repeating: 0, count: losses.count)
    var negatives: [Int] = []
    var positives = 0
    for (i, y) in labels.enumerated() {
        if y >= 0 { weights[i] = 1; positives += 1 } else if y == -1 { negatives.append(i) }
    }
    let keep = Swift.min(Swift.max(negativesPerPositive * positives, minimumNegatives), negatives.count)
    guard keep > 0 else { return weights }
    negatives.sort { a, b in
        let la = losses[a], lb = losses[b]
        if la.isNaN != lb.isNaN { return la.isNaN }
        if la != lb && !la.isNaN { return la > lb }
        return a < b
    }
    for i in negatives.prefix(keep) { weights[i] = 1 }
    return weights
}
