import Foundation
import UserPaths
import Kernels
import Autodiff
import NN
import Optim
import Quant
import Checkpoint
import Datasets
import Recipes
import Files
import DataParallel

/// SIGINT / SIGTERM set a flag that the training loop checks between steps: it then saves
/// `checkpoints/last.h5` and returns, so an interrupt never leaves a half-written checkpoint.
public enum StopSignal {
    nonisolated(unsafe) static var flag: Int32 = 0
    public static func install() {
        signal(SIGINT) { s in StopSignal.flag = s }
        signal(SIGTERM) { s in StopSignal.flag = s }
    }
    public static var requested: Int32 { flag }
    public static func reset() { flag = 0 }
}

/// How a training run ended.
public enum RunOutcome: Equatable {
    case finished(FinalReport)
    /// Stopped by a signal (or `stopAfterSteps`) after saving last.h5 at `step`.
    case interrupted(step: Int, signal: Int32)
    /// `--resume` of a run that had finished: nothing ran and nothing was written; its final.json.
    case alreadyFinished(FinalReport)
}

/// `final.json`: written when a run completes (sweeps treat its presence as "done").
public struct FinalReport: Codable, Equatable, Sendable {
    public var name: String
    public var steps: Int
    public var seconds: Double
    public var metric: String
    public var best: Double
    public var bestStep: Int
    public var nonFiniteSteps: Int
    /// Metrics of best.h5 on `eval.final_split` (nil with final_split none).
    public var final: TaskMetrics?
    public var classes: [String]
    enum CodingKeys: String, CodingKey {
        case name, steps, seconds, metric, best, final, classes
        case bestStep = "best_step", nonFiniteSteps = "nonfinite_steps"
    }
}

/// One training run in its directory: `recipe.resolved.yaml`, `metrics.jsonl`, `train.log`,
/// `checkpoints/last.h5` and `best.h5`, and `final.json` when complete.
public final class TrainingRun {
    public let recipe: Recipe
    public let dir: String
    /// The run directory, claimed and locked; nil on the ranks after the first of a data-parallel job,
    /// which write nothing.
    let directory: RunDirectory?
    /// The data-parallel job this run is one rank of (`mpirun`); nil for a single process.
    public let world: MPIWorld?
    /// DDP's gradient buckets (with `world`).
    let buckets: GradientBuckets?
    /// Rank 0 of a job, or a single process: the one that writes the run directory.
    public var writes: Bool { (world?.rank ?? 0) == 0 }
    var metrics: AppendFile?
    /// The recipe's task: data, loss terms, evaluation (`makeTask`).
    public let task: TrainingTask
    public private(set) var model: Module
    public private(set) var handle: QATHandle?
    let opt: Optimizer
    let schedule: LRSchedule
    var ema: ModelEMA?
    public let batchesPerEpoch: Int
    public let totalSteps: Int
    public private(set) var step = 0
    var best = -Double.infinity, bestStep = -1
    var nonFinite = 0, consecutiveNonFinite = 0
    /// best.h5's BatchNorm statistics were re-estimated (`quant.bn_reestimation_batches`).
    var bnReestimated = false
    var elapsed = 0.0, elapsedAtStart = 0.0
    /// For tests: behave as if interrupted after this many steps (of this process).
    public var stopAfterSteps: Int?
    /// Set when `--resume` found the run finished (its final.json): `run()` then does nothing.
    public private(set) var alreadyFinished: FinalReport?
    let console: Console

