import Autodiff

// Constant tensors (never differentiated) built from per-sample class labels, shared by the losses of
// this folder. A label is a class index in 0..<classes, or -1 for a background sample (mmdetection's
// background index is `classes`; torchvision's matcher says -1, which is what the detector holds).

/// Checks the label contract of a loss (programmer errors: labels come from the assigner).
func checkLabels(_ labels: [Int], rows: Int, classes: Int, background: Bool, _ caller: String) {
    precondition(labels.count == rows, "\(caller): \(labels.count) labels for \(rows) rows")
    let low = background ? -1 : 0
    precondition(labels.allSatisfy { $0 >= low && $0 < classes },
                 "\(caller): a label is outside \(low)..<\(classes)\(background ? " (-1 is background)" : "")")
}

/// `[labels.count, classes]`: `values[i]` (1 when nil) at row i's label column, 0 elsewhere and on
/// background rows.
func classTargets(_ labels: [Int], classes: Int, values: [Float]? = nil) -> Tensor {
    let t = Tensor.zeros([labels.count, classes])
    let p = t.pointer
    for (i, y) in labels.enumerated() where y >= 0 { p[i * classes + y] = values?[i] ?? 1 }
    return t
}

/// Row-major flat indices `i * classes + labels[i]` of the label entries (every label a class).
func labelIndices(_ labels: [Int], classes: Int) -> [Int] {
    labels.enumerated().map { $0.offset * classes + $0.element }
}

/// A constant tensor of `shape` from per-element values.
func constant(_ shape: [Int], _ values: [Float]) -> Tensor { Tensor(shape: shape, scalars: values) }

/// `total / rows` for a loss that averages over samples with the reference's `max(1, rows)` guard:
/// mmdetection divides by `n_i` and gives NaN on an empty batch; an image without samples must not
/// poison a training step, so these losses give 0 (and a zero gradient) instead.
func perSample(_ total: Tensor, rows: Int) -> Tensor { total / Float(Swift.max(rows, 1)) }
