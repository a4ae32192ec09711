import Foundation
import Checkpoint
import Files

/// `qat export CKPT --format safetensors|weights --out FILE`: weights-only files of a checkpoint.
/// - `safetensors`: the float parameters and buffers under PyTorch's names (`TorchNames`), F32, metadata
///   `format: pt`, loadable by `torch.load_state_dict(safetensors.torch.load_file(...))` into the
///   torchvision model of the same architecture (our paths are torchvision's). Quantizer state is not a
///   PyTorch weight and is left out (the summary says so).
/// - `weights`: our HDF5 layout without optimizer state (recipe, quantizer state, metrics kept), so
///   `qat eval FILE` still works: what `checkpoints/` ships.
/// The output never replaces a checkpoint, recipe or metrics file (`ProtectedFiles`), nor the input.
public enum WeightsExport {
    public enum Format: String, CaseIterable, Sendable { case safetensors, weights }

    /// Writes `out`; returns a one-line summary.
    public static func export(checkpoint path: String, format: Format, out: String) throws -> String {
        guard URL(fileURLWithPath: out).standardizedFileURL.path != URL(fileURLWithPath: path).standardizedFileURL.path else {
            throw TrainingError("--out: \(out) is the checkpoint being exported; name another file")
        }
        // Checkpoint.save replaces whatever is there (a run owns its checkpoints): refuse an existing
        // checkpoint, recipe or metrics file at --out before anything is read.
        do { try ProtectedFiles.check(output: out) } catch { throw TrainingError("--out: \(error)") }
        var c: Checkpoint
        do { c = try Checkpoint.load(from: path) } catch { throw TrainingError("\(error)") }
        let tensors = c.params.count + c.buffers.count
        let values = (c.params.values.map(\.values.count) + c.buffers.values.map(\.values.count)).reduce(0, +)
        switch format {
        case .safetensors:
            guard out.hasSuffix(".safetensors") else { throw TrainingError("--out: \(out): name the file NAME.safetensors") }
            let s = c.torchSafeTensors(metadata: ["format": "pt", "source": URL(fileURLWithPath: path).lastPathComponent])
            do { try s.write(to: out) } catch { throw TrainingError("--out: \(error)") }
            let left = c.quant.isEmpty ? "" : "; \(c.quant.count) quantizers' state left out (PyTorch weights are float)"
            return "wrote \(out): \(tensors) tensors, \(values) values, PyTorch names\(left)"
        case .weights:
            guard out.hasSuffix(".h5") else { throw TrainingError("--out: \(out): name the file NAME.h5") }
            let dropped = c.optimizer.count
            c.optimizer = [:]; c.optimizerType = ""; c.optimizerStep = 0
            do { try c.save(to: out) } catch { throw TrainingError("--out: \(error)") }
            return "wrote \(out): \(tensors) tensors, \(values) values, \(c.quant.count) quantizers; optimizer state of \(dropped) parameters left out"
        }
    }
}
