import Foundation
import Kernels
import Autodiff
import NN
import Prune
import Quant
import Checkpoint
import Recipes
import Files
import UserPaths

/// `qat prune CKPT (--global-ratio R | --macs M | --plan PLAN.yaml | --max-loss X --sensitivity S.json) [--criterion C] --out NEW.h5`: removes channels from
/// a classifier's or a RetinaNet detector's float model (groups from `ChannelGraph`, scored by `Importance`, removed by
/// `Pruner`) and writes
/// - NEW.h5: the pruned float weights (no optimizer state) with a stored recipe whose `model.channels`
///   rebuilds the pruned shapes, so `qat eval NEW.h5` works;
/// - NEW.yaml: that recipe as a fine-tuning run (`quant.init_from: NEW.h5`, FP32), to train with
///   `qat train NEW.yaml` or to use as a sweep variant's recipe (then QAT from its best.h5).
/// The report gives parameters, MACs and measured FP32 latency (batch 1 and 8) before and after, and
/// the metric on `evalSplit` when asked. `bnBatches` > 0 re-estimates the pruned model's BatchNorm
/// statistics on that many unaugmented training batches (adaptive BN, EagleEye) before it is evaluated
/// and saved: the statistics of layers whose inputs lost channels no longer describe their inputs.
public enum ChannelPruning {
    public struct GroupRow: Codable, Sendable, Equatable {
        public var group: String
        public var before: Int
        public var after: Int
    }

    public struct Report: Codable, Sendable {
        public var checkpoint: String
        public var out: String
        public var recipe: String
        public var criterion: String
        public var groups: [GroupRow]
        public var paramsBefore: Int, paramsAfter: Int
        public var macsBefore: Int, macsAfter: Int
        /// Median milliseconds of an eval-mode forward at batch 1 and batch 8 (FP32 engine, this machine)
        /// at `latencySize` px.
        public var latencySize: Int
        public var latencyBefore: [String: Double], latencyAfter: [String: Double]
        public var metric: String?
        public var metricBefore: Double?, metricAfter: Double?
    }

