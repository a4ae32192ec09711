import XCTest
import Foundation
import Kernels
import NN
import Quant
import Checkpoint
@testable import Training

final class SensitivityTests: XCTestCase {
    /// Weight-only W4 sensitivity of a tiny trained classifier: one row per conv/linear layer; the FP32
    /// metric is `qat eval`'s; a layer's "alone" metric equals an independent PTQ model with only that
    /// layer's weights quantized (weight ranges do not depend on the calibration data, so exactly).
    func testRowsMatchIndependentSingleLayerPTQ() throws {
        let root = tempDir("sensitivity")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe()
        _ = try TrainingRun(recipe: r, runDir: root + "/run", resume: false, quiet: true).run()
        let ck = root + "/run/checkpoints/best.h5"
        let rep = try QuantSensitivity.run(checkpoint: ck, split: "val", weightBits: 4, activationBits: 4, weightsOnly: true)
        let task = try makeTask(r)
        let (probe, _) = try buildModel(task, quantized: false, ptqStructure: false)
        let layers = probe.namedModules().filter { $0.1 is QuantizableLayer }.map(\.0)
        XCTAssertEqual(Set(rep.rows.map(\.layer)), Set(layers))
        XCTAssertTrue(rep.rows.allSatisfy { $0.quantizers == ["weightQuantizer"] })
        XCTAssertEqual(rep.quantized, "weights")
        let eval = try CheckpointEvaluation.run(checkpoint: ck, data: nil, split: "val", overrides: [], fp32: false)
        XCTAssertEqual(rep.fp32, eval.metrics["accuracy"])
        for row in rep.rows { XCTAssertEqual(row.drop, rep.fp32 - row.alone, accuracy: 1e-12); XCTAssertEqual(row.gain, row.allBut - rep.all, accuracy: 1e-12) }
        XCTAssertEqual(rep.rows.map(\.drop), rep.rows.map(\.drop).sorted(by: >))

        for target in [layers.first!, layers.last!] {
            let (model, _) = try buildModel(task, quantized: false, ptqStructure: false)
            _ = try TrainingRun.loadCheckpoint(ck).apply(to: model, strict: false, file: ck)
            var plan = try quantPlan(try tinyRecipe(overrides: ["quant.mode=ptq", "quant.weight.bits=4", "quant.activation.bits=4"]))
            plan.quantizeInputs = false; plan.quantizeResidualAdds = false
            plan.overrides = layers.filter { $0 != target }.map { QuantPlan.Override($0, skip: true) }
            model.eval()
            let h = try quantize(model, plan: plan)
            XCTAssertEqual(h.quantizers.map(\.0), [target + ".weightQuantizer"])
            h.calibrate(model, batches: try task.calibrationInputs(batches: r.quant.calibrationBatches)) { model($0) }
            let alone = try task.evaluate(model: model, split: "val")["accuracy"]!
            XCTAssertEqual(rep.rows.first { $0.layer == target }?.alone, alone, target)
        }
        // The table and the JSON.
        XCTAssertTrue(QuantSensitivity.table(rep).contains(rep.rows[0].layer))
        try QuantSensitivity.write(rep, to: root + "/s.json")
        let back = try JSONDecoder().decode(QuantSensitivity.Report.self, from: Data(contentsOf: URL(fileURLWithPath: root + "/s.json")))
        XCTAssertEqual(back.rows, rep.rows)
        XCTAssertThrowsError(try QuantSensitivity.write(rep, to: ck)) { XCTAssertTrue("\($0)".contains("--out"), "\($0)") }
    }
}
