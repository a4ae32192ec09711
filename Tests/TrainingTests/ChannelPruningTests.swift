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
        let r = try ChannelPruning.run(checkpoint: best, criterion: .fpgm, ratio: 0.5, plan: nil, out: out, evalSplit: "val")
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
        let qat = try Recipe.load(path: r.recipe, overrides: ["train.epochs=1", "quant.mode=qat", "quant.init_from=\(root)/ft/checkpoints/best.h5"])
        guard case .finished(let fq) = try TrainingRun(recipe: qat, runDir: root + "/qat", resume: false, quiet: true).run() else { return XCTFail() }
        let eq = try CheckpointEvaluation.run(checkpoint: root + "/qat/checkpoints/best.h5", data: nil, split: "test", overrides: [], fp32: false)
        XCTAssertTrue(eq.quantized)
        XCTAssertEqual(eq.metrics, fq.final)
        // Pruning the pruned model again: its recipe lists the new counts of every group it shrank.
        let again = try ChannelPruning.run(checkpoint: root + "/ft/checkpoints/best.h5", criterion: nil, ratio: 0.25, plan: nil, out: root + "/again.h5")
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
        let r = try ChannelPruning.run(checkpoint: best, criterion: nil, ratio: nil, plan: plan, out: root + "/p.h5")
        XCTAssertEqual(r.criterion, "l2")
        XCTAssertEqual(r.groups.map(\.group), ["features.2.conv.0.0", "features.4.conv.2"])
        XCTAssertEqual(r.groups.map(\.after), [r.groups[0].before - r.groups[0].before / 2, r.groups[1].before - r.groups[1].before / 4])
        func fails(_ planText: String?, ratio: Double? = nil, criterion: PruneCriterion? = nil, out: String? = nil, _ expected: [String],
                   line: UInt = #line) throws {
            let p = try planText.map(write)
            XCTAssertThrowsError(try ChannelPruning.run(checkpoint: best, criterion: criterion, ratio: ratio, plan: p,
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
        try fails(nil, ratio: nil, ["exactly one of --ratio"])
        // --macs: the uniform ratio that keeps at most that share of the MACs (and not much less).
        let half = try ChannelPruning.run(checkpoint: best, criterion: .l1, ratio: nil, plan: nil, macs: 0.5, out: root + "/half.h5")
        let kept = Double(half.macsAfter) / Double(half.macsBefore)
        XCTAssertLessThanOrEqual(kept, 0.5)
        XCTAssertGreaterThan(kept, 0.4)
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
}