    /// Creates (or, with `resume`, reopens) the run directory and holds its lock until `run()` returns
    /// (`RunDirectory`). `runDir` nil: `runsRoot/<name>/<n>`. `task` nil: the recipe's task from
    /// `makeTask` (tests and tools may pass their own). `lock`: the directory's lock when the caller
    /// already holds it (a sweep cell).
    ///
    /// `world`: this process is one rank of a data-parallel job (`DataParallelRun`): rank 0 does all of
    /// the above and then sends its starting state (weights, optimizer, step) to the others, which claim
    /// no directory and write nothing.
    public init(recipe: Recipe, runDir: String?, resume: Bool, runsRoot: String = "runs", quiet: Bool = false, task: TrainingTask? = nil,
                lock: FileLock? = nil, world: MPIWorld? = nil) throws {
        self.world = world
        if let world { try DataParallelRun.check(recipe, world: world) }
        let leader = (world?.rank ?? 0) == 0
        let directory = leader ? try RunDirectory.claim(recipe: recipe, runDir: runDir, resume: resume, runsRoot: runsRoot, lock: lock) : nil
        self.directory = directory
        let dir = directory?.path ?? ""
        self.dir = dir
        self.console = Console(quiet: quiet || !leader)
        if let t = recipe.threads { Parallel.setThreads(t) } else if let world { DataParallelRun.shareCores(world) }
        self.recipe = recipe
        let console = self.console
        self.task = try task ?? makeTask(recipe) { console.line($0) }
        let task = self.task
        batchesPerEpoch = task.trainCount / recipe.train.batch
        guard batchesPerEpoch > 0 else {
            throw TrainingError("train.batch \(recipe.train.batch) is larger than the train split (\(task.trainCount) samples in \(task.dataRoot)); lower train.batch")
        }
        totalSteps = try TrainingRun.totalSteps(recipe, batchesPerEpoch: batchesPerEpoch)

        guard let directory else {
            // A follower rank: rank 0's starting state decides the model's structure and its values.
            let start = try DataParallelRun.receiveStart(world!)
            (model, handle) = try buildModel(task, quantized: start.quantized, ptqStructure: start.ptqStructure)
            (opt, schedule) = TrainingRun.makeOptimizer(recipe, model: model, totalSteps: totalSteps)
            if let decay = recipe.train.ema { ema = ModelEMA(model, decay: Float(decay)) }
            buckets = GradientBuckets(model.namedParameters(), world: world!, capBytes: Int(recipe.train.distributed.bucketMB * 1_048_576))
            if recipe.train.distributed.syncBN { SyncBatchNorm.convert(model, reducer: world) }
            alreadyFinished = start.finished
            if let c = start.checkpoint { try restoreState(c, file: "rank 0's starting state") }
            return
        }
        let resumeFrom: Checkpoint? = resume && directory.hasCheckpoint ? try TrainingRun.loadCheckpoint(dir + "/checkpoints/last.h5") : nil
        let quantizedNow = resumeFrom.map(TrainingRun.isQuantized) ?? (recipe.quant.mode == "qat")
        (model, handle) = try buildModel(task, quantized: quantizedNow, ptqStructure: resumeFrom.map(TrainingRun.isQuantized) ?? false)
        (opt, schedule) = TrainingRun.makeOptimizer(recipe, model: model, totalSteps: totalSteps)
        let named = model.namedParameters()
        buckets = world.map { GradientBuckets(named, world: $0, capBytes: Int(recipe.train.distributed.bucketMB * 1_048_576)) }
        if let decay = recipe.train.ema { ema = ModelEMA(model, decay: Float(decay)) }

        if let c = resumeFrom, let done = TrainingRun.finishedReport(dir), Int(c.step) >= totalSteps {
            // Finished: nothing to restore, and nothing (metrics.jsonl included) may change.
            alreadyFinished = done
            step = Int(c.step)
        } else if let c = resumeFrom {
            try restore(c)
            console.line("resumed \(dir) at step \(step) of \(totalSteps)")
        } else {
            if resume { console.line("--resume: \(dir) has no checkpoint (the run stopped before its first one); starting from step 0 with the stored recipe") }
            // model.init_from: matching float weights (e.g. a classifier's backbone); quant.init_from: the
            // float weights of the same model, before the quantizers calibrate.
            if let p = recipe.model.initFrom { try InitFrom.load(p, key: "model.init_from", into: model, task: task, complete: false, log: console.line) }
            if let p = recipe.quant.initFrom { try InitFrom.load(p, key: "quant.init_from", into: model, task: task, complete: true, log: console.line) }
            if let h = handle { try calibrate(h) }
            // Everything checked: only now does the run directory get its files.
            do { try FileManager.default.createDirectory(atPath: dir + "/checkpoints", withIntermediateDirectories: true) }
            catch { throw TrainingError("cannot create run directory \(dir): \(PathProblem.cause(of: error, path: dir + "/checkpoints"))") }
            try TrainingRun.write(recipe.resolvedYAML(), to: dir + "/recipe.resolved.yaml")
            // Records of an attempt that died before its first checkpoint describe steps this run redoes.
            if FileManager.default.fileExists(atPath: dir + "/metrics.jsonl") { try TrainingRun.write("", to: dir + "/metrics.jsonl") }
        }
        directory.commit()
        do { try console.open(logPath: dir + "/train.log") } catch { throw TrainingError("\(error)") }
        // train.distributed.sync_bn in one process: the synchronised operation over one batch, so that the
        // run is the reference an N-rank run matches (the two BatchNorm kernels round differently).
        if recipe.train.distributed.syncBN && world == nil { SyncBatchNorm.convert(model, reducer: SyncBatchNorm.local) }
        if let world {
            if recipe.train.distributed.syncBN { SyncBatchNorm.convert(model, reducer: world) }
            try DataParallelRun.sendStart(world, run: self, ptqStructure: resumeFrom.map(TrainingRun.isQuantized) ?? false)
            console.line("data-parallel: \(world.size) ranks, \(recipe.train.batch / world.size) samples each per global batch of \(recipe.train.batch), "
                         + "\(buckets!.bucketCount) gradient buckets, \(Parallel.threads) threads per rank, BatchNorm \(recipe.train.distributed.syncBN ? "synchronised" : "local")")
        }
    }

