import ArgumentParser
import Foundation
import Prune
import Training
import Files

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Structured pruning of classifier and RetinaNet checkpoints: channels removed, sensitivity curves.",
        subcommands: [PruneRunCommand.self, PruneSensitivityCommand.self], defaultSubcommand: PruneRunCommand.self)
}

/// Flags both prune commands share.
struct PruneOptions: ParsableArguments {
    @Option(help: "Channel importance: \(PruneCriterion.allCases.map(\.rawValue).joined(separator: ", ")) (default l1).")
    var criterion: String?
    @Option(help: "Re-estimate the pruned model's BatchNorm statistics on this many training batches (adaptive BN) before it is evaluated (and saved).")
    var bnBatches = 0
    @Option(name: .customLong("set"), help: "Override a key of the stored recipe.")
    var sets: [String] = []

    func validate() throws {
        if let criterion, PruneCriterion(rawValue: criterion) == nil {
            throw ValidationError("--criterion must be one of \(PruneCriterion.allCases.map(\.rawValue).joined(separator: ", ")), got \(criterion)")
        }
        guard bnBatches >= 0 && bnBatches <= 100_000 else { throw ValidationError("--bn-batches must be in 0...100000, got \(bnBatches)") }
    }
    var parsedCriterion: PruneCriterion? { criterion.flatMap(PruneCriterion.init(rawValue:)) }
}

struct PruneRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Remove channels from a classifier or RetinaNet checkpoint: writes a smaller model and the recipe that fine-tunes it (qat prune CKPT ... runs this).",
        discussion: """
        Channel groups (channels that must go together: a producer's filters, its BatchNorm, the depthwise conv after it, \
        every branch of a residual add, the inputs of their consumers) come from the model; --list prints them. \
        Exactly one of: --global-ratio R removes R of every prunable group's channels; --macs M finds the uniform ratio that keeps M of the MACs; \
        --plan PLAN.yaml gives a ratio per group (`criterion: l1` optional, `ratios: {GROUP: R, ...}`); \
        --max-loss X --sensitivity S.json takes each group's largest ratio whose drop in S.json (qat prune sensitivity) is at most X points (capped by --cap); \
        --macs M --sensitivity S.json spends the MAC budget where the curves lose least (greedy: least added drop per MAC saved). \
        The lowest-scoring channels go. Writes NEW.h5 (pruned float weights; its stored recipe's model.channels rebuilds the shapes, so qat eval works) \
        and NEW.yaml (fine-tuning recipe: quant.init_from NEW.h5); prints parameters, MACs and FP32 latency before and after.
        """)

    @Argument(help: "Checkpoint (HDF5) written by qat train: a classifier or a RetinaNet, usually an FP32 run's best.h5.")
    var checkpoint: String
    @Option(help: "Share of every prunable group's channels to remove, in [0, 1).")
    var globalRatio: Double?
    @Option(help: "Keep this share of the model's MACs, in (0, 1): the smallest uniform ratio that gets there.")
    var macs: Double?
    @Option(help: "YAML plan: ratios per group (and optionally the criterion).")
    var plan: String?
    @Option(help: "Accepted metric drop in points per group (with --sensitivity).")
    var maxLoss: Double?
    @Option(help: "A report of qat prune sensitivity (JSON): with --max-loss, or with --macs to spend the MAC budget where the curves lose least.")
    var sensitivity: String?
    @Option(help: "With --sensitivity: no group loses more than this share of its channels.")
    var cap = 0.7
    @Option(help: "L0 criterion: weights above this share of the layer's largest |w| count.")
    var l0Threshold: Double = Double(Importance.defaultL0Threshold)
    @Option(help: "The pruned checkpoint NEW.h5 (NEW.yaml is written beside it); never an existing checkpoint, recipe or metrics file.")
    var out: String?
    @Option(help: "Evaluate the metric on this split (train, val, test) before and after pruning (no fine-tuning).")
    var evalSplit: String?
    @Option(help: "Round each pruned group's width to a multiple of this (at least one multiple): widths that fill SIMD tiles.")
    var roundTo = 1
    @Option(help: "Input size of the latency measurement (default: the recipe's data.input_size).")
    var latencySize: Int?
    @Option(help: "Write the report as JSON here.")
    var report: String?
    @Flag(help: "List the channel groups (name, channels, prunable) and exit.")
    var list = false
    @OptionGroup var options: PruneOptions

    func validate() throws {
        if let evalSplit, !["train", "val", "test"].contains(evalSplit) { throw ValidationError("--eval-split must be train, val or test, got \(evalSplit)") }
        guard l0Threshold >= 0 && l0Threshold < 1 else { throw ValidationError("--l0-threshold must be in [0, 1), got \(l0Threshold)") }
        if let latencySize { try FlagCheck.range("--latency-size", latencySize, 8...1024, "pixels") }
        try FlagCheck.range("--round-to", roundTo, 1...256, "channels")
        if list { return }
        guard [globalRatio != nil, plan != nil, macs != nil, maxLoss != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --global-ratio R, --macs M, --plan PLAN.yaml and --max-loss X (or --list)")
        }
        if let globalRatio, !(globalRatio >= 0 && globalRatio < 1) { throw ValidationError("--global-ratio must be in [0, 1), got \(globalRatio)") }
        if let macs, !(macs > 0 && macs < 1) { throw ValidationError("--macs must be in (0, 1), got \(macs)") }
        if maxLoss != nil && sensitivity == nil { throw ValidationError("--max-loss needs --sensitivity S.json (from qat prune sensitivity)") }
        if let maxLoss, !(maxLoss >= 0 && maxLoss <= 100) { throw ValidationError("--max-loss is in points, 0...100, got \(maxLoss)") }
        guard cap > 0 && cap < 1 else { throw ValidationError("--cap must be in (0, 1), got \(cap)") }
        guard out != nil else { throw ValidationError("--out NEW.h5 is required") }
    }

    func run() throws {
        if list {
            let groups = try guarded { try ChannelPruning.groups(checkpoint: checkpoint, overrides: options.sets) }
            for g in groups {
                print(g.name.padding(toLength: max(40, g.name.count), withPad: " ", startingAt: 0)
                      + String(format: "%5d", g.channels) + "  " + (g.protectedBecause.map { "protected: \($0)" } ?? "\(g.slices.count) layers"))
            }
            return
        }
        if let report { try guarded { try ProtectedFiles.check(output: report) } }
        let selection: ChannelPruning.Selection
        if let globalRatio { selection = .globalRatio(globalRatio) }
        else if let macs { selection = sensitivity.map { .macsGuided(macs, sensitivity: $0, cap: cap) } ?? .macs(macs) }
        else if let plan { selection = .plan(plan) }
        else { selection = .maxLoss(maxLoss! / 100, sensitivity: sensitivity!, cap: cap) }
        let r = try guarded {
            try ChannelPruning.run(checkpoint: checkpoint, criterion: options.parsedCriterion, selection: selection, out: out!, evalSplit: evalSplit,
                                   bnBatches: options.bnBatches, latencySize: latencySize, roundTo: roundTo, overrides: options.sets, l0Threshold: Float(l0Threshold)) {
                FileHandle.standardError.write(Data(($0 + "\n").utf8))
            }
        }
        print(ChannelPruning.table(r), terminator: "")
        if let report { try guarded { try AtomicFile.write(try JSONCoding.encoder().encode(r), to: report) }; print("report: \(report)") }
    }
}

