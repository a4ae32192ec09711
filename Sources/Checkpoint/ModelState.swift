import Foundation
import Kernels
import Autodiff
import NN
import Optim

/// What `apply(to:strict:)` did: in non-strict mode, the keys it could not use.
public struct LoadReport: Equatable, CustomStringConvertible {
    public var loaded: [String] = []
    public var missing: [String] = []
    public var unexpected: [String] = []
    public var shapeMismatches: [String] = []
    public var description: String {
        var parts = ["loaded \(loaded.count) tensors"]
        if !missing.isEmpty { parts.append("missing in checkpoint: \(missing.joined(separator: ", "))") }
        if !unexpected.isEmpty { parts.append("not in model: \(unexpected.joined(separator: ", "))") }
        if !shapeMismatches.isEmpty { parts.append("shape mismatch: \(shapeMismatches.joined(separator: "; "))") }
        return parts.joined(separator: "; ")
    }
}

extension Checkpoint {
    /// Every tensor of `model` with where it is stored: `/params/<path>`, `/buffers/<path>`, or
    /// `/quant/<quantizer path>/<name>` for the state of quantizer modules.
    static func locations(_ model: Module) -> [(location: String, tensor: Tensor)] {
        var out: [(String, Tensor)] = []
        for (p, m) in model.namedModules() {
            let join = { (n: String) in p.isEmpty ? n : "\(p).\(n)" }
            if m is QuantizerStateful {
                for (n, t) in m.localParameters() + m.localBuffers() { out.append(("/quant/\(p)/\(n)", t)) }
            } else {
                for (n, t) in m.localParameters() { out.append(("/params/" + join(n), t)) }
                for (n, t) in m.localBuffers() { out.append(("/buffers/" + join(n), t)) }
            }
        }
        return out
    }

    func entry(at location: String) -> Entry? {
        if location.hasPrefix("/params/") { return params[String(location.dropFirst(8))] }
        if location.hasPrefix("/buffers/") { return buffers[String(location.dropFirst(9))] }
        let parts = location.dropFirst(7).split(separator: "/", maxSplits: 1).map(String.init)
        return parts.count == 2 ? quant[parts[0]]?[parts[1]] : nil
    }

    var allLocations: [String] {
        params.keys.map { "/params/\($0)" } + buffers.keys.map { "/buffers/\($0)" }
            + quant.flatMap { q in q.value.keys.map { "/quant/\(q.key)/\($0)" } }
    }

    /// Captures a model (parameters, buffers, quantizer state, module RNGs) and optionally its optimizer.
    public static func capture(model: Module, optimizer: Optimizer? = nil) -> Checkpoint {
        var c = Checkpoint()
        for (loc, t) in locations(model) {
            if loc.hasPrefix("/params/") { c.params[String(loc.dropFirst(8))] = Entry(t) }
            else if loc.hasPrefix("/buffers/") { c.buffers[String(loc.dropFirst(9))] = Entry(t) }
            else {
                let parts = loc.dropFirst(7).split(separator: "/", maxSplits: 1).map(String.init)
                c.quant[parts[0], default: [:]][parts[1]] = Entry(t)
            }
        }
        for (p, m) in model.namedModules() { if let q = m as? QuantizerStateful { c.quantAttributes[p] = q.quantAttributes } }
        for (p, m) in model.namedModules() { if let r = m as? RandomStateful { c.moduleRNG[p.isEmpty ? "root" : p] = r.rng } }
        if let optimizer {
            c.optimizerType = String(describing: type(of: optimizer))
            c.optimizerStep = Int64(optimizer.stepCount)
            for (p, slots) in optimizer.state { c.optimizer[p] = slots.mapValues { Entry($0) } }
        }
        return c
    }

    /// Copies parameters, buffers and module RNG states into `model`. Strict mode (the default) checks
    /// everything first and changes nothing on any mismatch, throwing one error that lists every missing
    /// key, unexpected key and shape mismatch by name. Non-strict mode loads what matches and reports
    /// the rest (starting QAT from an FP32 checkpoint).
    @discardableResult
    public func apply(to model: Module, strict: Bool = true, file: String = "(memory)") throws -> LoadReport {
        var report = LoadReport()
        var plan: [(Tensor, Entry)] = []
        var used = Set<String>()
        for (loc, t) in Checkpoint.locations(model) {
            guard let e = entry(at: loc) else { report.missing.append(loc); continue }
            used.insert(loc)
            if e.shape != t.shape { report.shapeMismatches.append("\(loc): checkpoint \(e.shape), model \(t.shape)"); continue }
            if loc.hasPrefix("/quant/") { try Checkpoint.checkQuantizer(e, at: loc, file: file) }
            plan.append((t, e)); report.loaded.append(loc)
        }
        report.unexpected = allLocations.filter { !used.contains($0) }.sorted()
        if strict {
            if !report.shapeMismatches.isEmpty {
                throw CheckpointError(.shapeMismatch, file: file, "shape mismatch for \(report.shapeMismatches.joined(separator: "; ")) (a checkpoint of another model or width?)")
            }
            if !report.missing.isEmpty {
                throw CheckpointError(.missingKeys, file: file, "missing \(report.missing.count) entries the model needs: \(report.missing.joined(separator: ", ")) (load with strict: false to keep their current values)")
            }
            if !report.unexpected.isEmpty {
                throw CheckpointError(.unexpectedKeys, file: file, "has \(report.unexpected.count) entries the model does not have: \(report.unexpected.joined(separator: ", ")) (load with strict: false to ignore them)")
            }
        }
        for (t, e) in plan { e.values.withUnsafeBufferPointer { t.pointer.update(from: $0.baseAddress!, count: e.values.count) } }
        for (p, m) in model.namedModules() {
            if let r = m as? RandomStateful, let s = moduleRNG[p.isEmpty ? "root" : p] { r.rng = s }
        }
        return report
    }

    /// Restores optimizer state (slots and step count); the optimizer type must match.
    public func apply(to optimizer: Optimizer, file: String = "(memory)") throws {
        let type = String(describing: Swift.type(of: optimizer))
        guard optimizerType == type || optimizerType.isEmpty else {
            throw CheckpointError(.invalid, file: file, "holds \(optimizerType) state, the run uses \(type)")
        }
        let params = Dictionary(uniqueKeysWithValues: optimizer.entries.map { ($0.path, $0.tensor) })
        var state: [String: [String: Tensor]] = [:]
        for (p, slots) in self.optimizer {
            guard params[p] != nil else { throw CheckpointError(.unexpectedKeys, file: file, "optimizer state for /optimizer/\(p), which the model does not have") }
            state[p] = slots.mapValues { Tensor(shape: $0.shape, scalars: $0.values) }
        }
        do { try optimizer.loadState(state, stepCount: Int(optimizerStep)) }
        catch { throw CheckpointError(.shapeMismatch, file: file, "\(error)") }
    }
}