    /// `train.steps`, or `train.epochs` x batches per epoch, checked: the product can overflow (and in a
    /// release build, wrap to a negative count that trains nothing) or exceed the step cap.
    static func totalSteps(_ recipe: Recipe, batchesPerEpoch: Int) throws -> Int {
        if let steps = recipe.train.steps { return steps }
        let (product, overflow) = recipe.train.epochs.multipliedReportingOverflow(by: batchesPerEpoch)
        guard !overflow, product <= Cap.steps.max else {
            throw TrainingError("train.epochs \(recipe.train.epochs) x \(batchesPerEpoch) batches per epoch is more than the cap of \(Cap.steps.max) optimizer steps; "
                                + "lower train.epochs (at most \(Cap.steps.max / batchesPerEpoch) here) or set train.steps")
        }
        return product
    }

    // MARK: directories and checkpoints

    /// Writes one of the run's own files (atomically; it replaces the previous version).
    static func write(_ text: String, to path: String) throws {
        do { try AtomicFile.write(text, to: path, replacing: .anything) } catch { throw TrainingError("\(error)") }
    }

    static func loadCheckpoint(_ path: String) throws -> Checkpoint {
        do { return try Checkpoint.load(from: path) } catch { throw TrainingError("\(error)") }
    }

    static func state(_ c: Checkpoint) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(c.metricsJSON.utf8)) as? [String: Any]) ?? [:]
    }
    static func isQuantized(_ c: Checkpoint) -> Bool { (state(c)["quantized"] as? Bool) ?? !c.quant.isEmpty }

    static func makeOptimizer(_ r: Recipe, model: Module, totalSteps: Int) -> (Optimizer, LRSchedule) {
        let o = r.train.optimizer
        let rules: [GroupRule] = [.pattern("*Quantizer.*", lrScale: Float(o.quantLRScale), weightDecay: 0), .noDecayOnNormsAndBiases]
        let named = model.namedParameters()
        let opt: Optimizer
        switch o.name {
        case "adam": opt = Adam(named, lr: Float(o.lr), beta1: Float(o.betas[0]), beta2: Float(o.betas[1]), weightDecay: Float(o.weightDecay), rules: rules)
        case "adamw": opt = Adam.adamW(named, lr: Float(o.lr), beta1: Float(o.betas[0]), beta2: Float(o.betas[1]), weightDecay: Float(o.weightDecay), rules: rules)
        default: opt = SGD(named, lr: Float(o.lr), momentum: Float(o.momentum), nesterov: o.nesterov && o.momentum > 0,
                           weightDecay: Float(o.weightDecay), rules: rules)
        }
        let s = r.train.schedule
        let kind: LRSchedule.Kind
        switch s.name {
        case "constant": kind = .constant
        case "step": kind = .step(milestones: s.milestones, gamma: Float(s.gamma))
        default: kind = .cosine(totalSteps: max(totalSteps, 1), minFactor: Float(s.minLRRatio))
        }
        return (opt, LRSchedule(kind, warmupSteps: s.warmupSteps, warmupStartFactor: 0.1))
    }

    func calibrationBatches() throws -> [Tensor] { try task.calibrationInputs(batches: recipe.quant.calibrationBatches) }

    /// QAT initialisation: the ranges are fitted to the activations the training forward will produce
    /// (`quant.calibration_statistics`).
    func calibrate(_ h: QATHandle) throws {
        let batches = try calibrationBatches()
        h.calibrate(model, batches: batches, statistics: recipe.quant.calibratesWithBatchStatistics ? .batch : .running) { self.model($0) }
    }

    func save(_ name: String) throws {
        guard writes else { return }
        let c = try snapshot()
        do { try c.save(to: dir + "/checkpoints/" + name) } catch { throw TrainingError("saving \(dir)/checkpoints/\(name): \(error)") }
    }

    /// The run's state as a checkpoint: weights, optimizer, EMA, step and the loop's counters.
    func snapshot() throws -> Checkpoint {
        var c = Checkpoint.capture(model: model, optimizer: opt)
        c.step = Int64(step); c.epoch = Int64(step / batchesPerEpoch); c.seed = recipe.seed
        c.recipe = recipe.resolvedYAML(); c.model = recipe.model.backbone
        let st: [String: Any] = ["quantized": handle != nil, "best": best.isFinite ? best : NSNull(), "best_step": bestStep,
                                 "nonfinite_steps": nonFinite, "elapsed_seconds": elapsed, "classes": task.classes]
            .merging(bnReestimated ? ["bn_reestimated": true] : [:]) { a, _ in a }
        c.metricsJSON = String(data: try JSONSerialization.data(withJSONObject: st, options: [.sortedKeys]), encoding: .utf8)!
        if let ema { EMAEntries.store(ema.shadow, in: &c) }
        return c
    }

    func restore(_ c: Checkpoint) throws {
        try restoreState(c, file: dir + "/checkpoints/last.h5")
        // Metrics logged after the checkpoint was written are replayed by the resumed run, and so is the
        // final record (a run killed between it and final.json writes it again when it finishes).
        let path = dir + "/metrics.jsonl"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let kept = text.split(separator: "\n").filter { line in
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let s = o["step"] as? Int else { return false }
                return s <= step && o["type"] as? String != "final"
            }
            try TrainingRun.write(kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n"), to: path)
        }
    }

    /// Weights, optimizer state, EMA and the loop's counters from a checkpoint of this run (`file` names
    /// it in errors).
    func restoreState(_ c: Checkpoint, file: String) throws {
        do { try c.apply(to: model, strict: true, file: file) } catch { throw TrainingError("\(error)") }
        do { try EMAEntries.withoutEMA(c).apply(to: opt, file: file) } catch { throw TrainingError("\(error)") }
        if let ema, let p = EMAEntries.load(c, into: ema.shadow).first {
            throw TrainingError("\(file): no EMA weights for \(p) (was the run started without train.ema?)")
        }
        step = Int(c.step)
        let st = TrainingRun.state(c)
        best = (st["best"] as? Double) ?? -.infinity
        bestStep = (st["best_step"] as? Int) ?? -1
        nonFinite = (st["nonfinite_steps"] as? Int) ?? 0
        elapsed = (st["elapsed_seconds"] as? Double) ?? 0
    }

    // MARK: metrics

    /// Appends one record to metrics.jsonl (one line, one write: `AppendFile`).
    func record(_ o: [String: Any]) throws {
        guard writes, let d = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) else { return }
        do {
            if metrics == nil { metrics = try AppendFile(path: dir + "/metrics.jsonl") }
            try metrics!.append(String(decoding: d, as: UTF8.self) + "\n")
        } catch { throw TrainingError("\(error)") }
    }

    /// Evaluates the current model (the EMA weights when the recipe keeps an EMA) on a split.
    public func evaluate(split: String) throws -> TaskMetrics {
        try withEvaluationWeights { try task.evaluate(model: model, split: split) }
    }

    /// Runs `body` with the weights evaluation uses (the EMA's when the recipe keeps one), then restores
    /// the training weights.
    func withEvaluationWeights<T>(_ body: () throws -> T) throws -> T {
        var backup: [(Tensor, [Float])] = []
        if let ema {
            backup = (model.namedParameters() + model.namedBuffers()).map { ($0.1, $0.1.scalars) }
            ema.copy(into: model)
        }
        defer { for (t, v) in backup { v.withUnsafeBufferPointer { t.pointer.update(from: $0.baseAddress!, count: v.count) } } }
        return try body()
    }

    // MARK: the loop

    /// A run directory's final.json, when it has a readable one.
    static func finishedReport(_ dir: String) -> FinalReport? {
        guard let d = FileManager.default.contents(atPath: dir + "/final.json") else { return nil }
        return try? JSONCoding.decoder().decode(FinalReport.self, from: d)
    }

    /// Trains to the end (or an interrupt), then releases the run directory.
    public func run() throws -> RunOutcome {
        defer { directory?.release() }
        // Nothing is logged either: the caller says that the run had finished.
        if let done = alreadyFinished { return .alreadyFinished(done) }
        let start = Date()
        let stepsAtStart = step
        elapsedAtStart = elapsed
        var order: [Int] = [], orderEpoch = -1
        model.train()
        console.line("run \(dir): \(recipe.model.backbone) x\(recipe.model.width), \(recipe.quant.mode), \(totalSteps) steps (\(batchesPerEpoch) per epoch), \(task.trainCount) train samples, \(task.classes.count) classes")
        // Mean of each loss term (and of their sum, "") over the finite steps since the last metrics line.
        var window: [String: Double] = [:], windowN = 0, windowStart = Date()
        let slimmed = recipe.train.bnSparsity > 0 ? model.namedModules().compactMap { $0.1 as? BatchNorm2d } : []
        let lambda = Float(recipe.train.bnSparsity)
        let ranks = world?.size ?? 1, slice = recipe.train.batch / ranks, offset = (world?.rank ?? 0) * slice
        while step < totalSteps {
            var stopAsked = stopAfterSteps.map { step - stepsAtStart >= $0 } ?? false
            var signal = stopAsked ? 0 : StopSignal.requested
            if let world {
                // Every rank stops at the same step: a signal reaches the ranks at different moments.
                var v = [Double(signal), stopAsked || signal != 0 ? 1 : 0]
                world.allreduce(&v, max: true, what: "stop check before step \(step + 1)")
                signal = Int32(v[0]); stopAsked = v[1] > 0
            }
            if stopAsked || signal != 0 { return try interrupt(signal: signal, start: start) }
            let epoch = step / batchesPerEpoch, b = step % batchesPerEpoch
            if epoch != orderEpoch { order = task.trainOrder(epoch: epoch); orderEpoch = epoch }
            handle?.setStep(step)
            opt.lrFactor = schedule.factor(at: step)
            opt.zeroGrad()
            // This rank's slice of the global batch (all of it in a single process).
            let first = b * recipe.train.batch + offset
            let terms = try task.losses(model: model, epoch: epoch, indices: Array(order[first..<(first + slice)]))
            precondition(!terms.isEmpty, "a training task returned no loss terms")
            let names = terms.keys.sorted()
            let loss = Loss.total(terms)
            var l = loss.item
            var parts = names.map { ($0, Double(terms[$0]!.item)) }
            if let world {
                // The global batch's loss (each rank's is the mean over its equal slice); every rank
                // then takes the same branch below, so all of them join the same collectives.
                var v = [Double(l)] + parts.map(\.1)
                world.allreduce(&v, what: "loss of step \(step + 1)")
                l = Float(v[0] / Double(ranks))
                for i in parts.indices { parts[i].1 = v[i + 1] / Double(ranks) }
            }
            var gradNorm: Float = 0
            if l.isFinite {
                if let buckets {
                    buckets.begin()
                    loss.backward(leafReady: buckets.ready)
                    buckets.finish()
                } else {
                    loss.backward()
                }
                // train.bn_sparsity: the subgradient of lambda * sum |gamma| (network slimming).
                for bn in slimmed {
                    guard let g = bn.weight.grad else { continue }
                    let w = bn.weight.pointer, gp = g.pointer
                    for i in 0..<g.count where w[i] != 0 { gp[i] += w[i] > 0 ? lambda : -lambda }
                }
                // The global gradient norm (clipped when the recipe says so): a non-finite one would
                // poison the weights, so that step is skipped like a non-finite loss (GradScaler-style).
                gradNorm = clipGradNorm(model.parameters(), maxNorm: recipe.train.clipGradNorm.map(Float.init) ?? .infinity)
            }
            if l.isFinite && gradNorm.isFinite {
                opt.step()
                handle?.clampScales()
                ema?.update(model)
                consecutiveNonFinite = 0
                window["", default: 0] += Double(l); windowN += 1
                for (n, v) in parts { window[n, default: 0] += v }
            } else {
                nonFinite += 1; consecutiveNonFinite += 1
                var what = "non-finite loss (\(l))"
                if l.isFinite {
                    // Named before the gradients are cleared (cleared first, every name looked finite).
                    let bad = model.namedParameters().first { _, t in
                        guard let g = t.grad else { return false }
                        return (0..<g.count).contains { !g.pointer[$0].isFinite }
                    }
                    what = bad.map { "non-finite gradient (first in \($0.0))" } ?? "gradient norm \(gradNorm) beyond Float range"
                }
                opt.zeroGrad()
                console.line("step \(step + 1): \(what), step skipped (\(consecutiveNonFinite) in a row)")
                try record(["type": "nonfinite", "step": step + 1, "epoch": epoch, "what": l.isFinite ? "gradient" : "loss"])
                if consecutiveNonFinite >= recipe.train.maxNonFinite {
                    let last = dir + "/checkpoints/last.h5"
                    let keep = FileManager.default.fileExists(atPath: last)
                        ? "the last good checkpoint is \(last)" : "no checkpoint was written (the run failed in its first epoch)"
                    throw TrainingError("stopped: \(consecutiveNonFinite) non-finite steps in a row at step \(step + 1) (train.max_nonfinite = \(recipe.train.maxNonFinite)); \(keep). Lower train.optimizer.lr or set train.clip_grad_norm.")
                }
            }
            step += 1
            let now = Date()
            let done = step - stepsAtStart
            let rate = Double(done * recipe.train.batch) / max(now.timeIntervalSince(start), 1e-9)
            let eta = Double(totalSteps - step) * Double(recipe.train.batch) / max(rate, 1e-9)
            let lr = Double(opt.lr())
            if step % recipe.train.logEvery == 0 || step == totalSteps {
                func mean(_ n: String) -> Double { windowN > 0 ? window[n, default: 0] / Double(windowN) : .nan }
                let ips = Double(windowN * recipe.train.batch) / max(now.timeIntervalSince(windowStart), 1e-9)
                var rec: [String: Any] = ["type": "train", "step": step, "epoch": epoch, "loss": mean("").isFinite ? mean("") : NSNull(), "lr": lr, "images_per_s": ips]
                for n in names { rec["loss_" + n] = mean(n).isFinite ? mean(n) : NSNull() }
                try record(rec)
                console.periodic(String(format: "epoch %d step %d/%d loss %.4f%@ lr %.4g %.0f img/s eta %@", epoch + 1, step, totalSteps, mean(""),
                                        TrainingRun.terms(names.map { ($0, mean($0)) }), lr, ips, Console.duration(eta)))
                window = [:]; windowN = 0; windowStart = now
            }
            console.progress(String(format: "epoch %d/%d step %d/%d loss %.4f%@ lr %.4g %.0f img/s eta %@", epoch + 1, max(1, (totalSteps + batchesPerEpoch - 1) / batchesPerEpoch),
                                    step, totalSteps, Double(l), TrainingRun.terms(parts), lr, rate, Console.duration(eta)))
            let endOfEpoch = step % batchesPerEpoch == 0 || step == totalSteps
            if endOfEpoch {
                if writes {
                    if (epoch + 1) % recipe.eval.everyEpochs == 0 || step == totalSteps { try evaluateAndKeepBest(epoch: epoch) }
                    elapsed = elapsedAtStart + Date().timeIntervalSince(start)
                    try save("last.h5")
                }
                // The other ranks wait (sleeping) while rank 0 evaluates and writes.
                world?.barrier(what: "end of epoch \(epoch + 1)")
                model.train()
            }
        }
        if let world {
            // Rank 0 alone finishes (PTQ, re-estimation and final evaluation with local statistics) and
            // sends its final report, which the others wait for.
            SyncBatchNorm.convert(model, reducer: nil)
            if world.rank == 0 {
                let report = try finish(start: start, stepsAtStart: stepsAtStart)
                _ = world.broadcast(Array(try JSONCoding.encoder().encode(report)), what: "final report", patient: true)
                return .finished(report)
            }
            let bytes = world.broadcast(nil, what: "final report", patient: true)
            return .finished(try JSONCoding.decoder().decode(FinalReport.self, from: Data(bytes)))
        }
        return .finished(try finish(start: start, stepsAtStart: stepsAtStart))
    }

    /// The loss terms after the total on progress lines, when there is more than one: " (a 0.1, b 0.2)".
    static func terms(_ parts: [(String, Double)]) -> String {
        parts.count < 2 ? "" : " (" + parts.map { String(format: "%@ %.4f", $0.0, $0.1) }.joined(separator: ", ") + ")"
    }

    func evaluateAndKeepBest(epoch: Int) throws {
        let m = try evaluate(split: recipe.eval.split)
        try record(["type": "eval", "step": step, "epoch": epoch + 1, "split": m.split].merging(m.record) { a, _ in a })
        console.line("eval \(m.split) after epoch \(epoch + 1): \(m.summary(first: recipe.eval.metric))")
        let v = try selectionMetric(m)
        if v > best { best = v; bestStep = step; try save("best.h5") }
        model.train()
    }

    /// The value of `eval.metric` (which picks best.h5) in an evaluation.
    func selectionMetric(_ m: TaskMetrics) throws -> Double {
        guard let v = m[recipe.eval.metric] else {
            throw TrainingError("eval.metric \(recipe.eval.metric): the \(recipe.task) task reports no such metric (it reports \(m.names().joined(separator: ", ")))")
        }
        return v
    }

    func interrupt(signal: Int32, start: Date) throws -> RunOutcome {
        elapsed = elapsedAtStart + Date().timeIntervalSince(start)
        try save("last.h5")
        world?.barrier(what: "interrupt at step \(step)")
        console.line("interrupted at step \(step) of \(totalSteps); saved \(dir)/checkpoints/last.h5")
        return .interrupted(step: step, signal: signal)
    }

    /// `quant.bn_reestimation_batches`: best.h5's BatchNorm statistics re-estimated on its quantized model
    /// (the evaluation weights: the EMA's when the recipe keeps one), evaluated on `eval.split`, and
    /// written back to best.h5, whose state then records it (a resumed run does not redo it). The best
    /// value becomes the re-estimated model's, whether it rose or fell; both are logged.
    func reestimateBatchNorm(batches n: Int) throws {
        let path = dir + "/checkpoints/best.h5"
        let c = try TrainingRun.loadCheckpoint(path)
        if TrainingRun.state(c)["bn_reestimated"] as? Bool == true { bnReestimated = true; return }
        do { try c.apply(to: model, strict: true, file: path) } catch { throw TrainingError("\(error)") }
        if let ema { EMAEntries.load(c, into: ema.shadow) }
        let inputs = try task.calibrationInputs(batches: n)
        let paths = try withEvaluationWeights { () -> [String] in
            let p = BatchNormReestimation.run(model, batches: inputs) { self.model($0) }
            if let ema {   // the EMA's buffers are the statistics evaluation uses
                let current = Dictionary(uniqueKeysWithValues: model.namedBuffers())
                for (name, t) in ema.shadow { if let v = current[name] { t.pointer.update(from: v.pointer, count: t.count) } }
            }
            return p
        }
        let m = try evaluate(split: recipe.eval.split)
        let v = try selectionMetric(m)
        let before = best
        best = v; bnReestimated = true
        try save("best.h5")
        try record(["type": "eval", "step": step, "split": m.split, "bn_reestimated": true].merging(m.record) { a, _ in a })
        console.line(String(format: "bn re-estimation: %d BatchNorms on %d batches; %@ %@ %.4f -> %.4f (best.h5 rewritten)",
                            paths.count, inputs.count, m.split, recipe.eval.metric, before, v))
    }

    /// PTQ conversion (when the recipe asks for it), final evaluation of best.h5 on the final split,
    /// final.json.
    func finish(start: Date, stepsAtStart: Int) throws -> FinalReport {
        if recipe.quant.mode == "ptq" && handle == nil {
            model.eval()
            if recipe.quant.foldBN || recipe.quant.equalize { PTQ.foldBatchNorms(model) }
            if recipe.quant.equalize { PTQ.equalizeCrossLayer(model) }
            do { handle = try quantize(model, plan: try quantPlan(recipe)) } catch { throw TrainingError("quant: \(error)") }
            let batches = try calibrationBatches()
            handle!.calibrate(model, batches: batches) { self.model($0) }
            if recipe.quant.adaround.enabled {
                let a = recipe.quant.adaround
                var c = AdaRound.Config()
                c.iterations = a.iterations; c.learningRate = Float(a.lr); c.regularization = Float(a.reg)
                c.betaStart = Float(a.betaStart); c.betaEnd = Float(a.betaEnd); c.warmStart = Float(a.warmStart); c.batches = a.batches
                c.heldOutBatches = a.heldOutBatches
                let rs = AdaRound.run(model, handle: handle!, batches: batches, config: c, forward: { self.model($0) }) { self.console.line($0) }
                let improved = rs.filter { $0.adaRoundError <= $0.nearestError }.count
                console.line("adaround: \(rs.count) layers rounded (\(improved) with a reconstruction error at or below round-to-nearest)"
                             + (a.heldOutBatches > 0 ? "; round-to-nearest kept on \(rs.filter(\.keptNearest).count) where the held-out batches did not confirm the learned rounding" : ""))
            }
            if recipe.quant.biasCorrection { handle!.correctBias(model, batches: batches) { self.model($0) } }
            if let decay = recipe.train.ema { ema = ModelEMA(model, decay: Float(decay)) }   // the folded, quantized model
            console.line("ptq: calibrated \(handle!.quantizers.count) quantizers on \(batches.count) batches")
            best = -.infinity
            try evaluateAndKeepBest(epoch: max(0, step / batchesPerEpoch - 1))
            try save("last.h5")
        } else if bestStep < 0 {
            try evaluateAndKeepBest(epoch: max(0, step / batchesPerEpoch - 1))
            try save("last.h5")
        }
        if let n = recipe.quant.bnReestimationBatches { try reestimateBatchNorm(batches: n) }
        elapsed = elapsedAtStart + Date().timeIntervalSince(start)
        var final: TaskMetrics? = nil
        if recipe.eval.finalSplit != "none" {
            let c = try TrainingRun.loadCheckpoint(dir + "/checkpoints/best.h5")
            do { try c.apply(to: model, strict: true, file: dir + "/checkpoints/best.h5") } catch { throw TrainingError("\(error)") }
            if let ema { EMAEntries.load(c, into: ema.shadow) }
            final = try evaluate(split: recipe.eval.finalSplit)
            try withEvaluationWeights { try task.writeRunFigures(model: model, split: recipe.eval.finalSplit, dir: dir) }
            console.line("final: best.h5 (step \(bestStep)) on \(final!.split): \(final!.summary(first: recipe.eval.metric))")
        }
        let report = FinalReport(name: recipe.name, steps: step, seconds: elapsed, metric: recipe.eval.metric, best: best, bestStep: bestStep,
                                 nonFiniteSteps: nonFinite, final: final, classes: task.classes)
        var rec: [String: Any] = ["type": "final", "step": step, "seconds": elapsed, "best": best, "best_step": bestStep]
        if let final { rec["split"] = final.split; rec.merge(final.record) { a, _ in a } }
        try record(rec)
        do { try AtomicFile.write(try JSONCoding.encoder().encode(report), to: dir + "/final.json", replacing: .anything) }
        catch let e as FileError { throw TrainingError("\(e)") }
        return report
    }
}