struct PruneSensitivityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensitivity",
        abstract: "Per-group pruning sensitivity: each channel group pruned alone at each ratio, the split evaluated; table, JSON, SVG curves, and a plan for an accepted loss.")

    @Argument(help: "Checkpoint (HDF5) written by qat train: a classifier or a RetinaNet.")
    var checkpoint: String
    @Option(help: "Ratios: start:end:step (inclusive) or a comma list, each in (0, 1).")
    var ratios = "0.1:0.9:0.1"
    @Option(help: "Split: train, val or test.")
    var split = "val"
    @Option(help: "Write the report as JSON here (qat prune --max-loss reads it).")
    var out: String?
    @Option(help: "Write the sensitivity curves as SVG here.")
    var svg: String?
    @Option(help: "With --plan-out: accepted drop in points per group.")
    var maxLoss: Double?
    @Option(help: "With --max-loss: no group loses more than this share of its channels.")
    var cap = 0.7
    @Option(help: "Write the plan for --max-loss here (qat prune --plan reads it).")
    var planOut: String?
    @OptionGroup var options: PruneOptions

    func validate() throws {
        guard ["train", "val", "test"].contains(split) else { throw ValidationError("--split must be train, val or test, got \(split)") }
        guard (maxLoss == nil) == (planOut == nil) else { throw ValidationError("--max-loss and --plan-out go together") }
        if let maxLoss, !(maxLoss >= 0 && maxLoss <= 100) { throw ValidationError("--max-loss is in points, 0...100, got \(maxLoss)") }
        guard cap > 0 && cap < 1 else { throw ValidationError("--cap must be in (0, 1), got \(cap)") }
    }

    func run() throws {
        for o in [out, svg, planOut].compactMap({ $0 }) { try guarded { try ProtectedFiles.check(output: o) } }
        let ratioList = try guarded { try PruneSensitivity.parseRatios(ratios) }
        let r = try guarded {
            try PruneSensitivity.run(checkpoint: checkpoint, ratios: ratioList, criterion: options.parsedCriterion ?? .l1, split: split,
                                     bnBatches: options.bnBatches, overrides: options.sets) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        }
        print(PruneSensitivity.table(r), terminator: "")
        if let out { try guarded { try PruneSensitivity.write(r, to: out) }; print("wrote \(out)") }
        if let svg { try guarded { try AtomicFile.write(Data(PruneSensitivity.svg(r).utf8), to: svg) }; print("wrote \(svg)") }
        if let planOut, let maxLoss {
            try guarded { try AtomicFile.write(Data(PruneSensitivity.planYAML(r, maxLoss: maxLoss / 100, cap: cap).utf8), to: planOut) }
            print("wrote \(planOut)")
        }
    }
}