    /// A plan file: `criterion` (optional) and `ratios`, a mapping from group name to ratio in [0, 1).
    public static func readPlan(_ path: String) throws -> (criterion: PruneCriterion?, ratios: [(String, Double)]) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TrainingError("--plan: cannot read \(path)" + (PathProblem.brokenLink(path).map { ": " + $0 } ?? ""))
        }
        let tree: Tree
        do { tree = try Tree.parse(text, file: path) } catch { throw TrainingError("--plan: \(error)") }
        let r: Reader
        do { r = try Reader(tree, path: "", origin: Origin(file: path)) } catch { throw TrainingError("--plan: \(error)") }
        do {
            let c = try r.optString("criterion")
            let criterion = try c.map { name -> PruneCriterion in
                guard let v = PruneCriterion(rawValue: name) else {
                    throw RecipeError(origin: r.value("criterion")?.origin, key: "criterion", "'\(name)' is not a criterion; use one of \(PruneCriterion.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return v
            }
            guard case .map(let entries, _)? = r.value("ratios"), !entries.isEmpty else {
                throw RecipeError(origin: r.value("ratios")?.origin ?? tree.origin, key: "ratios",
                                  "needs a mapping from channel group (its first producing layer's path, as `qat prune --list` prints) to a ratio in [0, 1)")
            }
            let ratios = try entries.map { name, v -> (String, Double) in
                guard case .scalar(let s, _, _) = v, let x = Double(s), x >= 0, x < 1 else {
                    throw RecipeError(origin: v.origin, key: "ratios.\(name)", "must be a ratio in [0, 1) (the share of the group's channels removed)")
                }
                return (name, x)
            }
            try r.finish()
            return (criterion, ratios)
        } catch let e as RecipeError { throw TrainingError("--plan: \(e)") }
    }

    /// The float model of a checkpoint with its groups, for listing.
    public static func groups(checkpoint path: String, overrides: [String] = []) throws -> [ChannelGroup] {
        let (_, _, model) = try prunableModel(checkpoint: path, overrides: overrides)
        do { return try ChannelGraph.groups(of: model) } catch { throw TrainingError("\(error)") }
    }

    static func prunableModel(checkpoint path: String, overrides: [String]) throws -> (Recipe, Checkpoint, Module) {
        let c = try loadTrainedCheckpoint(path, use: "be pruned")
        let recipe: Recipe
        do { recipe = try Recipe.parse(c.recipe, file: "\(path) (stored recipe)", overrides: overrides) } catch { throw TrainingError("\(error)") }
        if let t = recipe.threads { Parallel.setThreads(t) }
        let model = try build(recipe, classes: try classCount(c, path: path))
        try loadFloatWeights(c, into: model, recipe: recipe, path: path)
        model.eval()
        return (recipe, c, model)
    }

    /// The recipe's model (its `model.channels` applied), without a dataset: a classifier, or a
    /// detector (RetinaNet; the decoupled design does not declare its channel flow).
    static func build(_ recipe: Recipe, classes: Int) throws -> Module {
        var rng = RNG(seed: recipe.seed)
        if recipe.task == "detection" { return try DetectionTask.makeDetector(recipe, classes: classes, rng: &rng) }
        return try ClassificationTask.classifier(recipe, classes: classes, rng: &rng)
    }

    /// The model's output count, from the checkpoint's stored class list (no dataset needed).
    static func classCount(_ c: Checkpoint, path: String) throws -> Int {
        guard let classes = TrainingRun.state(c)["classes"] as? [String], !classes.isEmpty else {
            throw TrainingError("\(path) records no class list (written by an older version); evaluate or retrain it first")
        }
        return classes.count
    }

    /// What is pruned: one ratio for every group, the uniform ratio that keeps a share of the MACs, a
    /// plan file, or the plan a sensitivity report (`PruneSensitivity`) gives for an accepted loss.
    public enum Selection: Sendable {
        case globalRatio(Double)
        case macs(Double)
        case plan(String)
        case maxLoss(Double, sensitivity: String, cap: Double)
        /// Sensitivity-guided ratios under a MAC budget: greedily, the step (a group's next ratio in the
        /// report) with the least added drop per MAC saved, until at most this share of the MACs is left.
        case macsGuided(Double, sensitivity: String, cap: Double)
    }

    public static func run(checkpoint path: String, criterion cliCriterion: PruneCriterion?, selection: Selection, out: String,
                           evalSplit: String? = nil, bnBatches: Int = 0, latencySize: Int? = nil, roundTo: Int = 1, overrides: [String] = [],
                           l0Threshold: Float = Importance.defaultL0Threshold,
                           log: (String) -> Void = { _ in }) throws -> Report {
        guard bnBatches >= 0 else { throw TrainingError("--bn-batches \(bnBatches) must be at least 0") }
        guard roundTo >= 1 else { throw TrainingError("--round-to \(roundTo) must be at least 1") }
        guard out.hasSuffix(".h5") else { throw TrainingError("--out: \(out): name the file NAME.h5 (NAME.yaml is written beside it)") }
        let recipeOut = String(out.dropLast(3)) + ".yaml"
        for o in [out, recipeOut] {
            guard URL(fileURLWithPath: o).standardizedFileURL.path != URL(fileURLWithPath: path).standardizedFileURL.path else {
                throw TrainingError("--out: \(o) is the checkpoint being pruned; name another file")
            }
            do { try ProtectedFiles.check(output: o) } catch { throw TrainingError("--out: \(error)") }
        }
        if FileManager.default.fileExists(atPath: recipeOut) { throw TrainingError("--out: \(recipeOut) exists; name another output or remove it") }
        let (recipe, source, model) = try prunableModel(checkpoint: path, overrides: overrides)
        let groups: [ChannelGroup]
        do { groups = try ChannelGraph.groups(of: model) } catch { throw TrainingError("\(error)") }
        var ratios: [(String, Double)]
        var criterion = cliCriterion ?? .l1
        let size = recipe.data.inputSize
        let summaryBefore = ModelSummary(model, inputShape: [1, 3, size, size])
        func eligible(_ r: Double) -> [(String, Double)] {
            let all = Pruner.uniform(groups, ratio: r)
            return criterion != .bn ? all : all.filter { n, _ in groups.first { $0.name == n }!.hasChannelScale }
        }
        switch selection {
        case .globalRatio(let r):
            guard r >= 0 && r < 1 else { throw TrainingError("--global-ratio \(r) must be in [0, 1)") }
            ratios = eligible(r)
        case .macs(let m):
            guard m > 0 && m < 1 else { throw TrainingError("--macs \(m) must be in (0, 1): the share of the model's MACs to keep") }
            let r = try uniformRatio(keepingMACs: m, of: summaryBefore.totalMACs, recipe: recipe, classes: try classCount(source, path: path),
                                     groups: groups, plan: eligible, size: size, roundTo: roundTo)
            log(String(format: "--macs %.3f: uniform ratio %.4f", m, r))
            ratios = eligible(r)
        case .plan(let p):
            let parsed = try readPlan(p)
            ratios = parsed.ratios
            if let c = parsed.criterion {
                if let cli = cliCriterion, cli != c { throw TrainingError("--criterion \(cli.rawValue) contradicts \(p)'s criterion \(c.rawValue)") }
                criterion = c
            }
        case .maxLoss(let loss, let sensitivity, let cap):
            guard loss >= 0, cap > 0 && cap < 1 else { throw TrainingError("--max-loss must be at least 0 and --cap in (0, 1)") }
            let rep: PruneSensitivity.Report
            (rep, criterion) = try readSensitivity(sensitivity, cli: cliCriterion)
            ratios = PruneSensitivity.plan(rep, maxLoss: loss, cap: cap)
            guard !ratios.isEmpty else { throw TrainingError(String(format: "--max-loss %.4f: no group of \(sensitivity) stays within it; accept more loss", loss)) }
        case .macsGuided(let m, let sensitivity, let cap):
            guard m > 0 && m < 1, cap > 0 && cap < 1 else { throw TrainingError("--macs must be in (0, 1) and --cap in (0, 1)") }
            let rep: PruneSensitivity.Report
            (rep, criterion) = try readSensitivity(sensitivity, cli: cliCriterion)
            ratios = try guidedRatios(keepingMACs: m, of: summaryBefore.totalMACs, report: rep, cap: cap, recipe: recipe,
                                      classes: try classCount(source, path: path), groups: groups, size: size, roundTo: roundTo, log: log)
        }
        let latencyBefore = latency(model, size: latencySize ?? size)
        let task = evalSplit != nil || bnBatches > 0 ? try makeTask(recipe) : nil
        func evaluate() throws -> Double? {
            guard let task, let split = evalSplit else { return nil }
            return try task.evaluate(model: model, split: split).required(recipe.eval.metric)
        }
        let metricBefore = try evaluate()
        let bnInputs = try task.map { try $0.calibrationInputs(batches: bnBatches) } ?? []

        let decisions: [Pruner.Decision]
        do {
            decisions = try Pruner.decide(groups, ratios: ratios, criterion: criterion, l0Threshold: l0Threshold, roundTo: roundTo)
            try Pruner.apply(decisions, to: groups)
        } catch { throw TrainingError("\(error)") }
        // Adaptive BN (EagleEye, Li et al. 2020): the pruned model's BatchNorm statistics re-estimated.
        if bnBatches > 0 { BatchNormReestimation.run(model, batches: bnInputs) { model($0) } }
        let summaryAfter = ModelSummary(model, inputShape: [1, 3, size, size])
        let latencyAfter = latency(model, size: latencySize ?? size)
        let metricAfter = try evaluate()

        // The recipe that rebuilds the pruned shapes: the counts of earlier prunings, updated by this
        // one's, in model order.
        var pruned = recipe
        var counts = Dictionary(uniqueKeysWithValues: recipe.model.channels.map { ($0.group, $0.keep) })
        for d in decisions where d.kept.count < d.before { counts[d.group] = d.kept.count }
        pruned.model.channels = groups.compactMap { g in counts[g.name].map { .init(group: g.name, keep: $0) } }
        pruned.quant.mode = "fp32"
        pruned.quant.initFrom = nil
        pruned.quant.bnReestimationBatches = nil
        pruned.quant.adaround.enabled = false

        var c = Checkpoint.capture(model: model)
        c.step = 0; c.epoch = 0; c.seed = recipe.seed
        c.recipe = pruned.resolvedYAML(); c.model = recipe.model.backbone
        var st = TrainingRun.state(source)
        st["pruned_from"] = path; st["prune_criterion"] = criterion.rawValue
        st["best"] = NSNull(); st["best_step"] = -1
        c.metricsJSON = String(data: try JSONSerialization.data(withJSONObject: st, options: [.sortedKeys]), encoding: .utf8)!
        do { try c.save(to: out) } catch { throw TrainingError("--out: \(error)") }

        var finetune = pruned
        finetune.name = recipe.name + "-pruned"
        finetune.quant.initFrom = out
        let header = "# Fine-tunes the pruned model of \(out) (written by qat prune from \(path), criterion \(criterion.rawValue)).\n"
        do { try AtomicFile.write(Data((header + finetune.resolvedYAML()).utf8), to: recipeOut, replacing: .outputsOnly) }
        catch { throw TrainingError("--out: \(error)") }

        let before = Dictionary(uniqueKeysWithValues: groups.map { ($0.name, $0.channels) })
        let rows = decisions.map { GroupRow(group: $0.group, before: before[$0.group] ?? $0.before, after: $0.kept.count) }
        return Report(checkpoint: path, out: out, recipe: recipeOut, criterion: criterion.rawValue, groups: rows,
                      paramsBefore: summaryBefore.totalParams, paramsAfter: summaryAfter.totalParams,
                      macsBefore: summaryBefore.totalMACs, macsAfter: summaryAfter.totalMACs,
                      latencySize: latencySize ?? size, latencyBefore: latencyBefore, latencyAfter: latencyAfter,
                      metric: evalSplit.map { _ in recipe.eval.metric }, metricBefore: metricBefore, metricAfter: metricAfter)
    }

    /// The smallest uniform ratio (to 1e-4) whose pruned model keeps at most `share` of `total` MACs,
    /// found by bisection on models rebuilt from channel counts (no weights).
    static func uniformRatio(keepingMACs share: Double, of total: Int, recipe: Recipe, classes: Int, groups: [ChannelGroup],
                             plan: (Double) -> [(String, Double)], size: Int, roundTo: Int = 1) throws -> Double {
        func macs(_ r: Double) throws -> Int {
            try ChannelPruning.macs(recipe: recipe, classes: classes, groups: groups, ratios: plan(r), size: size, roundTo: roundTo)
        }
        var lo = 0.0, hi = 0.95
        guard try Double(macs(hi)) <= share * Double(total) else {
            throw TrainingError(String(format: "--macs %.3f: even a ratio of 0.95 keeps %.3f of the MACs (unprunable layers); ask for more", share, Double(try macs(hi)) / Double(total)))
        }
        while hi - lo > 1e-4 {
            let mid = (lo + hi) / 2
            if try Double(macs(mid)) <= share * Double(total) { hi = mid } else { lo = mid }
        }
        return hi
    }

    /// MACs of the classifier rebuilt from channel counts (current counts, then `ratios` applied to the
    /// groups of `groups`), without weights.
    static func macs(recipe: Recipe, classes: Int, groups: [ChannelGroup], ratios: [(String, Double)], size: Int, roundTo: Int = 1) throws -> Int {
        let current = Dictionary(uniqueKeysWithValues: groups.map { ($0.name, $0.channels) })
        var rr = recipe
        var counts = Dictionary(uniqueKeysWithValues: recipe.model.channels.map { ($0.group, $0.keep) })
        for (name, x) in ratios {
            guard let n = current[name] else { throw TrainingError("no channel group '\(name)' in this model") }
            counts[name] = Pruner.keptCount(n, ratio: x, roundTo: roundTo)
        }
        rr.model.channels = counts.sorted { $0.key < $1.key }.map { .init(group: $0.key, keep: $0.value) }
        return ModelSummary(try build(rr, classes: classes), inputShape: [1, 3, size, size]).totalMACs
    }

    /// `Selection.macsGuided`: each group's MAC saving at each ratio is measured alone; then, while the
    /// model (rebuilt with the chosen ratios) has more than `share` of `total` MACs, the group whose
    /// next ratio adds the least drop (negative drops count as 0) per MAC saved moves to it.
    static func guidedRatios(keepingMACs share: Double, of total: Int, report: PruneSensitivity.Report, cap: Double, recipe: Recipe,
                             classes: Int, groups: [ChannelGroup], size: Int, roundTo: Int = 1, log: (String) -> Void) throws -> [(String, Double)] {
        let steps = report.ratios.enumerated().filter { $0.element <= cap + 1e-12 }.map(\.offset)
        guard !steps.isEmpty else { throw TrainingError("--cap \(cap): the sensitivity report has no ratio at or below it") }
        struct Candidate { let name: String; let ratios: [Double]; let drops: [Double]; var saved: [Double] }
        var cands: [Candidate] = try report.curves.map { c in
            guard groups.contains(where: { $0.name == c.group && $0.isPrunable && $0.channels == c.channels }) else {
                throw TrainingError("--sensitivity: group \(c.group) (\(c.channels) channels) is not a prunable group of this model; was the report made for this checkpoint?")
            }
            return Candidate(name: c.group, ratios: steps.map { report.ratios[$0] }, drops: steps.map { max(0, c.drop[$0]) }, saved: [])
        }
        for i in cands.indices {
            cands[i].saved = try cands[i].ratios.map { Double(total - (try macs(recipe: recipe, classes: classes, groups: groups, ratios: [(cands[i].name, $0)], size: size, roundTo: roundTo))) }
        }
        var level = [Int](repeating: -1, count: cands.count)
        func chosen() -> [(String, Double)] { cands.indices.filter { level[$0] >= 0 }.map { (cands[$0].name, cands[$0].ratios[level[$0]]) } }
        var now = total
        while Double(now) > share * Double(total) {
            var best: (Int, Double, Double)? = nil
            for i in cands.indices where level[i] + 1 < cands[i].ratios.count {
                let k = level[i] + 1
                let dDrop = cands[i].drops[k] - (level[i] >= 0 ? cands[i].drops[level[i]] : 0)
                let dSave = cands[i].saved[k] - (level[i] >= 0 ? cands[i].saved[level[i]] : 0)
                guard dSave > 0 else { continue }
                let cost = max(0, dDrop) / dSave
                if best == nil || cost < best!.1 || (cost == best!.1 && dSave > best!.2) { best = (i, cost, dSave) }
            }
            guard let (i, _, _) = best else {
                throw TrainingError(String(format: "--macs %.3f: every group is at its largest ratio (cap %.2f) with %.3f of the MACs left; raise --cap or ask for more MACs",
                                           share, cap, Double(now) / Double(total)))
            }
            level[i] += 1
            now = try macs(recipe: recipe, classes: classes, groups: groups, ratios: chosen(), size: size, roundTo: roundTo)
        }
        log(String(format: "--macs %.3f guided by %@: %d groups pruned, %.3f of the MACs left", share, report.checkpoint, chosen().count, Double(now) / Double(total)))
        return chosen()
    }

    /// A sensitivity report and its criterion, which must agree with the one given on the command line.
    static func readSensitivity(_ path: String, cli: PruneCriterion?) throws -> (PruneSensitivity.Report, PruneCriterion) {
        let rep = try PruneSensitivity.read(path)
        guard let c = PruneCriterion(rawValue: rep.criterion) else { throw TrainingError("--sensitivity: \(path) names no known criterion") }
        if let cli, cli != c { throw TrainingError("--criterion \(cli.rawValue) contradicts \(path)'s criterion \(c.rawValue)") }
        return (rep, c)
    }

    /// Median milliseconds of eval-mode forwards (after two warm-up runs) at batch 1 and 8.
    static func latency(_ model: Module, size: Int, runs: Int = 7) -> [String: Double] {
        var out: [String: Double] = [:]
        var rng = RNG(seed: 1)
        for batch in [1, 8] {
            let x = Tensor.randn([batch, 3, size, size], rng: &rng)
            var times: [Double] = []
            noGrad {
                for i in 0..<(runs + 2) {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    _ = model(x)
                    if i >= 2 { times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6) }
                }
            }
            out["batch\(batch)"] = times.sorted()[times.count / 2]
        }
        return out
    }

    public static func table(_ r: Report) -> String {
        var lines = ["group                                   channels", String(repeating: "-", count: 52)]
        for g in r.groups where g.after != g.before {
            lines.append(g.group.padding(toLength: max(40, g.group.count), withPad: " ", startingAt: 0) + String(format: "%4d -> %4d", g.before, g.after))
        }
        let untouched = r.groups.filter { $0.after == $0.before }.count
        if untouched > 0 { lines.append("(\(untouched) groups unchanged)") }
        func ratio(_ a: Int, _ b: Int) -> String { String(format: "%.2fx", Double(a) / Double(max(b, 1))) }
        lines.append(String(format: "parameters: %d -> %d (%@ fewer)", r.paramsBefore, r.paramsAfter, ratio(r.paramsBefore, r.paramsAfter)))
        lines.append(String(format: "MACs per image: %d -> %d (%@ fewer)", r.macsBefore, r.macsAfter, ratio(r.macsBefore, r.macsAfter)))
        for b in ["batch1", "batch8"] {
            let x = r.latencyBefore[b] ?? .nan, y = r.latencyAfter[b] ?? .nan
            lines.append(String(format: "FP32 latency %@ at %d px: %.2f -> %.2f ms (%.2fx faster; MACs %.2fx fewer)", b, r.latencySize, x, y, x / y,
                                Double(r.macsBefore) / Double(max(r.macsAfter, 1))))
        }
        if let m = r.metric, let a = r.metricBefore, let b = r.metricAfter {
            lines.append(String(format: "%@ before fine-tuning: %.2f%% -> %.2f%%", m, 100 * a, 100 * b))
        }
        lines.append("wrote \(r.out) and \(r.recipe) (criterion \(r.criterion)); fine-tune: qat train \(r.recipe)")
        return lines.joined(separator: "\n") + "\n"
    }
}
