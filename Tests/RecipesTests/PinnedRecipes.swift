import XCTest
@testable import Recipes

/// The resolved YAML of the committed recipes (and of one recipe that sets every key away from its
/// default), pinned as fixtures: run directories compare it on `--resume` and checkpoints store it, so
/// any change to its text breaks resuming existing runs.
enum PinnedRecipes {
    static let files = ["recipes/quickstart.yaml", "recipes/chips/fp32.yaml", "recipes/chips/ptq-w4a4.yaml", "recipes/chips/qat-w4a4.yaml",
                        "recipes/chips/qat-w4a4-8bit-ends.yaml", "recipes/chips/qat-w4a4-qdrop.yaml", "recipes/chips/qat-w8a8.yaml",
                        "recipes/chips/fp32-finetune.yaml", "recipes/chips/qat-w2a2-8bit-ends.yaml", "recipes/chips/ptq-w4a8.yaml",
                        "recipes/chips/ptq-w4a8-adaround.yaml", "recipes/chips/qat-w4a4-mixed.yaml",
                        "recipes/chips/qat-w3avg-a8-mixed.yaml", "recipes/chips/qat-w2a2-8bit-ends-dw8.yaml"]
    static func fixtureName(_ rel: String) -> String { rel.dropFirst("recipes/".count).replacingOccurrences(of: "/", with: "-") }

    static let everyKeySet = """
    name: "007"
    seed: 7
    threads: 2
    model: {backbone: resnet18, width: 0.75, head: linear, dropout: 0.3}
    data:
      format: hdf5_chips
      path: "data/yes"
      cache: /tmp/cache
      synth: {images: 50, size: 96, seed: 3, imbalance: 2.5, label_noise: 0.1, noise_mode: similar, chip_size: 24}
      input_size: 48
      augment: {hflip: 0.1, vflip: 0.2, rot90: 0.3, color_jitter: 0.4}
    train:
      epochs: 3
      steps: 50
      batch: 16
      optimizer: {name: adamw, lr: 0.001, momentum: 0.8, nesterov: true, weight_decay: 0.01, betas: [0.8, 0.99], quant_lr_scale: 0.1}
      schedule: {name: step, warmup_steps: 5, min_lr_ratio: 0.01, milestones: [10, 20], gamma: 0.5}
      clip_grad_norm: 5
      ema: 0.999
      log_every: 7
      max_nonfinite: 3
      distill: {teacher: "runs/t/1/checkpoints/best.h5", weight: 0.3, temperature: 2}
    quant:
      mode: qat
      weight: {bits: 4, symmetric: true, per_channel: false, learnable: false, range: mse}
      activation: {bits: 6, symmetric: true, per_channel: true, learnable: false, range: lsq_plus, enabled: false}
      learn_zero_point: false
      grad_factor: lsq_mqbench
      ste: identity
      dropout: {p: 0.5, granularity: channel, schedule: linear, start: 0.1, end: 0.9, steps: 100, apply: weights}
      fold_bn: true
      freeze_bn_after: 100
      calibration_batches: 3
      calibration_statistics: running
      residual_adds: false
      equalize: true
      bias_correction: true
      overrides: [{pattern: "features.*", weight_bits: 4}, {pattern: "classifier.*", skip: true, input_bits: 8}]
      init_from: "runs/x/1/checkpoints/best.h5"
    eval: {split: test, every_epochs: 2, metric: macro_accuracy, batch: 64, final_split: none}
    """
}

final class PinnedResolvedYAMLTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/resolved")

    /// `QAT_RECORD_PINNED=1 swift test --filter PinnedResolvedYAMLTests` rewrites the fixtures from the
    /// current code (after an intended change of a committed recipe or a new key; review the diff).
    func fixture(_ name: String, current: String) throws -> String {
        let url = PinnedResolvedYAMLTests.fixtures.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["QAT_RECORD_PINNED"] == "1" { try current.write(to: url, atomically: true, encoding: .utf8) }
        return try String(contentsOf: url, encoding: .utf8)
    }

    func testCommittedRecipesResolveToThePinnedText() throws {
        for rel in PinnedRecipes.files {
            let r = try Recipe.load(path: PinnedResolvedYAMLTests.repo.appendingPathComponent(rel).path)
            XCTAssertEqual(r.resolvedYAML(), try fixture(PinnedRecipes.fixtureName(rel), current: r.resolvedYAML()), rel)
        }
    }

    func testEveryKeySetResolvesToThePinnedTextAndLoadsBack() throws {
        let r = try Recipe.parse(PinnedRecipes.everyKeySet)
        XCTAssertEqual(r.resolvedYAML(), try fixture("every-key-set.yaml", current: r.resolvedYAML()))
        XCTAssertEqual(try Recipe.parse(r.resolvedYAML()), r)
    }
}
