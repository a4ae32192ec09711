import XCTest
import Foundation
import NN
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
}
