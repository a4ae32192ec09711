import XCTest
import Foundation
import Checkpoint
import Recipes
import Prune
@testable import Training

final class ChannelPruningTests: XCTestCase {
    /// qat prune on a trained classifier: a smaller checkpoint whose stored recipe rebuilds it (qat eval
    /// reproduces the pruned model's metric), and a fine-tuning recipe that trains it and then QAT.
    func testPruneEvaluateFineTuneAndQuantize() throws {
        let root = tempDir("prune")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fp = try tinyRecipe(overrides: ["train.optimizer.lr=0.01", "train.epochs=1"])
        guard case .finished = try TrainingRun(recipe: fp, runDir: root + "/fp32", resume: false, quiet: true).run() else { return XCTFail() }
        let best = root + "/fp32/checkpoints/best.h5"
        let out = root + "/pruned.h5"
        let r = try ChannelPruning.run(checkpoint: best, criterion: .fpgm, selection: .globalRatio(0.5), out: out, evalSplit: "val")
        XCTAssertLessThan(Double(r.paramsAfter), 0.5 * Double(r.paramsBefore))
        XCTAssertLessThan(Double(r.macsAfter), 0.5 * Double(r.macsBefore))
        XCTAssertTrue(r.groups.allSatisfy { $0.after == max(1, $0.before - $0.before / 2) }, "\(r.groups)")
        XCTAssertNotNil(r.latencyAfter["batch8"])
        XCTAssertTrue(ChannelPruning.table(r).contains("MACs per image"))
        let stored = try Recipe.parse(try Checkpoint.load(from: out).recipe)
        XCTAssertEqual(stored.model.channels.count, r.groups.count)
        XCTAssertEqual(stored.quant.mode, "fp32")
        // The stored recipe rebuilds the pruned model: qat eval gives the metric the pruning measured.
        let e = try CheckpointEvaluation.run(checkpoint: out, data: nil, split: "val", overrides: [], fp32: false)
        XCTAssertEqual(e.metrics["accuracy"], r.metricAfter)
        // NEW.yaml fine-tunes from NEW.h5; a QAT run of the fine-tuned model keeps the pruned shapes.
        let ft = try Recipe.load(path: r.recipe, overrides: ["train.epochs=1"])
        XCTAssertEqual(ft.quant.initFrom, out)
        XCTAssertTrue(ft.name.hasSuffix("-pruned"))
        guard case .finished = try TrainingRun(recipe: ft, runDir: root + "/ft", resume: false, quiet: true).run() else { return XCTFail() }
        // Clipped: learnable ranges on this 1-epoch, half-pruned x0.25 model (1x1 last maps, batch 8) take
        // steps large enough to overflow within an epoch once calibrated on the activations it trains with
        // (with the running statistics' narrow ranges it trained a dead network at loss ln 12 instead).
        let qat = try Recipe.load(path: r.recipe, overrides: ["train.epochs=1", "quant.mode=qat", "quant.init_from=\(root)/ft/checkpoints/best.h5",
                                                              "train.clip_grad_norm=5"])
        guard case .finished(let fq) = try TrainingRun(recipe: qat, runDir: root + "/qat", resume: false, quiet: true).run() else { return XCTFail() }
        let eq = try CheckpointEvaluation.run(checkpoint: root + "/qat/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false)
        XCTAssertTrue(eq.quantized)
        XCTAssertEqual(eq.metrics, fq.final)
        // The pruned QAT model runs on the int8 engine (shapes come from the modules): codes as the fake-quant model's.
        let e8 = try CheckpointEvaluation.run(checkpoint: root + "/qat/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false,
                                              engine: .int8(compare: true))
        let c8 = try XCTUnwrap(e8.comparison)
        XCTAssertGreaterThanOrEqual(c8.layerwise.fraction, 0.999)
        XCTAssertLessThanOrEqual(c8.layerwise.maxDifference, 1)
        // Pruning the pruned model again: its recipe lists the new counts of every group it shrank.
        let again = try ChannelPruning.run(checkpoint: root + "/ft/checkpoints/best.h5", criterion: nil, selection: .globalRatio(0.25), out: root + "/again.h5")
        let counts = try Recipe.parse(try Checkpoint.load(from: root + "/again.h5").recipe).model.channels
        XCTAssertEqual(counts.map(\.keep), again.groups.map(\.after))
        XCTAssertLessThan(again.paramsAfter, again.paramsBefore)
    }

    func testPlansAndBadInput() throws {
        let root = tempDir("prune-plan")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fp = try tinyRecipe(overrides: ["train.steps=2"])
        guard case .finished = try TrainingRun(recipe: fp, runDir: root + "/fp32", resume: false, quiet: true).run() else { return XCTFail() }
        let best = root + "/fp32/checkpoints/best.h5"
        func write(_ text: String) throws -> String {
            let p = root + "/plan-\(UUID().uuidString).yaml"
            try text.write(toFile: p, atomically: true, encoding: .utf8)
            return p
        }
        let plan = try write("criterion: l2\nratios:\n  features.2.conv.0.0: 0.5\n  features.4.conv.2: 0.25\n")
        let r = try ChannelPruning.run(checkpoint: best, criterion: nil, selection: .plan(plan), out: root + "/p.h5")
        XCTAssertEqual(r.criterion, "l2")
        XCTAssertEqual(r.groups.map(\.group), ["features.2.conv.0.0", "features.4.conv.2"])
        XCTAssertEqual(r.groups.map(\.after), [r.groups[0].before - r.groups[0].before / 2, r.groups[1].before - r.groups[1].before / 4])
        func fails(_ planText: String?, ratio: Double? = nil, criterion: PruneCriterion? = nil, out: String? = nil, _ expected: [String],
                   line: UInt = #line) throws {
            let selection: ChannelPruning.Selection = try planText.map { .plan(try write($0)) } ?? .globalRatio(ratio ?? 1)
            XCTAssertThrowsError(try ChannelPruning.run(checkpoint: best, criterion: criterion, selection: selection,
                                                        out: out ?? root + "/x-\(UUID().uuidString).h5"), line: line) { e in
                for s in expected { XCTAssertTrue("\(e)".contains(s), "\(e) lacks \(s)", line: line) }
            }
        }
        try fails("ratios:\n  features.2.conv.0: 0.5\n", ["no channel group 'features.2.conv.0'", "closest"])
        try fails("ratios:\n  features.2.conv.0.0: 1.5\n", ["ratios.features.2.conv.0.0", ".yaml:2:", "[0, 1)"])
        try fails("ratios:\n  classifier.1: 0.5\n", ["classifier.1", "the model output"])
        try fails("ratios: {}\n", ["ratios", "mapping from channel group"])
        try fails("criterion: l7\nratios:\n  features.2.conv.0.0: 0.5\n", ["'l7' is not a criterion"])
        try fails("ratio:\n  features.2.conv.0.0: 0.5\n", ["ratio"])
        try fails("criterion: l1\nratios:\n  features.2.conv.0.0: 0.5\n", criterion: .fpgm, ["contradicts"])
        try fails(nil, ratio: 0.5, out: root + "/p.h5", ["p.h5"])                      // never replaces a checkpoint
        try fails(nil, ratio: 0.5, out: best, ["is the checkpoint being pruned"])
        try fails(nil, ratio: 0.5, out: root + "/y.onnx", ["NAME.h5"])
        try fails(nil, ratio: 1, ["--global-ratio 1.0 must be in [0, 1)"])
        // --macs: the uniform ratio that keeps at most that share of the MACs (and not much less).
        let half = try ChannelPruning.run(checkpoint: best, criterion: .l1, selection: .macs(0.5), out: root + "/half.h5")
        let kept = Double(half.macsAfter) / Double(half.macsBefore)
        XCTAssertLessThanOrEqual(kept, 0.5)
        XCTAssertGreaterThan(kept, 0.4)
        // --round-to 8: every pruned width a multiple of 8 (or the group's own width), still within the budget.
        let rounded = try ChannelPruning.run(checkpoint: best, criterion: .l1, selection: .macs(0.5), out: root + "/r8.h5", roundTo: 8)
        XCTAssertTrue(rounded.groups.allSatisfy { $0.after % 8 == 0 || $0.after == $0.before }, "\(rounded.groups)")
        XCTAssertLessThanOrEqual(Double(rounded.macsAfter) / Double(rounded.macsBefore), 0.5)
        // A recipe whose model.channels names no group, or an impossible count, names the key.
        XCTAssertThrowsError(try CheckpointEvaluation.run(checkpoint: best, data: nil, split: "val",
                                                          overrides: ["model.channels=[{group: features.2.conv.0, keep: 3}]"], fp32: false)) { e in
            XCTAssertTrue("\(e)".contains("model.channels") && "\(e)".contains("features.2.conv.0"), "\(e)")
        }
        XCTAssertThrowsError(try tinyRecipe(overrides: ["model.channels=[{group: features.2.conv.0.0, keep: 0}]"])) { e in
            XCTAssertTrue("\(e)".contains("model.channels[0].keep"), "\(e)")
        }
        XCTAssertThrowsError(try tinyRecipe(overrides: ["model.channels=[{group: a, keep: 2}, {group: a, keep: 3}]"])) { e in
            XCTAssertTrue("\(e)".contains("listed twice"), "\(e)")
        }
    }

    /// Sensitivity: each group pruned alone; a curve's point equals what qat prune gives for a plan of
    /// that group alone; the plan for an accepted loss takes each group's largest ratio within it.
    func testSensitivityCurvesAndMaxLossPlan() throws {
        let root = tempDir("prune-sens")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fp = try tinyRecipe(overrides: ["train.optimizer.lr=0.01", "train.epochs=1"])
        guard case .finished = try TrainingRun(recipe: fp, runDir: root + "/fp32", resume: false, quiet: true).run() else { return XCTFail() }
        let best = root + "/fp32/checkpoints/best.h5"
        XCTAssertEqual(try PruneSensitivity.parseRatios("0.1:0.9:0.1").count, 9)
        XCTAssertEqual(try PruneSensitivity.parseRatios("0.25, 0.5"), [0.25, 0.5])
        for bad in ["0:0.5:0.1", "0.5,1", "a,b", "0.9:0.1:0.1"] { XCTAssertThrowsError(try PruneSensitivity.parseRatios(bad), bad) }
        let r = try PruneSensitivity.run(checkpoint: best, ratios: [0.25, 0.75], criterion: .l2, split: "val", bnBatches: 2)
        let groups = try ChannelPruning.groups(checkpoint: best)
        XCTAssertEqual(r.curves.map(\.group), groups.filter(\.isPrunable).map(\.name))
        XCTAssertTrue(r.curves.allSatisfy { $0.metric.count == 2 && zip($0.metric, $0.drop).allSatisfy { abs(r.base - $0.0 - $0.1) < 1e-12 } })
        XCTAssertTrue(PruneSensitivity.table(r).contains(r.curves[0].group))
        XCTAssertTrue(PruneSensitivity.svg(r).hasPrefix("<svg"))
        // One point checked against qat prune with that group alone (same criterion, same BN re-estimation).
        let c = r.curves[3]
        let plan = root + "/plan-one.yaml"
        try "criterion: l2\nratios:\n  \(c.group): 0.75\n".write(toFile: plan, atomically: true, encoding: .utf8)
        let one = try ChannelPruning.run(checkpoint: best, criterion: nil, selection: .plan(plan), out: root + "/one.h5", evalSplit: "val", bnBatches: 2)
        XCTAssertEqual(one.metricAfter, c.metric[1])
        // Plans: everything within a loss of 100 points (capped at 0.7: the 0.75 points are over the cap, so 0.25);
        // within a loss below every drop, only the groups that lost nothing.
        XCTAssertEqual(PruneSensitivity.plan(r, maxLoss: 1, cap: 0.7).map(\.1), Array(repeating: 0.25, count: r.curves.count))
        XCTAssertEqual(PruneSensitivity.plan(r, maxLoss: 1, cap: 0.8).map(\.1), Array(repeating: 0.75, count: r.curves.count))
        let strict = PruneSensitivity.plan(r, maxLoss: 0, cap: 0.9)
        XCTAssertTrue(strict.allSatisfy { name, x in r.curves.first { $0.group == name }!.drop[x == 0.25 ? 0 : 1] <= 0 })
        let sens = root + "/sens.json"
        try PruneSensitivity.write(r, to: sens)
        XCTAssertTrue(PruneSensitivity.planYAML(r, maxLoss: 0.02, cap: 0.7).contains("criterion: l2"))
        // The notebook export shows the curves (pre-rendered SVG and a matplotlib cell) and the table.
        let written = try NotebookExport.export(dir: sens, out: root + "/sens.ipynb", html: true)
        let nb = try String(contentsOfFile: written[0], encoding: .utf8), page = try String(contentsOfFile: written[1], encoding: .utf8)
        XCTAssertTrue(nb.contains("Pruning sensitivity") && nb.contains("svg+xml") && nb.contains(r.curves[0].group))
        XCTAssertTrue(page.contains("<svg") && page.contains(r.curves[0].group))
        let m = try ChannelPruning.run(checkpoint: best, criterion: nil, selection: .maxLoss(1, sensitivity: sens, cap: 0.7), out: root + "/m.h5")
        XCTAssertEqual(m.criterion, "l2")
        XCTAssertEqual(m.groups.count, r.curves.count)
        // A MAC budget spent where the curves lose least: at most that share left.
        let g = try ChannelPruning.run(checkpoint: best, criterion: nil, selection: .macsGuided(0.6, sensitivity: sens, cap: 0.8), out: root + "/g.h5")
        XCTAssertLessThanOrEqual(Double(g.macsAfter) / Double(g.macsBefore), 0.6)
        XCTAssertTrue(g.groups.allSatisfy { $0.after < $0.before })
        XCTAssertThrowsError(try ChannelPruning.run(checkpoint: best, criterion: nil, selection: .macsGuided(0.05, sensitivity: sens, cap: 0.3), out: root + "/u.h5")) { e in
            XCTAssertTrue("\(e)".contains("every group is at its largest ratio"), "\(e)")
        }
        XCTAssertThrowsError(try ChannelPruning.run(checkpoint: best, criterion: .l1, selection: .maxLoss(1, sensitivity: sens, cap: 0.7), out: root + "/n.h5")) { e in
            XCTAssertTrue("\(e)".contains("contradicts"), "\(e)")
        }
        XCTAssertThrowsError(try ChannelPruning.run(checkpoint: best, criterion: nil, selection: .maxLoss(1, sensitivity: plan, cap: 0.7), out: root + "/n.h5")) { e in
            XCTAssertTrue("\(e)".contains("not a report of qat prune sensitivity"), "\(e)")
        }
    }

    /// train.bn_sparsity (network slimming) shrinks the BatchNorm scales against the same run without it,
    /// by about lambda x lr x steps each (the subgradient of lambda * sum |gamma|).
    func testBNSparsityShrinksGammas() throws {
        let root = tempDir("slim")
        defer { try? FileManager.default.removeItem(atPath: root) }
        func gammas(_ extra: [String], _ tag: String) throws -> Double {
            let r = try tinyRecipe(overrides: ["train.steps=4", "train.optimizer.momentum=0", "train.optimizer.weight_decay=0"] + extra)
            guard case .finished = try TrainingRun(recipe: r, runDir: root + "/" + tag, resume: false, quiet: true).run() else { XCTFail(); return 0 }
            let c = try Checkpoint.load(from: root + "/\(tag)/checkpoints/last.h5")
            let keys = c.params.keys.filter { k in c.buffers[String(k.dropLast("weight".count)) + "runningMean"] != nil }
            XCTAssertGreaterThan(keys.count, 10)
            return keys.reduce(0.0) { $0 + c.params[$1]!.values.reduce(0.0) { $0 + Double(abs($1)) } }
        }
        let plain = try gammas([], "plain"), slim = try gammas(["train.bn_sparsity=0.01"], "slim")
        XCTAssertLessThan(slim, plain)
        let r = try tinyRecipe(overrides: ["train.bn_sparsity=0.01"])
        XCTAssertTrue(r.resolvedYAML().contains("bn_sparsity: 0.01"))
        XCTAssertFalse(try tinyRecipe().resolvedYAML().contains("bn_sparsity"))
        XCTAssertThrowsError(try tinyRecipe(overrides: ["train.bn_sparsity=-1"])) { e in XCTAssertTrue("\(e)".contains("train.bn_sparsity"), "\(e)") }
    }

    /// A RetinaNet checkpoint prunes the same way (backbone, FPN and head towers; the heads' outputs
    /// kept): qat eval of NEW.h5 reproduces the pruned model's mAP, and NEW.yaml fine-tunes it.
    func testDetectorPruning() throws {
        let root = tempDir("prune-det")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fp = try tinyDetectionRecipe(overrides: ["train.epochs=1"])
        guard case .finished = try TrainingRun(recipe: fp, runDir: root + "/fp32", resume: false, quiet: true).run() else { return XCTFail() }
        let best = root + "/fp32/checkpoints/best.h5"
        let groups = try ChannelPruning.groups(checkpoint: best)
        XCTAssertTrue(groups.contains { $0.name == "fpn.output.2" && $0.isPrunable })
        XCTAssertEqual(groups.first { $0.name == "classificationHead.predictor" }?.protectedBecause, "the class logits")
        let out = root + "/pruned.h5"
        let r = try ChannelPruning.run(checkpoint: best, criterion: .l1, selection: .globalRatio(0.3), out: out, evalSplit: "val", bnBatches: 2)
        XCTAssertLessThan(r.macsAfter, r.macsBefore)
        XCTAssertEqual(r.metric, "map50")
        let e = try CheckpointEvaluation.run(checkpoint: out, data: nil, split: "val", overrides: [], fp32: false)
        XCTAssertEqual(e.metrics["map50"], r.metricAfter)
        let ft = try Recipe.load(path: r.recipe, overrides: ["train.epochs=1"])
        guard case .finished = try TrainingRun(recipe: ft, runDir: root + "/ft", resume: false, quiet: true).run() else { return XCTFail() }
        // The decoupled design does not declare its channel flow: an error naming what is missing.
        let dec = try tinyDetectionRecipe(overrides: ["detector.design=decoupled", "model.channels=[{group: fpn.output.2, keep: 4}]"])
        XCTAssertThrowsError(try ChannelPruning.build(dec, classes: 3)) { e in
            XCTAssertTrue("\(e)".contains("ChannelFlow"), "\(e)")
        }
    }
}
