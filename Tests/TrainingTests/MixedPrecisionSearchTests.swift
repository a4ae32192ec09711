import XCTest
import Foundation
import NN
import Autodiff
import Quant
import Recipes
@testable import Training

final class MixedPrecisionSearchTests: XCTestCase {
    /// On a tiny trained classifier: one row per conv/linear layer, the average within the budget, and
    /// the written plan works as a recipe's base: its overrides reach the quantized model's layers.
    /// The plan file replaces an earlier plan but never a recipe.
    func testPlanWithinBudgetAndUsableAsRecipeBase() throws {
        let root = tempDir("mixed")
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try TrainingRun(recipe: try tinyRecipe(overrides: ["train.optimizer.lr=0.01"]), runDir: root + "/run", resume: false, quiet: true).run()
        let ck = root + "/run/checkpoints/best.h5"
        let r = try MixedPrecisionSearch.run(checkpoint: ck, averageBits: 4, choices: [2, 4, 8], samples: 2, batches: 1)
        XCTAssertEqual(r.layers.count, r.bits.count)
        XCTAssertLessThanOrEqual(r.achievedBits, 4 + 1e-9)
        XCTAssertTrue(r.layers.allSatisfy { $0.trace.isFinite && $0.errors.count == 3 })
        XCTAssertTrue(Set(r.bits).isSubset(of: [2, 4, 8]))
        let plan = root + "/plan.yaml"
        try MixedPrecisionSearch.write(r, plan: plan, json: root + "/plan.json")
        try MixedPrecisionSearch.write(r, plan: plan, json: nil)   // an earlier plan may be replaced
        let recipeFile = root + "/mp.yaml"
        try "base: plan.yaml\nseed: 3\n".write(toFile: recipeFile, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MixedPrecisionSearch.write(r, plan: recipeFile, json: nil)) { XCTAssertTrue("\($0)".contains("--out"), "\($0)") }
        XCTAssertTrue(try String(contentsOfFile: plan, encoding: .utf8).hasPrefix("# Mixed-precision weight bits"))
        // The plan as the base of a recipe.
        let recipe = try Recipe.load(path: recipeFile)
        XCTAssertEqual(recipe.seed, 3)
        XCTAssertEqual(recipe.quant.overrides.count, r.layers.count)
        let task = try makeTask(try tinyRecipe())
        let (model, _) = try buildModel(task, quantized: false, ptqStructure: false)
        var qp = QuantPlan.bits(weight: 4, activation: 8)
        qp.overrides = recipe.quant.overrides.map { QuantPlan.Override($0.pattern, weightBits: $0.weightBits) }
        let h = try quantize(model, plan: qp)
        for (l, b) in zip(r.layers, r.bits) {
            XCTAssertEqual(h.quantizers.first { $0.0 == l.path + ".weightQuantizer" }?.1.scheme.bits, b, l.path)
        }
    }

