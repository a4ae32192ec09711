import XCTest
import Foundation

/// `mpirun -np N qat train`: data-parallel training over Open MPI, run for real (scripts/setup.sh installs
/// openmpi-bin; these tests fail, not skip, without it).
final class DataParallelCLITests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = NSTemporaryDirectory() + "qat-cli-mpi-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var qat: String {
        let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        return exe.deletingLastPathComponent().appendingPathComponent("qat").path
    }

    func mpirun() throws -> String {
        for d in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(d)/mpirun") {
            return "\(d)/mpirun"
        }
        // A failure, not a skip: the MPI tests must run wherever the suite runs.
        throw NSError(domain: "DataParallelCLITests", code: 1,
                      userInfo: [NSLocalizedDescriptionKey: "mpirun not found: scripts/setup.sh installs Open MPI (openmpi-bin)"])
    }

    /// Runs a command with a deadline: a job that hangs fails the test instead of the suite.
    @discardableResult
    func launch(_ exe: String, _ args: [String], timeout: Double = 240, interruptAfter: (() -> Bool)? = nil) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        // Root in CI containers; more ranks than cores on a small machine.
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        p.environment = env
        let outFile = dir + "/out-\(UUID().uuidString)", errFile = outFile + ".err"
        FileManager.default.createFile(atPath: outFile, contents: nil); FileManager.default.createFile(atPath: errFile, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: outFile)
        p.standardError = FileHandle(forWritingAtPath: errFile)
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        var interrupted = false
        while p.isRunning {
            if Date() > deadline {
                kill(-p.processIdentifier, SIGKILL); p.terminate()
                XCTFail("\(args.joined(separator: " ")) did not finish within \(Int(timeout)) s (a hang)")
                break
            }
            if !interrupted, let c = interruptAfter, c() { p.interrupt(); interrupted = true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        p.waitUntilExit()
        let o = (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? "", e = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
        return (p.terminationStatus, o, e)
    }

    func recipe(_ name: String = "tiny.yaml", batch: Int = 8, syncBN: Bool = true, cache: String? = nil) throws -> String {
        let p = dir + "/" + name
        try """
        name: tiny
        model: {backbone: mobilenet_v2, width: 0.25, dropout: 0, small_input: true}
        data:
          cache: \(cache ?? NSTemporaryDirectory() + "qat-training-tests-cache")
          synth: {images: 40, size: 96, chip_size: 16, imbalance: 2}
          input_size: 16
        train: {steps: 5, batch: \(batch), log_every: 1, optimizer: {lr: 0.01}, distributed: {sync_bn: \(syncBN)}}
        eval: {batch: 32, final_split: none}
        """.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// The float tensors of a run's last.h5, by PyTorch name (through `qat export --format safetensors`).
    func weights(_ run: String) throws -> [String: [Float]] {
        let out = dir + "/w-\(UUID().uuidString).safetensors"
        let (c, _, e) = try runQAT(["export", run + "/checkpoints/last.h5", "--format", "safetensors", "--out", out])
        XCTAssertEqual(c, 0, e)
        let d = try Data(contentsOf: URL(fileURLWithPath: out))
        let n = Int(d.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: d.subdata(in: 8..<(8 + n))) as! [String: Any]
        var w: [String: [Float]] = [:]
        for (k, v) in header where k != "__metadata__" {
            let o = (v as! [String: Any])["data_offsets"] as! [Int]
            w[k] = d.subdata(in: (8 + n + o[0])..<(8 + n + o[1])).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        return w
    }

    func norm(_ v: [Float]) -> Double { v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }
    func diff(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot() }

    func train(_ args: [String], ranks: Int? = nil, run: String) throws -> (Int32, String, String) {
        if let ranks { return try launch(try mpirun(), ["-np", "\(ranks)", qat, "train"] + args + ["--run-dir", run]) }
        return try launch(qat, ["train"] + args + ["--run-dir", run])
    }

    /// One rank takes exactly the steps of one process (the whole data-parallel path, with nothing to
    /// average, changes no bit); two ranks take the same first step as one process up to the order of
    /// floating-point sums. Only rank 0 writes.
    func testRanksTakeTheStepsOfOneProcess() throws {
        let r = try recipe()
        let (c1, _, e1) = try train([r], run: dir + "/one")
        XCTAssertEqual(c1, 0, e1)
        let (c2, o2, e2) = try train([r], ranks: 1, run: dir + "/np1")
        XCTAssertEqual(c2, 0, e2)
        XCTAssertTrue(o2.contains("data-parallel: 1 ranks"), o2)
        let one = try weights(dir + "/one"), np1 = try weights(dir + "/np1")
        XCTAssertEqual(one.count, np1.count)
        for (k, v) in one { XCTAssertEqual(v, np1[k], "\(k) after 5 steps: 1 rank differs from 1 process") }

        // The first step: parameter updates of 2 ranks (4 samples each) against 1 process (8 samples).
        let (c0, _, e0) = try train([r, "--set", "train.steps=0"], run: dir + "/zero")
        XCTAssertEqual(c0, 0, e0)
        let (c3, _, e3) = try train([r, "--set", "train.steps=1"], run: dir + "/one1")
        XCTAssertEqual(c3, 0, e3)
        let (c4, o4, e4) = try train([r, "--set", "train.steps=1"], ranks: 2, run: dir + "/two1")
        XCTAssertEqual(c4, 0, e4)
        XCTAssertTrue(o4.contains("data-parallel: 2 ranks, 4 samples each per global batch of 8") && o4.contains("BatchNorm synchronised"), o4)
        let w0 = try weights(dir + "/zero"), a = try weights(dir + "/one1"), b = try weights(dir + "/two1")
        // Over all parameters: |update(2 ranks) - update(1 process)| / |update(1 process)|. Per tensor it is
        // not meaningful for every one: a BatchNorm bias followed by a conv and another BatchNorm has a
        // gradient of ~0 in exact arithmetic (the next BatchNorm removes a constant shift), so its computed
        // value is cancellation noise that no two summation orders share.
        var d2 = 0.0, u2 = 0.0, convWorst = 0.0, convName = ""
        for (k, w) in w0 where !k.contains("running") && !k.contains("num_batches") {
            let ua = zip(a[k]!, w).map { $0 - $1 }, ub = zip(b[k]!, w).map { $0 - $1 }
            let d = diff(ua, ub), u = norm(ua)
            d2 += d * d; u2 += u * u
            if w.count >= 64 && k.hasSuffix(".weight") && d / u > convWorst { convWorst = d / u; convName = k }
        }
        let global = (d2 / u2).squareRoot()
        XCTAssertLessThan(global, 1e-5, "first-step update: 2 ranks differ from 1 process by \(global) relative")
        XCTAssertLessThan(convWorst, 1e-4, "first-step update of \(convName): 2 ranks differ from 1 process by \(convWorst) relative")
        print("first step, 2 ranks vs 1 process: update difference \(global) relative over all parameters; worst conv/linear weight \(convName) \(convWorst)")
        // Rank 0 alone wrote the run directory: one log, one metrics file with one line per step.
        let metrics = try String(contentsOfFile: dir + "/two1/metrics.jsonl", encoding: .utf8)
        XCTAssertEqual(metrics.components(separatedBy: "\"type\":\"train\"").count, 2, metrics)
    }

    /// Launches that cannot work fail on every rank with a message naming the rank and the fix, and
    /// never hang; nothing is written.
    func testBadLaunchesEndEveryRankWithAMessage() throws {
        let r9 = try recipe("b9.yaml", batch: 9)
        let (c1, _, e1) = try train([r9], ranks: 2, run: dir + "/b9")
        XCTAssertNotEqual(c1, 0)
        XCTAssertTrue((e1.contains("rank 0 of 2") || e1.contains("rank 1 of 2")) && e1.contains("train.batch 9 does not split evenly over 2 ranks") && e1.contains("set train.batch to 8 or 10"), e1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/b9"))

        let r2 = try recipe("b2.yaml", batch: 2)
        let (c2, _, e2) = try train([r2], ranks: 3, run: dir + "/b2")
        XCTAssertNotEqual(c2, 0)
        XCTAssertTrue(e2.contains("mpirun started 3 ranks but the global batch is 2 samples"), e2)

        // Different recipes on the two ranks (Open MPI's MPMD syntax: one app context per rank).
        let a = try recipe("a.yaml"), b = try recipe("b.yaml", syncBN: false)
        let (c3, _, e3) = try launch(try mpirun(), ["-np", "1", qat, "train", a, "--run-dir", dir + "/ab", ":", "-np", "1", qat, "train", b, "--run-dir", dir + "/ab"])
        XCTAssertNotEqual(c3, 0)
        XCTAssertTrue(e3.contains("rank 1 resolved a different recipe than rank 0"), e3)

        // A failure on one rank only (its data cache cannot be created) ends the job, naming that rank,
        // while rank 0 waits for it.
        let blocked = dir + "/blocked"
        FileManager.default.createFile(atPath: blocked, contents: Data("a file, not a folder".utf8))
        let ok = try recipe("ok.yaml", cache: "cache"), bad = dir + "/rank1"
        try FileManager.default.createDirectory(atPath: bad, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: bad + "/cache", withDestinationPath: blocked)
        let (c4, _, e4) = try launch(try mpirun(), ["-np", "1", "-wdir", dir, qat, "train", ok, "--run-dir", dir + "/r",
                                                    ":", "-np", "1", "-wdir", bad, qat, "train", ok, "--run-dir", dir + "/r"])
        XCTAssertNotEqual(c4, 0)
        XCTAssertTrue(e4.contains("rank 1 of 2") && e4.contains("data.cache"), e4)
    }

    /// Ctrl-C to mpirun stops every rank at the same step with one checkpoint; resuming under mpirun
    /// continues to the same bits as an uninterrupted job.
    func testInterruptAndResumeAcrossRanks() throws {
        let r = try recipe()
        let run = dir + "/run"
        let (c1, o1, _) = try launch(try mpirun(), ["-np", "2", qat, "train", r, "--set", "train.steps=40", "--run-dir", run]) {
            ((try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)) ?? "").contains("\"train\"")
        }
        XCTAssertNotEqual(c1, 0)
        XCTAssertTrue(o1.contains("Resume with:") && o1.contains("mpirun -np 2 qat train"), o1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/checkpoints/last.h5"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/final.json"))
        let (c2, o2, e2) = try train([r, "--set", "train.steps=40", "--resume"], ranks: 2, run: run)
        XCTAssertEqual(c2, 0, e2)
        XCTAssertTrue(o2.contains("done:"), o2)
        let (c3, _, e3) = try train([r, "--set", "train.steps=40"], ranks: 2, run: dir + "/straight")
        XCTAssertEqual(c3, 0, e3)
        let a = try weights(run), b = try weights(dir + "/straight")
        for (k, v) in a { XCTAssertEqual(v, b[k], "\(k): the resumed job differs from the uninterrupted one") }
    }

    /// `mpirun -np 2 qat sweep`: every cell is a two-rank run (the same bits as `mpirun -np 2 qat train` of
    /// the cell's resolved recipe), a cell starting from another cell's checkpoint included; a rerun skips
    /// the done cells and ends every rank; a failing cell is recorded and ends the job naming rank 0.
    func testSweepCellsRunAcrossRanks() throws {
        let base = try recipe()
        let sweep = dir + "/sweep.yaml", out = dir + "/sw"
        // Cell b starts from cell a's checkpoint; `extra` appends variants.
        func write(_ extra: String = "") throws {
            try """
            name: mpi-sweep
            base: \(base)
            out: \(out)
            seeds: [0]
            variants:
              - name: a
              - name: b
                set: {model.init_from: "{out}/a/seed{seed}/checkpoints/last.h5", train.optimizer.lr: 0.02}
            \(extra)
            """.write(toFile: sweep, atomically: true, encoding: .utf8)
        }
        try write()
        let mpi = try mpirun()
        let (c1, o1, e1) = try launch(mpi, ["-np", "2", qat, "sweep", sweep])
        XCTAssertEqual(c1, 0, o1 + e1)
        XCTAssertEqual(o1.components(separatedBy: "sweep mpi-sweep: 2 cells").count, 2, "one process prints: \(o1)")
        for cell in ["a", "b"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(out)/\(cell)/seed0/final.json"), o1 + e1)
            let (c, _, e) = try train(["\(out)/\(cell)/seed0/recipe.resolved.yaml"], ranks: 2, run: dir + "/ref-\(cell)")
            XCTAssertEqual(c, 0, e)
            let a = try weights("\(out)/\(cell)/seed0"), b = try weights(dir + "/ref-\(cell)")
            XCTAssertEqual(a.count, b.count)
            for (k, v) in a { XCTAssertEqual(v, b[k], "cell \(cell) \(k): the sweep cell differs from mpirun -np 2 qat train of its recipe") }
        }
        let (c2, o2, e2) = try launch(mpi, ["-np", "2", qat, "sweep", sweep], timeout: 120)
        XCTAssertEqual(c2, 0, e2)
        XCTAssertTrue(o2.contains("ran 0, skipped 2"), o2)

        try write("""
          - name: c
            set: {model.init_from: "\(dir!)/missing.h5"}
        """)
        let (c3, o3, e3) = try launch(mpi, ["-np", "2", qat, "sweep", sweep], timeout: 120)
        XCTAssertNotEqual(c3, 0, o3)
        XCTAssertTrue(e3.contains("rank 0 of 2") && e3.contains("sweep cell c/seed0") && e3.contains("missing.h5"), e3)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(out)/c/seed0/failed.json"))
    }
}
