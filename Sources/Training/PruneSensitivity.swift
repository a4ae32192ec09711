import Foundation
import Kernels
import NN
import Prune
import Quant
import Checkpoint
import Recipes
import Files

/// `qat prune sensitivity CKPT --ratios 0.1:0.9:0.1`: per-layer pruning sensitivity curves (the
/// lightweight-YOLOv3 paper's procedure): each prunable channel group is pruned alone at each ratio
/// (the rest of the model untouched), the split is evaluated, and the curve of the metric against the
/// ratio is recorded. `plan(maxLoss:cap:)` then gives each group the largest ratio whose drop stays
/// within the accepted loss (capped, 0.7 as the paper did): a plan `qat prune --plan` applies.
public enum PruneSensitivity {
    public struct Curve: Codable, Sendable, Equatable {
        public var group: String
        public var channels: Int
        /// The metric at each of the report's ratios.
        public var metric: [Double]
        /// Base metric minus `metric`.
        public var drop: [Double]
    }

    public struct Report: Codable, Sendable {
        public var checkpoint: String
        /// `base`: the unpruned model's metric, after the same BatchNorm re-estimation as the pruned ones
        /// when `bnBatches` > 0.
        public var split: String
        public var metric: String
        public var criterion: String
        public var bnBatches: Int
        public var base: Double
        public var ratios: [Double]
        /// In model order.
        public var curves: [Curve]
    }

    /// "a:b:s" (a to b inclusive in steps of s) or "r1,r2,...": ratios in (0, 1).
    public static func parseRatios(_ s: String) throws -> [Double] {
        let parts = s.split(separator: ":").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        var out: [Double]
        if parts.count == 3, let a = parts[0], let b = parts[1], let step = parts[2] {
            guard step > 0, a <= b else { throw TrainingError("--ratios \(s): start:end:step needs start <= end and a positive step") }
            let n = Int(((b - a) / step + 1e-9).rounded(.down))
            out = (0...n).map { ((a + Double($0) * step) * 1e6).rounded() / 1e6 }
        } else {
            let list = s.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard list.allSatisfy({ $0 != nil }) else { throw TrainingError("--ratios \(s): give start:end:step (0.1:0.9:0.1) or a list (0.25,0.5,0.75)") }
            out = list.map { $0! }
        }
        guard !out.isEmpty, out.allSatisfy({ $0 > 0 && $0 < 1 }) else { throw TrainingError("--ratios \(s): every ratio must be in (0, 1)") }
        guard out.count <= 99 else { throw TrainingError("--ratios \(s): \(out.count) ratios; at most 99") }
        return out
    }

    public static func run(checkpoint path: String, ratios: [Double], criterion: PruneCriterion, split: String, bnBatches: Int = 0,
                           overrides: [String] = [], log: (String) -> Void = { _ in }) throws -> Report {
        let (recipe, c, model0) = try ChannelPruning.prunableModel(checkpoint: path, overrides: overrides)
        let classes = try ChannelPruning.classCount(c, path: path)
        let task = try makeTask(recipe)
        let metric = recipe.eval.metric
        func evaluate(_ m: Module) throws -> Double {
            try task.evaluate(model: m, split: split).required(metric)
        }
        let bnInputs = bnBatches > 0 ? try task.calibrationInputs(batches: bnBatches) : []
        // The base goes through the same re-estimation as every pruned model, so a drop is the pruning's alone.
        let asIs = try evaluate(model0)
        if bnBatches > 0 { BatchNormReestimation.run(model0, batches: bnInputs) { model0($0) } }
        let base = bnBatches > 0 ? try evaluate(model0) : asIs
        log(String(format: "unpruned %@ on %@: %.2f%%", metric, split, 100 * asIs)
            + (bnBatches > 0 ? String(format: ", %.2f%% with BatchNorm re-estimated (the base of the drops)", 100 * base) : ""))
        let groups: [ChannelGroup]
        do { groups = try ChannelGraph.groups(of: model0) } catch { throw TrainingError("\(error)") }
        var names = groups.filter(\.isPrunable).map { ($0.name, $0.channels) }
        if criterion == .bn { names = groups.filter { $0.isPrunable && $0.hasChannelScale }.map { ($0.name, $0.channels) } }
        var curves: [Curve] = []
        for (name, channels) in names {
            var values: [Double] = []
            for r in ratios {
                let m = try ChannelPruning.build(recipe, classes: classes)
                try loadFloatWeights(c, into: m, recipe: recipe, path: path)
                m.eval()
                do {
                    let g = try ChannelGraph.groups(of: m)
                    try Pruner.apply(try Pruner.decide(g, ratios: [(name, r)], criterion: criterion), to: g)
                } catch { throw TrainingError("\(error)") }
                if bnBatches > 0 { BatchNormReestimation.run(m, batches: bnInputs) { m($0) } }
                values.append(try evaluate(m))
            }
            curves.append(Curve(group: name, channels: channels, metric: values, drop: values.map { base - $0 }))
            log("\(name) (\(channels) channels): " + values.map { String(format: "%.1f", 100 * $0) }.joined(separator: " "))
        }
        return Report(checkpoint: path, split: split, metric: metric, criterion: criterion.rawValue, bnBatches: bnBatches, base: base,
                      ratios: ratios, curves: curves)
    }

