import Foundation

/// Our parameter and buffer paths and PyTorch's state-dict names. Module paths already equal
/// torchvision's (`features.3.conv.1.0.weight`, `layer2.0.downsample.1.bias`, ...), so only the
/// names of BatchNorm's buffers differ:
///
/// | ours | PyTorch |
/// |---|---|
/// | `runningMean` | `running_mean` |
/// | `runningVar` | `running_var` |
/// | (none) | `num_batches_tracked` (ignored on import, not written: PyTorch fills it in on load) |
///
/// Quantizer state (`/quant/...`) has no PyTorch counterpart in a weights file and is never exported
/// here (`qat export --format onnx-qdq` carries it).
public enum TorchNames {
    static let ours = ["runningMean": "running_mean", "runningVar": "running_var"]
    static let theirs = Dictionary(uniqueKeysWithValues: ours.map { ($1, $0) })
    /// PyTorch-only entries skipped on import.
    public static let ignored: Set<String> = ["num_batches_tracked"]
    /// Entries stored as buffers (the rest are parameters).
    static let bufferNames: Set<String> = ["running_mean", "running_var"]

    public static func torchName(_ path: String) -> String { rename(path, ours) }

    /// nil for entries we do not have (`num_batches_tracked`).
    public static func ourPath(_ name: String) -> String? {
        if let last = name.split(separator: ".").last, ignored.contains(String(last)) { return nil }
        return rename(name, theirs)
    }

    static func isBuffer(_ torchName: String) -> Bool {
        torchName.split(separator: ".").last.map { bufferNames.contains(String($0)) } ?? false
    }

    private static func rename(_ path: String, _ map: [String: String]) -> String {
        guard let dot = path.lastIndex(of: ".") else { return map[path] ?? path }
        let last = String(path[path.index(after: dot)...])
        return map[last].map { String(path[..<dot]) + "." + $0 } ?? path
    }
}

extension Checkpoint {
    /// The float weights (parameters and buffers; quantizer state, optimizer state and RNGs left out)
    /// under PyTorch's names, as F32 tensors.
    public func torchSafeTensors(metadata: [String: String] = [:]) -> SafeTensors {
        var s = SafeTensors(metadata: metadata)
        for (p, e) in params.merging(buffers, uniquingKeysWith: { a, _ in a }) {
            s.tensors[TorchNames.torchName(p)] = SafeTensors.Tensor(shape: e.shape, values: e.values)
        }
        return s
    }

    /// A checkpoint holding a PyTorch state dict's float tensors under our paths (`running_*` as
    /// buffers, the rest parameters; `num_batches_tracked` dropped). Integer tensors other than the
    /// ignored counters, and non-finite values, are errors naming the tensor.
    public static func fromTorch(_ s: SafeTensors, file: String) throws -> Checkpoint {
        var c = Checkpoint()
        for name in s.tensors.keys.sorted() {
            let t = s.tensors[name]!
            guard let path = TorchNames.ourPath(name) else { continue }
            guard !t.dtype.isInteger else {
                throw CheckpointError(.invalid, file: file, "tensor '\(name)' is \(t.dtype.rawValue); weights must be F32, F16, BF16 or F64")
            }
            if let i = t.values.firstIndex(where: { !$0.isFinite }) {
                throw CheckpointError(.nonFinite, file: file, "tensor '\(name)' holds \(t.values[i]) at index \(i); weights must be finite")
            }
            let e = Entry(shape: t.shape, values: t.values)
            if TorchNames.isBuffer(name) { c.buffers[path] = e } else { c.params[path] = e }
        }
        return c
    }
}