/// EMA weights travel in the checkpoint's optimizer map as `__ema__.<path>` (slot `value`), so the
/// HDF5 layout needs no new group; `withoutEMA` is the optimizer's own state.
enum EMAEntries {
    static let prefix = "__ema__."

    static func store(_ shadow: [(String, Tensor)], in c: inout Checkpoint) {
        for (p, t) in shadow { c.optimizer[prefix + p] = ["value": Checkpoint.Entry(t)] }
    }

    static func withoutEMA(_ c: Checkpoint) -> Checkpoint {
        var out = c
        out.optimizer = c.optimizer.filter { !$0.key.hasPrefix(prefix) }
        return out
    }

    /// Copies the stored EMA values into `targets` (by path); returns the paths without a stored value.
    @discardableResult
    static func load(_ c: Checkpoint, into targets: [(String, Tensor)]) -> [String] {
        var missing: [String] = []
        for (p, t) in targets {
            guard let e = c.optimizer[prefix + p]?["value"], e.values.count == t.count else { missing.append(p); continue }
            e.values.withUnsafeBufferPointer { t.pointer.update(from: $0.baseAddress!, count: t.count) }
        }
        return missing
    }
}

/// Progress output: a line updated in place on a terminal, plain periodic lines otherwise; every
/// line also goes to the run's log file.
final class Console {
    var log: AppendFile?
    var pending: [String] = []
    let tty: Bool
    let quiet: Bool
    var dirty = false
    var lastProgress = Date.distantPast

