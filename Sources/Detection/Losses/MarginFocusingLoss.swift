import Autodiff

/// The thesis' hard-sample focusing with support samples. Its model is the support-vector machine:
/// only samples inside the margin (the support vectors) shape the decision boundary, so the extra loss
/// acts on those alone, as a hinge on the logit margin (ALGORITHMS.md section 6: "a margin mask
/// [y * s < m] on the logits with an extra hinge-style loss is one faithful reading"). It is added to the
/// head's main loss (focal, QFL, CE...), which keeps training every sample.
///
/// The result carries the selection, so a run can log the share of support samples.
public struct MarginFocusing {
    /// `sum over support samples of w_i (m - margin_i) / max(1, supportCount)`, a scalar.
    public let loss: Tensor
    /// Per sample: inside the margin (`margin < m`, strictly) and weight > 0.
    public let support: [Bool]
    public let supportCount: Int
    /// Samples with weight > 0: the denominator of the share.
    public let consideredCount: Int
    /// supportCount / consideredCount (0 when nothing is considered).
    public var supportShare: Float { consideredCount == 0 ? 0 : Float(supportCount) / Float(consideredCount) }
}

/// Margin focusing on the fine-grained type head (softmax logits `[M, K]`, K >= 2):
/// `margin_i = z_{i,y} - max_{j != y} z_{i,j}`; support samples have `margin_i < m`; the loss is the
/// hinge `m - margin_i` summed over them and divided by their count (at least 1). The gradient reaches
/// only the true logit and the strongest other logit of each support sample; a tie for the strongest
/// other logit goes to the lowest class index (as `torch.argmax`). `labels` are classes in `0..<K`;
/// `weights` (>= 0, 1 when nil) scale each sample's hinge, and weight 0 leaves a sample out (an
/// ignored sample). m = 1 is the SVM's functional margin; the thesis gives no value, so tune it.
public func marginFocusingLoss(_ logits: Tensor, labels: [Int], margin m: Float = 1, weights: [Float]? = nil) -> MarginFocusing {
    precondition(logits.rank == 2 && logits.shape[1] >= 2,
                 "marginFocusingLoss: logits must be [M, K] with K >= 2 (the binary form is binaryMarginFocusingLoss), got \(logits.shape)")
    let (rows, k) = (logits.shape[0], logits.shape[1])
    checkLabels(labels, rows: rows, classes: k, background: false, "marginFocusingLoss")
    let x = logits.pointer
    var strongestOther = [Int](repeating: 0, count: rows)
    for (i, y) in labels.enumerated() {
        var best = -1
        for j in 0..<k where j != y && (best < 0 || x[i * k + j] > x[i * k + best]) { best = j }
        strongestOther[i] = i * k + best
    }
    let flat = logits.reshaped([rows * k])
    let margins = flat.indexSelect(axis: 0, indices: labelIndices(labels, classes: k))
        - flat.indexSelect(axis: 0, indices: strongestOther)
    return hinge(margins, margin: m, weights: weights, caller: "marginFocusingLoss")
}

/// Margin focusing on the class-agnostic fg/bg logit `s` (any shape with M elements): `targets` are
/// +1 (foreground) or -1 (background), `margin_i = y_i s_i`, and the same hinge on samples with
/// `margin_i < m`. Ignored anchors get weight 0.
public func binaryMarginFocusingLoss(_ logits: Tensor, targets: [Float], margin m: Float = 1, weights: [Float]? = nil) -> MarginFocusing {
    let rows = logits.count
    precondition(targets.count == rows, "binaryMarginFocusingLoss: \(targets.count) targets for \(rows) logits")
    precondition(targets.allSatisfy { $0 == 1 || $0 == -1 }, "binaryMarginFocusingLoss: targets must be +1 or -1")
    let margins = logits.reshaped([rows]) * constant([rows], targets)
    return hinge(margins, margin: m, weights: weights, caller: "binaryMarginFocusingLoss")
}

/// Selects `margin < m` (weight > 0) and sums `w (m - margin)` over the selection, divided by its size.
/// The selection is a constant multiplied in, so samples outside it get exactly zero gradient.
private func hinge(_ margins: Tensor, margin m: Float, weights: [Float]?, caller: String) -> MarginFocusing {
    let rows = margins.count
    precondition(weights.map { $0.count == rows && $0.allSatisfy { $0 >= 0 && $0.isFinite } } ?? true,
                 "\(caller): need \(rows) finite non-negative weights")
    let v = margins.pointer
    var support = [Bool](repeating: false, count: rows)
    var scale = [Float](repeating: 0, count: rows)
    var count = 0, considered = 0
    for i in 0..<rows {
        let w = weights?[i] ?? 1
        guard w > 0 else { continue }
        considered += 1
        if v[i] < m { support[i] = true; scale[i] = w; count += 1 }
    }
    let loss = ((m - margins) * constant([rows], scale)).sum() / Float(Swift.max(1, count))
    return MarginFocusing(loss: loss, support: support, supportCount: count, consideredCount: considered)
}
