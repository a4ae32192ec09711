import ArgumentParser
import Foundation
import Prune
import Training
import Files

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove channels from a classifier checkpoint (structured pruning): writes a smaller model and the recipe that fine-tunes it.",
        discussion: """
        Channel groups (channels that must go together: a producer's filters, its BatchNorm, the depthwise conv after it, \
        every branch of a residual add, the inputs of their consumers) come from the model; --list prints them. \
        --ratio R removes R of every prunable group's channels; --macs M finds the uniform ratio that keeps M of the MACs; --plan PLAN.yaml gives a ratio per group \
        (`criterion: l1` optional, `ratios: {GROUP: R, ...}`). The lowest-scoring channels go. \
        Writes NEW.h5 (pruned float weights; its stored recipe's model.channels rebuilds the shapes, so qat eval works) \
        and NEW.yaml (fine-tuning recipe: quant.init_from NEW.h5); prints parameters, MACs and FP32 latency before and after.
        """)

    @Argument(help: "Checkpoint (HDF5) written by qat train: a classifier, usually an FP32 run's best.h5.")
    var checkpoint: String
    @Option(help: "Share of every prunable group's channels to remove, in [0, 1).")
    var ratio: Double?
    @Option(help: "Keep this share of the model's MACs, in (0, 1): the smallest uniform ratio that gets there.")
    var macs: Double?
    @Option(help: "YAML plan: ratios per group (and optionally the criterion).")
    var plan: String?
    @Option(help: "Channel importance: \(PruneCriterion.allCases.map(\.rawValue).joined(separator: ", ")) (default l1).")
    var criterion: String?
    @Option(help: "L0 criterion: weights above this share of the layer's largest |w| count.")
    var l0Threshold: Double = Double(Importance.defaultL0Threshold)
    @Option(help: "The pruned checkpoint NEW.h5 (NEW.yaml is written beside it); never an existing checkpoint, recipe or metrics file.")
    var out: String?
    @Option(help: "Evaluate the metric on this split (train, val, test) before and after pruning (no fine-tuning).")
    var evalSplit: String?
    @Option(help: "Write the report as JSON here.")
    var report: String?
    @Flag(help: "List the channel groups (name, channels, prunable) and exit.")
    var list = false
    @Option(name: .customLong("set"), help: "Override a key of the stored recipe.")
    var sets: [String] = []

    func validate() throws {
        if let criterion, PruneCriterion(rawValue: criterion) == nil {
            throw ValidationError("--criterion must be one of \(PruneCriterion.allCases.map(\.rawValue).joined(separator: ", ")), got \(criterion)")
        }
        if let evalSplit, !["train", "val", "test"].contains(evalSplit) { throw ValidationError("--eval-split must be train, val or test, got \(evalSplit)") }
        guard l0Threshold >= 0 && l0Threshold < 1 else { throw ValidationError("--l0-threshold must be in [0, 1), got \(l0Threshold)") }
        if list { return }
        guard [ratio != nil, plan != nil, macs != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --ratio R, --macs M and --plan PLAN.yaml (or --list)")
        }
        if let macs, !(macs > 0 && macs < 1) { throw ValidationError("--macs must be in (0, 1), got \(macs)") }
        if let ratio, !(ratio >= 0 && ratio < 1) { throw ValidationError("--ratio must be in [0, 1), got \(ratio)") }
        guard out != nil else { throw ValidationError("--out NEW.h5 is required") }
    }

    func run() throws {
        if list {
            let groups = try guarded { try ChannelPruning.groups(checkpoint: checkpoint, overrides: sets) }
            for g in groups {
                print(g.name.padding(toLength: max(40, g.name.count), withPad: " ", startingAt: 0)
                      + String(format: "%5d", g.channels) + "  " + (g.protectedBecause.map { "protected: \($0)" } ?? "\(g.slices.count) layers"))
            }
            return
        }
        if let report { try guarded { try ProtectedFiles.check(output: report) } }
        let r = try guarded {
            try ChannelPruning.run(checkpoint: checkpoint, criterion: criterion.flatMap(PruneCriterion.init(rawValue:)), ratio: ratio, plan: plan, macs: macs, out: out!,
                                   evalSplit: evalSplit, overrides: sets, l0Threshold: Float(l0Threshold)) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        }
        print(ChannelPruning.table(r), terminator: "")
        if let report { try guarded { try AtomicFile.write(try JSONCoding.encoder().encode(r), to: report) }; print("report: \(report)") }
    }
}