    init(quiet: Bool) {
        tty = isatty(STDOUT_FILENO) != 0
        self.quiet = quiet
    }

    /// Starts the log file (lines written before it existed are kept and written first).
    func open(logPath: String) throws {
        log = try AppendFile(path: logPath)
        for p in pending { write(p) }
        pending = []
    }

    /// A line for the log. The log is a copy of the console: a line it cannot take (a full disk) is
    /// dropped, and the checkpoint or metrics write that fails next reports the disk.
    func write(_ s: String) {
        guard let log else { pending.append(s); return }
        try? log.append(s + "\n")
    }

    func line(_ s: String) {
        write(s)
        guard !quiet else { return }
        if dirty { print("\r\u{1B}[K", terminator: ""); dirty = false }
        print(s); fflush(nil)
    }

    /// Periodic lines: in the log always, on stdout only when it is not a terminal.
    func periodic(_ s: String) {
        write(s)
        if !tty && !quiet { print(s); fflush(nil) }
    }

    func progress(_ s: String) {
        guard tty, !quiet, Date().timeIntervalSince(lastProgress) > 0.1 else { return }
        lastProgress = Date()
        print("\r\u{1B}[K" + s, terminator: ""); fflush(nil)
        dirty = true
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "?" }
        // Int(s) traps past Int.max; a year is as far as an ETA is worth printing.
        guard s < 366 * 86_400 else { return ">1y" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) : String(format: "%dm%02ds", t / 60, t % 60)
    }
}
