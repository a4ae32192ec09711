import XCTest
import Foundation
import Kernels
import Autodiff
import NN
import Optim
@testable import Checkpoint

/// A tiny but complete training loop: data from the run's RNG, dropout, BatchNorm, clipping, a
/// warmup+cosine schedule and an optimizer with state. Everything a resume must restore.
struct TinyRun {
    let model: Sequential
    let opt: Optimizer
    var rng: RNG
    var step = 0
    static let schedule = LRSchedule(.cosine(totalSteps: 8, minFactor: 0.1), warmupSteps: 2)

    init(adam: Bool) throws {
        model = try smallModel(seed: 42)
        opt = adam ? Adam.adamW(model.namedParameters(), lr: 0.01, rules: [.noDecayOnNormsAndBiases])
                   : SGD(model.namedParameters(), lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-4, rules: [.noDecayOnNormsAndBiases])
        rng = RNG(seed: 7)
    }

    mutating func train(_ n: Int) {
        for _ in 0..<n {
            opt.lrFactor = TinyRun.schedule.factor(at: step)
            let x = Tensor.randn([4, 3, 12, 12], rng: &rng)
            let target = Tensor.randn([4, 4, 6, 6], rng: &rng)
            opt.zeroGrad()
            let loss = (model(x) - target).square().mean()
            loss.backward()
            clipGradNorm(model.parameters(), maxNorm: 1)
            opt.step()
            step += 1
        }
    }

    func checkpoint() -> Checkpoint {
        var c = Checkpoint.capture(model: model, optimizer: opt)
        c.rng = rng; c.step = Int64(step); c.seed = 7
        return c
    }

    static func restore(_ c: Checkpoint, adam: Bool) throws -> TinyRun {
        var r = try TinyRun(adam: adam)
        try c.apply(to: r.model)
        try c.apply(to: r.opt)
        r.rng = c.rng; r.step = Int(c.step)
        return r
    }
}

final class ResumeTests: XCTestCase {
    var testBinary: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// N steps in one go equal k steps, a checkpoint, and N - k steps in a fresh process, bit for bit.
    func testResumeInFreshProcessIsBitIdentical() throws {
        for adam in [false, true] {
            let dir = tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
            var full = try TinyRun(adam: adam)
            full.train(6)
            var part = try TinyRun(adam: adam)
            part.train(3)
            try part.checkpoint().save(to: dir + "/k.h5")

            let p = Process()
            p.executableURL = URL(fileURLWithPath: testBinary)
            p.arguments = ["CheckpointTests.ResumeTests/testContinueFromCheckpointWhenAsked"]
            var env = ProcessInfo.processInfo.environment
            env["QAT_RESUME_IN"] = dir + "/k.h5"; env["QAT_RESUME_OUT"] = dir + "/n.h5"
            env["QAT_RESUME_STEPS"] = "3"; env["QAT_RESUME_ADAM"] = adam ? "1" : "0"
            p.environment = env
            p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
            try p.run(); p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "resume worker failed")

            let resumed = try Checkpoint.load(from: dir + "/n.h5")
            let expected = full.checkpoint()
            XCTAssertEqual(resumed.step, 6)
            XCTAssertEqual(resumed.params, expected.params, "parameters differ (adam: \(adam))")
            XCTAssertEqual(resumed.buffers, expected.buffers, "buffers differ (adam: \(adam))")
            XCTAssertEqual(resumed.optimizer, expected.optimizer, "optimizer state differs (adam: \(adam))")
            XCTAssertEqual(resumed.moduleRNG, expected.moduleRNG)
            XCTAssertEqual(resumed.rng, expected.rng)
        }
    }

    /// Worker for the test above when run with QAT_RESUME_* set; on its own it checks an in-process resume.
    func testContinueFromCheckpointWhenAsked() throws {
        let env = ProcessInfo.processInfo.environment
        if let input = env["QAT_RESUME_IN"], let output = env["QAT_RESUME_OUT"], let steps = Int(env["QAT_RESUME_STEPS"] ?? "") {
            var r = try TinyRun.restore(try Checkpoint.load(from: input), adam: env["QAT_RESUME_ADAM"] == "1")
            r.train(steps)
            try r.checkpoint().save(to: output)
            XCTAssertEqual(r.step, 6)
            return
        }
        var full = try TinyRun(adam: false); full.train(4)
        var part = try TinyRun(adam: false); part.train(2)
        var resumed = try TinyRun.restore(part.checkpoint(), adam: false)
        resumed.train(2)
        XCTAssertEqual(resumed.checkpoint(), full.checkpoint())
    }
}
