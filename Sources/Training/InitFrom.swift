import Foundation
import UserPaths
import NN
import Checkpoint

/// `model.init_from` and `quant.init_from`: the float weights (parameters and buffers, quantizer state
/// left out) of another checkpoint, or of a PyTorch state dict in a `.safetensors` file (torchvision
/// names, e.g. ImageNet-pretrained weights), loaded non-strictly where path and shape match. The task maps the
/// checkpoint's paths onto its model (`TrainingTask.initPath`), e.g. a classifier's backbone onto a
/// detector's.
enum InitFrom {
    /// `key` is the recipe key (for messages). `complete`: every float tensor of the model must load (a
    /// checkpoint of the same model, as `quant.init_from` needs); otherwise whatever matches loads and
    /// the rest keeps its fresh initialisation. `log` gets one line saying what loaded.
    @discardableResult
    static func load(_ path: String, key: String, into model: Module, task: TrainingTask, complete: Bool, log: (String) -> Void) throws -> LoadReport {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainingError("\(key): \(path)" + (PathProblem.brokenLink(path).map { ": " + $0 } ?? " does not exist (train the run that writes it first, or fix the path)"))
        }
        var c: Checkpoint
        do {
            // A `.safetensors` file holds a PyTorch state dict (torchvision names: `TorchNames`).
            c = path.hasSuffix(".safetensors") ? try Checkpoint.fromTorch(try SafeTensors.read(from: path), file: path) : try Checkpoint.load(from: path)
        } catch { throw TrainingError("\(key): \(error)") }
        c.quant = [:]
        func mapped(_ entries: [String: Checkpoint.Entry]) -> [String: Checkpoint.Entry] {
            var out: [String: Checkpoint.Entry] = [:]
            for (p, e) in entries { if let q = task.initPath(forCheckpointPath: p), out[q] == nil { out[q] = e } }
            return out
        }
        c.params = mapped(c.params); c.buffers = mapped(c.buffers)
        let report: LoadReport
        do { report = try c.apply(to: model, strict: false, file: path) } catch { throw TrainingError("\(key): \(error)") }
        let missing = report.missing.filter { $0.hasPrefix("/params/") || $0.hasPrefix("/buffers/") }
        func some(_ s: [String]) -> String { s.prefix(3).joined(separator: "; ") }
        if complete {
            if !report.shapeMismatches.isEmpty || !missing.isEmpty || report.loaded.isEmpty {
                throw TrainingError("\(key): \(path) is not a checkpoint of this model (\(report.shapeMismatches.count) shape mismatches, \(missing.count) missing weights, e.g. \(some(report.shapeMismatches + missing)))")
            }
            log("\(key): initialised from \(path) (\(report.loaded.count) tensors)")
            return report
        }
        guard !report.loaded.isEmpty else {
            throw TrainingError("\(key): no tensor of \(path) matches this model by path and shape (\(report.shapeMismatches.count) shape mismatches, e.g. \(some(report.shapeMismatches))); name a checkpoint of the same backbone")
        }
        var line = "\(key): initialised \(report.loaded.count) tensors from \(path)"
        if !missing.isEmpty { line += "; \(missing.count) keep their initialisation (e.g. \(some(missing)))" }
        if !report.unexpected.isEmpty { line += "; \(report.unexpected.count) checkpoint tensors unused (e.g. \(some(report.unexpected)))" }
        if !report.shapeMismatches.isEmpty { line += "; \(report.shapeMismatches.count) shape mismatches skipped (e.g. \(some(report.shapeMismatches)))" }
        log(line)
        return report
    }
}