    /// Input bits searched too (`--activation-choices`, `--average-bitops`): every layer gets an input row
    /// with a finite, non-negative Fisher trace, both budgets hold, the plan's overrides carry input bits
    /// that reach the quantized model's input quantizers. The input trace is the Fisher's: B ||dL/dx||^2 of
    /// a batch equals the mean over its samples of ||dl_i/dx_i||^2, each computed alone (eval mode keeps
    /// samples independent), and the report's first row holds it.
    func testInputBitsUnderABitOpsBudget() throws {
        let root = tempDir("mixed-inputs")
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try TrainingRun(recipe: try tinyRecipe(overrides: ["train.optimizer.lr=0.01"]), runDir: root + "/run", resume: false, quiet: true).run()
        let ck = root + "/run/checkpoints/best.h5"
        XCTAssertThrowsError(try MixedPrecisionSearch.run(checkpoint: ck, averageBits: 4, choices: [2, 4, 8], samples: 1, batches: 1,
                                                          activationChoices: [2, 4, 8])) { XCTAssertTrue("\($0)".contains("--average-bitops"), "\($0)") }
        let r = try MixedPrecisionSearch.run(checkpoint: ck, averageBits: 4, choices: [2, 4, 8], samples: 2, batches: 1,
                                             activationChoices: [2, 4, 8], averageBitOps: 16)
        let inputs = try XCTUnwrap(r.activations), inputBits = try XCTUnwrap(r.activationBits), macs = try XCTUnwrap(r.macs)
        XCTAssertEqual(inputs.count, r.layers.count); XCTAssertEqual(inputBits.count, r.layers.count)
        XCTAssertTrue(inputs.allSatisfy { $0.trace.isFinite && $0.trace >= 0 && $0.weights > 0 && $0.errors.count == 3 })
        XCTAssertTrue(macs.allSatisfy { $0 > 0 })
        XCTAssertTrue(Set(inputBits).isSubset(of: [2, 4, 8]))
        XCTAssertLessThanOrEqual(r.achievedBits, 4 + 1e-9)
        XCTAssertLessThanOrEqual(try XCTUnwrap(r.achievedBitOps), 16 + 1e-9)
        let ops = Double(zip(zip(macs, r.bits), inputBits).map { $0.0 * $0.1 * $1 }.reduce(0, +)) / Double(macs.reduce(0, +))
        XCTAssertEqual(ops, r.achievedBitOps!, accuracy: 1e-9)
        let plan = root + "/plan.yaml"
        try MixedPrecisionSearch.write(r, plan: plan, json: nil)
        let text = try String(contentsOfFile: plan, encoding: .utf8)
        XCTAssertTrue(text.contains("--average-bitops 16"), text)
        let recipeFile = root + "/mp.yaml"
        try "base: plan.yaml\n".write(toFile: recipeFile, atomically: true, encoding: .utf8)
        let recipe = try Recipe.load(path: recipeFile)
        let (model, _) = try buildModel(try makeTask(try tinyRecipe()), quantized: false, ptqStructure: false)
        var qp = QuantPlan.bits(weight: 4, activation: 8)
        qp.overrides = recipe.quant.overrides.map { QuantPlan.Override($0.pattern, weightBits: $0.weightBits, inputBits: $0.inputBits) }
        let h = try quantize(model, plan: qp)
        for (l, b) in zip(r.layers, inputBits) {
            XCTAssertEqual(h.quantizers.first { $0.0 == l.path + ".inputQuantizer" }?.1.scheme.bits, b, l.path)
        }
        // The Fisher trace of the first layer's input, batch against samples alone.
        let (rec, task, float) = try floatModel(checkpoint: ck, overrides: ["quant.mode=fp32"])
        let layer = try XCTUnwrap(float.namedModules().lazy.compactMap { $0.1 as? QuantizableLayer }.first)
        let probe = try ActivationProbe(bits: [8], rangeMethod: .minMax, path: "probe")
        layer.inputQuantizer = probe
        func squaredGradient(_ indices: [Int], slot: Int) throws -> Double {
            probe.phase = .measure; probe.batch = slot
            _ = try noGrad { try task.losses(model: float, epoch: 0, indices: indices) }
            probe.phase = .probe
            Loss.total(try task.losses(model: float, epoch: 0, indices: indices)).backward()
            let g = try XCTUnwrap(probe.deltas[slot]?.grad)
            return Double(noGrad { (g * g).sum() }.item)
        }
        let batch = Array(task.trainOrder(epoch: 0).prefix(rec.train.batch))
        let whole = Double(batch.count) * (try squaredGradient(batch, slot: 0))
        var alone = 0.0
        for (k, i) in batch.enumerated() { alone += try squaredGradient([i], slot: k + 1) }
        alone /= Double(batch.count)
        XCTAssertGreaterThan(whole, 0)
        XCTAssertEqual(whole, alone, accuracy: 1e-3 * alone)
        XCTAssertEqual(inputs[0].trace, whole, accuracy: 1e-4 * whole)
    }
}
