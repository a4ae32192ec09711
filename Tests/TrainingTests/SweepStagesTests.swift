import XCTest
import Foundation
@testable import Training

/// Dependency stages of a sweep and the Slurm submission built on them (scripts/slurm/test.sh runs
/// the submission against a real single-node Slurm).
final class SweepStagesTests: XCTestCase {
    func sweep(_ root: String) throws -> Sweep {
        try Sweep.load(try writeSweep(root, """
        name: staged
        base: base.yaml
        out: \(root)/out
        seeds: [0, 1]
        variants:
          - {name: fp32}
          - {name: other}
          - {name: qat, set: {quant.mode: qat, quant.init_from: "{out}/fp32/seed{seed}/checkpoints/best.h5"}}
          - {name: tuned, set: {quant.mode: qat, quant.init_from: "{out}/qat/seed{seed}/checkpoints/best.h5"}}
        """))
    }

    func testStagesFollowInitFrom() throws {
        let root = tempDir("stages")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let s = try sweep(root)
        let labels = s.cells().map(\.label)
        let stage = Dictionary(uniqueKeysWithValues: zip(labels, try s.stages()))
        XCTAssertEqual(stage["fp32/seed0"], 0); XCTAssertEqual(stage["other/seed1"], 0)
        XCTAssertEqual(stage["qat/seed0"], 1); XCTAssertEqual(stage["qat/seed1"], 1)
        XCTAssertEqual(stage["tuned/seed0"], 2)
        XCTAssertEqual(try s.cells(stage: 0, shard: nil).count, 4)
        // Shards split a stage's own cells.
        XCTAssertEqual(try s.cells(stage: 0, shard: (1, 3)).map(\.label), [labels[0], labels[3]])
        XCTAssertEqual(try s.cells(stage: 2, shard: (2, 2)).map(\.label), ["tuned/seed1"])
    }

    /// A distillation teacher is a producer as an init_from checkpoint is: its student runs a stage later.
    func testDistillationTeacherIsADependency() throws {
        let root = tempDir("stages-teacher")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let s = try Sweep.load(try writeSweep(root, """
        name: teacher
        base: base.yaml
        out: \(root)/out
        seeds: [0]
        variants:
          - {name: fp32}
          - {name: student, set: {train.distill.teacher: "{out}/fp32/seed{seed}/checkpoints/best.h5"}}
        """))
        XCTAssertEqual(try s.stages(), [0, 1])
    }

    func testSlurmScriptChainsOneArrayPerStageThenCollect() throws {
        let root = tempDir("slurmemit")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let s = try sweep(root)
        var o = SlurmEmitter.Options()
        o.partition = "cpu"; o.time = "1:00:00"; o.cpus = 2; o.tasks = 3
        let text = try SlurmEmitter.script(sweep: s, sweepPath: "sw.yaml", qat: "/opt/qat", workdir: root, options: o)
        let submits = text.split(separator: "\n").filter { $0.hasPrefix("jid=$(sbatch") }
        XCTAssertEqual(submits.count, 4)   // stages 0, 1, 2 and the collect job
        XCTAssertTrue(submits[0].contains("--array=1-3") && submits[0].contains("--stage 0 --shard \\${SLURM_ARRAY_TASK_ID}/3"), String(submits[0]))
        XCTAssertTrue(submits[1].contains("--array=1-2") && submits[1].contains("--stage 1"), String(submits[1]))
        XCTAssertTrue(submits[2].contains("--array=1-2") && submits[2].contains("--stage 2"), String(submits[2]))
        XCTAssertTrue(submits[3].contains("--collect"))
        for line in submits { XCTAssertTrue(line.contains("--partition='cpu'") && line.contains("\"${dep[@]}\""), String(line)) }
        XCTAssertTrue(submits[0].contains("--cpus-per-task=2") && submits[0].contains("--time='1:00:00'") && submits[0].contains("QAT_NUM_THREADS=2"), String(submits[0]))
        XCTAssertEqual(text.components(separatedBy: "dep=(--dependency=afterany:${jid%%;*})").count - 1, 3)
        XCTAssertTrue(text.contains("cd '\(root)'") && text.contains("QAT='/opt/qat'"), text)
        o.tasks = 0
        XCTAssertThrowsError(try SlurmEmitter.script(sweep: s, sweepPath: "sw.yaml", qat: "q", workdir: root, options: o))
    }

    /// A stage-run cell whose producer (an earlier stage) did not finish fails at once instead of waiting.
    func testAStageCellWithAnUnfinishedProducerFailsAtOnce() throws {
        let root = tempDir("stagefail")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var s = try sweep(root)
        s.stage = 1
        let start = Date()
        var lines: [String] = []
        let r = try s.run(shard: (1, 2)) { lines.append($0) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
        XCTAssertEqual(r.ran, 0); XCTAssertEqual(r.failed, ["qat/seed0"])
        XCTAssertTrue(lines.contains { $0.contains("ended without finishing") }, "\(lines)")
    }
}