    /// Each group's largest ratio whose drop is at most `maxLoss` (a fraction: 0.01 = one point),
    /// at most `cap`; groups with no such ratio are left out.
    public static func plan(_ r: Report, maxLoss: Double, cap: Double = 0.7) -> [(String, Double)] {
        r.curves.compactMap { c in
            let ok = zip(r.ratios, c.drop).filter { $0.0 <= cap + 1e-12 && $0.1 <= maxLoss + 1e-12 }.map(\.0)
            return ok.max().map { (c.group, $0) }
        }
    }

    /// The plan as a `qat prune --plan` file.
    public static func planYAML(_ r: Report, maxLoss: Double, cap: Double) -> String {
        let p = plan(r, maxLoss: maxLoss, cap: cap)
        var lines = ["# qat prune sensitivity \(r.checkpoint): the largest ratio per group whose \(r.metric) drop on \(r.split) is at most",
                     String(format: "# %.2f points (ratios capped at %.2f; criterion %@%@).", 100 * maxLoss, cap, r.criterion,
                            r.bnBatches > 0 ? ", BN re-estimated on \(r.bnBatches) batches" : ""),
                     "criterion: \(r.criterion)", "ratios:"]
        lines += p.map { "  \($0.0): \($0.1)" }
        if p.isEmpty { lines[lines.count - 1] = "ratios: {}   # no group stays within the accepted loss" }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func table(_ r: Report) -> String {
        let w = max(36, (r.curves.map(\.group.count).max() ?? 0) + 2)
        var lines = ["group".padding(toLength: w, withPad: " ", startingAt: 0) + "  ch  " + r.ratios.map { String(format: "%6.2f", $0) }.joined()]
        lines.append(String(format: "(%@ on %@, drop in points from %.2f%%)", r.metric, r.split, 100 * r.base))
        for c in r.curves {
            lines.append(c.group.padding(toLength: w, withPad: " ", startingAt: 0) + String(format: "%4d  ", c.channels)
                         + c.drop.map { String(format: "%6.1f", 100 * $0) }.joined())
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Sensitivity curves (metric against ratio), one line per group.
    public static func svg(_ r: Report) -> String {
        let series = r.curves.map { c in SVGChart.Series(name: c.group, points: zip(r.ratios, c.metric).map { ($0, 100 * $1) }) }
        return SVGChart.line(series, title: "Pruning sensitivity (\(r.criterion), \(r.split))", xlabel: "ratio of the group's channels removed",
                             ylabel: "\(r.metric) (%)")
    }

    public static func write(_ r: Report, to path: String) throws {
        do { try AtomicFile.write(try JSONCoding.encoder().encode(r), to: path) } catch { throw TrainingError("\(error)") }
    }

    public static func read(_ path: String) throws -> Report {
        guard let d = FileManager.default.contents(atPath: path) else { throw TrainingError("--sensitivity: cannot read \(path)") }
        do { return try JSONCoding.decoder().decode(Report.self, from: d) }
        catch { throw TrainingError("--sensitivity: \(path) is not a report of qat prune sensitivity (\(error))") }
    }
}
