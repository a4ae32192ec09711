import Foundation
import Kernels
import Recipes
import Files
import UserPaths
import DataParallel

/// `qat sweep SWEEP.yaml`: a base recipe run over a grid (cartesian over dotted keys; a variant may give
/// its own `grid:` instead, e.g. a baseline at one point only) and/or a list of
/// variants, repeated per seed. Every cell is a normal run directory `<out>/<variant><grid>/seed<k>`;
/// cells with a `final.json` are skipped, so rerunning a sweep continues it. Values in `set` maps may
/// use `{seed}`, `{out}` (the sweep folder) and `{grid}` (the cell's grid suffix), e.g. to start a QAT
/// cell from the FP32 cell of the same seed. Or, with `evolve:`, a genetic hyperparameter search.
public struct Sweep: Sendable {
    /// A variant: overrides, and optionally its own recipe file replacing the sweep's base.
    public struct Variant: Sendable {
        public var name: String; public var set: [(String, Tree)]; public var recipe: Tree? = nil
        /// The variant's own grid, replacing the sweep's (a baseline run at one point only); nil: the sweep's.
        public var grid: [(key: String, values: [Tree])]? = nil
    }
    public struct Evolve: Sendable {
        public var generations: Int
        public var metric: String
        public var parents: Int
        public var mutationProb: Double
        public var sigma: Double
        public var params: [(key: String, low: Double, high: Double)]
    }

    public var name: String
    public var file: String
    public var out: String
    public var baseTree: Tree
    public var seeds: [Int]
    public var set: [(String, Tree)]
    public var grid: [(key: String, values: [Tree])]
    public var variants: [Variant]
    public var evolve: Evolve?
    /// Seconds between checks while a cell waits for another shard's checkpoint.
    public var waitInterval = 5.0
    /// Seconds a waiting cell tolerates that the shard which runs its producer cell has started once (its
    /// lock file exists) but is not running now (its lock is free: it was killed, even by SIGKILL, or it
    /// ended) before it fails instead of waiting forever. A shard that never started (no lock file, e.g. a
    /// job array task still queued) is waited for.
    public var orphanGrace = 60.0
    /// Run only the cells of this dependency stage (`stages()`; `qat sweep --stage K`, as the Slurm
    /// submission does): their producers are in earlier stages, which have ended, so a producer not
    /// finished now never will be, and the cell fails at once instead of waiting.
    public var stage: Int? = nil
    /// Started by mpirun (`mpirun -np N qat sweep SWEEP.yaml`): this process is rank 0 and trains every
    /// cell with the other ranks (`Sweep.follow`), each cell a data-parallel run. Rank 0 alone decides
    /// which cells run (shards, stages, locks, dependencies, evolve) and sends each cell's resolved recipe.
    public nonisolated(unsafe) var world: MPIWorld? = nil

    public struct Cell: Sendable {
        public var index: Int
        public var variant: String
        public var gridSuffix: String
        public var grid: [(String, Tree)]
        public var seed: Int
        public var dir: String
        public var label: String { "\(variant)\(gridSuffix)/seed\(seed)" }
    }

    public static func load(_ path: String) throws -> Sweep {
        let text: String
        do { text = try UserFile.readText(path, maxBytes: YAMLLimits.standard.maxBytes, what: "sweep file") } catch let e as PathError {
            throw RecipeError(origin: Origin(file: path), e.isNotFound ? "sweep file not found" : e.cause)
        }
        let tree = try Tree.parse(text, file: path)
        if case .null = tree { throw RecipeError(origin: Origin(file: path), "is empty; a sweep needs at least base: (the recipe every cell starts from)") }
        let r = try Reader(tree, path: "", origin: tree.origin)
        let defaultName = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let name = try r.string("name", defaultName)
        guard let base = try r.optString("base") else {
            throw RecipeError(origin: tree.origin, key: "base", "a sweep needs base: the recipe every cell starts from (relative to the sweep file; a variant may name its own with recipe:)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        let basePath = base.hasPrefix("/") ? base : (dir.isEmpty ? base : dir + "/" + base)
        let baseTree = try Recipe.loadTree(path: basePath, chain: [])
        let out = try r.string("out", "runs/sweeps/" + name)
        let seeds = try r.intList("seeds") ?? [0]
        guard !seeds.isEmpty else { throw RecipeError(origin: r.value("seeds")?.origin, key: "seeds", "needs at least one seed") }
        func pairs(_ t: Tree?, key: String) throws -> [(String, Tree)] {
            guard let t else { return [] }
            guard case .map(let m, _) = t else { throw RecipeError(origin: t.origin, key: key, "expected a mapping of dotted keys to values") }
            return m
        }
        let set = try pairs(r.value("set"), key: "set")
        func gridPairs(_ t: Tree?, key: String) throws -> [(String, [Tree])] {
            var grid: [(String, [Tree])] = []
            for (k, v) in try pairs(t, key: key) {
                guard case .seq(let items, _) = v, !items.isEmpty else { throw RecipeError(origin: v.origin, key: "\(key).\(k)", "expected a non-empty list of values") }
                grid.append((k, items))
            }
            return grid
        }
        let grid = try gridPairs(r.value("grid"), key: "grid")
        var variants: [Variant] = []
        for (i, item) in (try r.list("variants") ?? []).enumerated() {
            let vr = try Reader(item, path: "variants[\(i)]", origin: item.origin)
            guard let vname = try vr.optString("name"), !vname.isEmpty, !vname.contains("/") else {
                throw RecipeError(origin: item.origin, key: "variants[\(i)].name", "each variant needs a name (no '/')")
            }
            if variants.contains(where: { $0.name == vname }) { throw RecipeError(origin: item.origin, key: "variants[\(i)].name", "duplicate variant name '\(vname)'") }
            var own: Tree? = nil
            if let rel = try vr.optString("recipe") {
                own = try Recipe.loadTree(path: rel.hasPrefix("/") ? rel : (dir.isEmpty ? rel : dir + "/" + rel))
            }
            let ownGrid = vr.value("grid") == nil ? nil : try gridPairs(vr.value("grid"), key: "variants[\(i)].grid")
            variants.append(Variant(name: vname, set: try pairs(vr.value("set"), key: "variants[\(i)].set"), recipe: own,
                                    grid: ownGrid.map { $0.map { (key: $0.0, values: $0.1) } }))
            try vr.finish()
        }
        var evolve: Evolve? = nil
        if r.value("evolve") != nil {
            let e = try r.sub("evolve")
            var params: [(String, Double, Double)] = []
            for (k, v) in try pairs(e.value("params"), key: "evolve.params") {
                guard case .seq(let b, _) = v, b.count == 2, case .scalar(let lo, _, _) = b[0], case .scalar(let hi, _, _) = b[1],
                      let l = Double(lo), let h = Double(hi), l < h else {
                    throw RecipeError(origin: v.origin, key: "evolve.params.\(k)", "expected [low, high] bounds with low < high")
                }
                params.append((k, l, h))
            }
            guard !params.isEmpty else { throw RecipeError(origin: e.tree?.origin, key: "evolve.params", "name at least one hyperparameter with its [low, high] bounds") }
            // The fitness is a metric of the base recipe's task, by default the one that picks its best.h5.
            func scalar(_ t: Tree?) -> String? { if case .scalar(let s, _, _)? = t { return s }; return nil }
            let metrics = Recipe.options(task: scalar(baseTree["task"]) ?? "classification").evalMetrics
            let baseMetric = scalar(baseTree["eval"]?["metric"]).flatMap { metrics.contains($0) ? $0 : nil } ?? metrics[0]
            evolve = Evolve(generations: try e.int("generations", 10, min: 1), metric: try e.choice("metric", baseMetric, metrics),
                            parents: try e.int("parents", 5, min: 1), mutationProb: try e.double("mutation_prob", 0.8, min: 0, max: 1),
                            sigma: try e.double("sigma", 0.2, min: 0), params: params)
            try e.finish()
        }
        try r.finish()
        if variants.isEmpty { variants = [Variant(name: name, set: [])] }
        let s = Sweep(name: name, file: path, out: out, baseTree: baseTree, seeds: seeds, set: set, grid: grid, variants: variants, evolve: evolve)
        for cell in s.cells() { _ = try s.recipe(for: cell) }   // every cell must resolve before anything runs
        return s
    }

    /// Cells in run order: variant, then grid combination, then seed. Variants listed first run first,
    /// so a later variant may start from an earlier one's checkpoints (with shards, it waits for them).
    public func cells() -> [Cell] {
        var out: [Cell] = []
        for v in variants {
            var combos: [[(String, Tree)]] = [[]]
            for (k, values) in v.grid ?? grid { combos = combos.flatMap { c in values.map { c + [(k, $0)] } } }
            for combo in combos {
                let suffix = combo.map { "-\($0.0.split(separator: ".").last!)=\(Sweep.scalarText($0.1))" }.joined()
                for seed in seeds {
                    out.append(Cell(index: out.count, variant: v.name, gridSuffix: suffix, grid: combo, seed: seed,
                                    dir: self.out + "/\(v.name)\(suffix)/seed\(seed)"))
                }
            }
        }
        return out
    }

    static func scalarText(_ t: Tree) -> String {
        if case .scalar(let s, _, _) = t { return s }
        return t.yaml().trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func substitute(_ t: Tree, _ cell: Cell) -> Tree {
        switch t {
        case .scalar(let s, let q, let o):
            let r = s.replacingOccurrences(of: "{seed}", with: "\(cell.seed)").replacingOccurrences(of: "{out}", with: out)
                .replacingOccurrences(of: "{grid}", with: cell.gridSuffix)
            return .scalar(r, quoted: q, o)
        case .seq(let items, let o): return .seq(items.map { substitute($0, cell) }, o)
        case .map(let m, let o): return .map(m.map { ($0.0, substitute($0.1, cell)) }, o)
        case .null: return t
        }
    }

    public func recipe(for cell: Cell, extra: [(String, Tree)] = []) throws -> Recipe {
        let variant = variants.first { $0.name == cell.variant }!
        var t = variant.recipe ?? baseTree
        for (k, v) in set + cell.grid + variant.set + extra {
            t = t.setting(k.split(separator: ".").map(String.init), to: substitute(v, cell), origin: v.origin)
        }
        t = t.setting(["seed"], to: .scalar("\(cell.seed)", quoted: false, Origin(file: file)))
        t = t.setting(["name"], to: .scalar("\(name)-\(cell.variant)\(cell.gridSuffix)", quoted: true, Origin(file: file)))
        return try Recipe(tree: t)
    }

    public static func isDone(_ dir: String) -> Bool { FileManager.default.fileExists(atPath: dir + "/final.json") }

    /// The error of a cell's last attempt when it failed (`failed.json` in its directory), else nil.
    /// Another shard waiting for this cell reads it, reports it and moves on instead of waiting forever.
    public static func failure(_ dir: String) -> String? {
        guard let d = FileManager.default.contents(atPath: dir + "/failed.json") else { return nil }
        let o = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any]
        return (o?["error"] as? String) ?? "(unreadable \(dir)/failed.json)"
    }

    /// Records a cell's failure in `failed.json` (the caller holds the cell's lock).
    static func recordFailure(_ cell: Cell, _ message: String) {
        let o: [String: Any] = ["cell": cell.label, "error": message, "pid": Int(getpid()), "host": Temporaries.host,
                                "time": ISO8601DateFormatter().string(from: Date())]
        guard let d = try? JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys]) else { return }
        try? AtomicFile.write(d, to: cell.dir + "/failed.json", replacing: .anything)
    }

    /// The lock file a running shard I of N holds.
    static func shardLockFile(_ out: String, _ i: Int, _ n: Int) -> String { out + "/.shard-\(i)-of-\(n).lock" }

    /// Why no process will finish `producer`, or nil while one may: its shard (of `n`) has started once
    /// (its lock file exists) and does not hold its lock now, and no live process on this host is the
    /// last owner of the cell's own lock (a run of the sweep without --shard, or with another N).
    static func deadShard(out: String, of producer: Cell, shards n: Int) -> String? {
        let i = producer.index % n + 1
        let file = shardLockFile(out, i, n)
        guard FileLock.isLocked(file) == false else { return nil }   // running, or never started (no file)
        if let owner = FileLock.holder(FileLock.file(ofDirectory: producer.dir)), owner.host == Temporaries.host,
           owner.pid != getpid(), kill(owner.pid, 0) == 0 || errno == EPERM {
            return nil
        }
        let last = FileLock.holder(file).map { " (last run by \($0))" } ?? ""
        return "shard \(i)/\(n) is not running\(last): it was killed or ended"
    }

    /// Takes a cell's lock (creating its directory): a cell is run by one process at a time.
    static func lockCell(_ cell: Cell) throws -> FileLock {
        do { try FileManager.default.createDirectory(atPath: cell.dir, withIntermediateDirectories: true) }
        catch { throw TrainingError("cannot create sweep cell \(cell.dir): \((error as NSError).localizedDescription)") }
        do { return try FileLock.acquire(FileLock.file(ofDirectory: cell.dir), guarding: "sweep cell \(cell.dir)") }
        catch let e as FileError where e.kind == .busy { throw e }
        catch { throw TrainingError("\(error)") }
    }

    /// Parses "I/N" (1 <= I <= N).
    public static func parseShard(_ s: String) throws -> (Int, Int) {
        let p = s.split(separator: "/")
        guard p.count == 2, let i = Int(p[0]), let n = Int(p[1]), n >= 1, i >= 1, i <= n else {
            throw TrainingError("--shard must be I/N with 1 <= I <= N (e.g. 2/4 runs cells 2, 6, 10, ... of 4 shards), got '\(s)'")
        }
        return (i, n)
    }

    /// The cells shard I of N runs: every N-th cell starting at the I-th.
    public func cells(shard: (Int, Int)?) -> [Cell] {
        guard let (i, n) = shard else { return cells() }
        return cells().filter { $0.index % n == i - 1 }
    }

    // MARK: running

    /// Runs the cells not yet done (of this shard). `log` gets one line per cell.
    /// A cell that fails (diverged, bad checkpoint) is reported, recorded in its `failed.json` and the
    /// sweep goes on with the next; `failed` lists them (rerunning the sweep retries them). A cell whose
    /// `init_from` another cell produces waits for that cell (another shard's) to finish; if that cell
    /// failed, this one fails too, without waiting forever. A cell another process is running is
    /// skipped (its lock tells).
    public func run(shard: (Int, Int)?, quiet: Bool = true, log: (String) -> Void) throws -> (ran: Int, skipped: Int, interrupted: Bool, failed: [String]) {
        if evolve != nil { let r = try runEvolve(quiet: quiet, log: log); return (r.ran, r.skipped, r.interrupted, []) }
        var ran = 0, skipped = 0, failed: [String] = []
        let mine = stage == nil ? cells(shard: shard) : try cells(stage: stage, shard: shard)
        // While it runs, a shard holds out/.shard-I-of-N.lock: a shard waiting for one of its cells can
        // tell a shard that died (its lock free) from one still at work. Another process running the
        // same shard keeps it; this one then goes on without it (its cells' locks keep them apart).
        var shardLock: FileLock? = nil
        if let (i, n) = shard {
            do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
            catch { throw TrainingError("cannot create sweep folder \(out): \((error as NSError).localizedDescription)") }
            var waited = 0.0
            let lockFile = stage.map { out + "/.stage-\($0)-shard-\(i)-of-\(n).lock" } ?? Sweep.shardLockFile(out, i, n)
            shardLock = try? FileLock.acquire(lockFile, guarding: "sweep shard \(i)/\(n)", interval: 0.05,
                                               waiting: { _ in }, cancelled: { waited += 0.05; return waited > 2 })
        }
        defer { shardLock?.release() }
        // This shard retries its failed cells now: their old failure records must not stop a shard that
        // waits for them.
        for cell in mine where !Sweep.isDone(cell.dir) && Sweep.failure(cell.dir) != nil {
            if let lock = try? Sweep.lockCell(cell) { try? FileManager.default.removeItem(atPath: cell.dir + "/failed.json"); lock.release() }
        }
        for cell in mine {
            if Sweep.isDone(cell.dir) { skipped += 1; log("skip \(cell.label) (done)"); continue }
            let lock: FileLock
            do { lock = try Sweep.lockCell(cell) } catch let e as FileError {
                skipped += 1; log("skip \(cell.label): \(e.message)"); continue
            }
            defer { lock.release() }
            if Sweep.isDone(cell.dir) { skipped += 1; log("skip \(cell.label) (done)"); continue }
            try? FileManager.default.removeItem(atPath: cell.dir + "/failed.json")
            let r = try recipe(for: cell)
            var dependencyFailure: String? = nil
            for dep in [r.model.initFrom, r.quant.initFrom, r.train.distill.teacher].compactMap({ $0 }) {
                // The producer's checkpoint may exist before it is final (best.h5 is written while it
                // trains): a cell starts only from a finished cell.
                guard let producer = cells().first(where: { dep.hasPrefix($0.dir + "/") }), !Sweep.isDone(producer.dir) else { continue }
                if producer.index > cell.index && (shard == nil || mine.contains(where: { $0.dir == producer.dir })) {
                    dependencyFailure = "needs \(producer.label) (\(dep)), which this process runs after it: list the variant that writes a checkpoint before the variants that start from it"
                    break
                }
                // Another shard (or process) trains the checkpoint this cell starts from: wait for that cell to end.
                if !Sweep.isDone(producer.dir) && !failed.contains(producer.label) && Sweep.failure(producer.dir) == nil {
                    log("wait \(cell.label): needs \(producer.label) (another shard)")
                }
                var orphanedSince: Date? = nil, orphan: String? = nil
                if let k = stage, !Sweep.isDone(producer.dir) && Sweep.failure(producer.dir) == nil {
                    dependencyFailure = "needs \(producer.label) (\(dep)), which its stage's jobs ended without finishing (killed or out of time?); before stage \(k), rerun that stage (its cells resume)"
                    break
                }
                while !Sweep.isDone(producer.dir) && !failed.contains(producer.label) && Sweep.failure(producer.dir) == nil {
                    if StopSignal.requested != 0 { return (ran, skipped, true, failed) }
                    if let (_, n) = shard, let dead = Sweep.deadShard(out: out, of: producer, shards: n) {
                        orphanedSince = orphanedSince ?? Date()
                        if Date().timeIntervalSince(orphanedSince!) >= orphanGrace { orphan = dead; break }
                    } else {
                        orphanedSince = nil
                    }
                    Thread.sleep(forTimeInterval: min(waitInterval, max(orphanGrace / 4, 0.01)))
                }
                if let dead = orphan {
                    dependencyFailure = "needs \(producer.label) (\(dep)), which is unfinished and no process is running it: \(dead); rerun that shard (its cells resume), then this one"
                    break
                }
                if !Sweep.isDone(producer.dir) {
                    let why = Sweep.failure(producer.dir).map { ": \($0)" } ?? " (above)"
                    dependencyFailure = "needs \(producer.label) (\(dep)), which failed\(why); fix that cell and rerun the sweep"
                    break
                }
            }
            if let why = dependencyFailure {
                failed.append(cell.label)
                Sweep.recordFailure(cell, why)
                log("FAILED \(cell.label): \(why)")
                continue
            }
            do {
                let outcome = try runCell(cell, recipe: r, lock: lock, quiet: quiet, log: log)
                if case .interrupted = outcome { return (ran, skipped, true, failed) }
                ran += 1
            } catch let e as TrainingError {
                failed.append(cell.label)
                Sweep.recordFailure(cell, e.message)
                log("FAILED \(cell.label): \(e)")
            }
        }
        return (ran, skipped, false, failed)
    }

    /// Runs one cell into its directory, whose lock the caller holds: resumes it from its `last.h5`, or
    /// starts it afresh (what an attempt that stopped before its first checkpoint left is removed).
    func runCell(_ cell: Cell, recipe: Recipe, lock: FileLock, quiet: Bool, log: (String) -> Void) throws -> RunOutcome {
        let fm = FileManager.default
        let resume = fm.fileExists(atPath: cell.dir + "/checkpoints/last.h5")
        if !resume {
            for item in (try? fm.contentsOfDirectory(atPath: cell.dir)) ?? [] where item != ".lock" {
                do { try fm.removeItem(atPath: cell.dir + "/" + item) }
                catch { throw TrainingError("cannot clear \(cell.dir)/\(item) (left by an attempt that stopped before its first checkpoint): \((error as NSError).localizedDescription)") }
            }
        }
        log("run \(cell.label)\(resume ? " (resuming)" : "") -> \(cell.dir)")
        let start = Date()
        // Under mpirun the other ranks train this cell with rank 0 (`Sweep.follow`).
        _ = world?.broadcast(Array(recipe.resolvedYAML().utf8), what: "the sweep's next cell", patient: true)
        let outcome: RunOutcome
        do {
            outcome = try TrainingRun(recipe: recipe, runDir: cell.dir, resume: resume, quiet: quiet, lock: lock, world: world).run()
        } catch {
            // The other ranks are inside this cell's run: a failure cannot be skipped past as a single
            // process does. Record it, then end every rank (rerunning the sweep retries it).
            guard let world else { throw error }
            let message = (error as? TrainingError)?.message ?? "\(PathError.translating(error))"
            Sweep.recordFailure(cell, message)
            world.abort(message: "sweep cell \(cell.label): \(message) (recorded in \(cell.dir)/failed.json; rerunning the sweep retries it)")
        }
        if case .finished(let f) = outcome {
            log(String(format: "done %@: %@ %@ %.2f%% (best %@ %.2f%%) in %.1f s", cell.label, f.final?.split ?? "-", f.metric, 100 * (f.final?[f.metric] ?? .nan),
                       recipe.eval.split, 100 * f.best, Date().timeIntervalSince(start)))
        }
        return outcome
    }

    /// Rank 0 tells the other ranks that the sweep is over (finished, interrupted or failed).
    public static func endFollowers(_ world: MPIWorld) {
        _ = world.broadcast([], what: "the end of the sweep", patient: true)
    }

    /// The loop of ranks 1..N-1 under `mpirun -np N qat sweep`: train each cell rank 0 sends (its resolved
    /// recipe; rank 0's starting state comes with the run) until rank 0 ends the sweep. Returns how many
    /// cells this rank trained.
    public static func follow(world: MPIWorld) throws -> Int {
        var cells = 0
        while true {
            let bytes = world.broadcast(nil, what: "the sweep's next cell", patient: true)
            if bytes.isEmpty { return cells }
            let recipe = try Recipe.parse(String(decoding: bytes, as: UTF8.self), file: "(sweep cell from rank 0)")
            let run = try TrainingRun(recipe: recipe, runDir: nil, resume: false, quiet: true, world: world)
            _ = try run.run()
            cells += 1
        }
    }

    // MARK: evolve (YOLOv5-style genetic search)

    public struct EvolveRow { public var generation: Int; public var fitness: Double; public var values: [Double]; public var dir: String }

    public func readEvolveCSV() -> [EvolveRow] {
        guard let text = try? String(contentsOfFile: out + "/evolve.csv", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard let ev = evolve, f.count == ev.params.count + 3, let g = Int(f[0]), let fit = Double(f[1]) else { return nil }
            let vals = f[2..<(2 + ev.params.count)].compactMap(Double.init)
            guard vals.count == ev.params.count else { return nil }
            return EvolveRow(generation: g, fitness: fit, values: vals, dir: f.last!)
        }
    }

    /// Hyperparameters of generation `g`: the base recipe's values for generation 0, else a parent picked
    /// among the best `parents` rows (weighted by fitness) and mutated: each value multiplied, with
    /// probability `mutation_prob`, by 1 + r * sigma * N(0,1) (r uniform, factor clipped to 0.3..3), then
    /// clipped to its bounds (YOLOv5's evolve).
    public func evolveValues(generation g: Int, rows: [EvolveRow]) throws -> [Double] {
        let ev = evolve!
        if g == 0 || rows.isEmpty {
            let base = try Recipe(tree: baseTree).tree()
            return ev.params.map { p in
                var t: Tree? = base
                for k in p.key.split(separator: ".") { t = t?[String(k)] }
                if case .scalar(let s, _, _)? = t, let v = Double(s) { return min(max(v, p.low), p.high) }
                return (p.low + p.high) / 2
            }
        }
        var rng = RNG(seed: UInt64(seeds[0]) &* 0x9E37_79B9 &+ UInt64(g))
        func uniform() -> Double { Double(rng.nextUInt64() >> 11) / Double(1 << 53) }
        func normal() -> Double { (-2 * log(max(uniform(), 1e-300))).squareRoot() * cos(2 * Double.pi * uniform()) }
        let top = rows.sorted { $0.fitness > $1.fitness }.prefix(ev.parents)
        let minFit = top.map(\.fitness).min()!
        let weights = top.map { $0.fitness - minFit + 1e-6 }
        var pick = uniform() * weights.reduce(0, +), parent = top.first!
        for (w, row) in zip(weights, top) { if pick < w { parent = row; break }; pick -= w }
        var factors = [Double](repeating: 1, count: ev.params.count)
        var tries = 0
        while factors.allSatisfy({ $0 == 1 }) && tries < 100 {
            tries += 1
            let r = uniform()
            factors = ev.params.map { _ in uniform() < ev.mutationProb ? min(max(1 + r * normal() * ev.sigma, 0.3), 3.0) : 1 }
        }
        return zip(parent.values, zip(factors, ev.params)).map { v, fp in min(max(v * fp.0, fp.1.low), fp.1.high) }
    }

    /// Generations run one after another in one process, which owns the sweep folder (its lock) so a
    /// second `qat sweep` of the same search is refused instead of mixing rows into evolve.csv.
    func runEvolve(quiet: Bool, log: (String) -> Void) throws -> (ran: Int, skipped: Int, interrupted: Bool) {
        let ev = evolve!
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let folderLock: FileLock
        do { folderLock = try FileLock.acquire(FileLock.file(ofDirectory: out), guarding: "sweep folder \(out) (an evolve search)") }
        catch { throw TrainingError((error as? FileError)?.message ?? "\(error)") }
        defer { folderLock.release() }
        let csv = out + "/evolve.csv"
        if !FileManager.default.fileExists(atPath: csv) {
            do { try AtomicFile.write("generation,fitness," + ev.params.map(\.key).joined(separator: ",") + ",run_dir\n", to: csv, replacing: .anything) }
            catch { throw TrainingError("\(error)") }
        }
        var ran = 0, skipped = 0
        for g in 0..<ev.generations {
            var rows = readEvolveCSV()
            if rows.contains(where: { $0.generation == g }) { skipped += 1; continue }
            let values = try evolveValues(generation: g, rows: rows)
            let cell = Cell(index: g, variant: "gen\(g)", gridSuffix: "", grid: [], seed: seeds[0], dir: out + "/gen\(g)")
            let extra = zip(ev.params, values).map { p, v in (p.key, Tree.scalar(p.key.hasSuffix("steps") || p.key.hasSuffix("epochs") || p.key.hasSuffix("batch") ? "\(Int(v.rounded()))" : "\(v)", quoted: false, Origin(file: file))) }
            var sw = self
            sw.variants = [Variant(name: "gen\(g)", set: [])]
            let recipe = try sw.recipe(for: cell, extra: extra)
            let lock: FileLock
            do { lock = try Sweep.lockCell(cell) } catch { throw TrainingError((error as? FileError)?.message ?? "\(error)") }
            defer { lock.release() }
            let outcome = try runCell(cell, recipe: recipe, lock: lock, quiet: quiet, log: log)
            if case .interrupted = outcome { return (ran, skipped, true) }
            let final = try JSONCoding.decoder().decode(FinalReport.self, from: Data(contentsOf: URL(fileURLWithPath: cell.dir + "/final.json")))
            let fitness = final.final?[ev.metric] ?? final.best
            let line = "\(g),\(fitness)," + values.map { "\($0)" }.joined(separator: ",") + ",\(cell.dir)\n"
            do { try AppendFile.append(line, to: csv) } catch { throw TrainingError("\(error)") }
            rows.append(EvolveRow(generation: g, fitness: fitness, values: values, dir: cell.dir))
            log(String(format: "generation %d: fitness %.4f", g, fitness))
            ran += 1
        }
        return (ran, skipped, false)
    }

    // MARK: collect

    public struct Stat: Codable, Equatable, Sendable {
        public var mean: Double
        public var std: Double
    }

    /// One variant and grid point of a collected sweep.
    public struct SummaryRow: Codable, Equatable {
        public var variant: String
        public var grid: String
        public var seeds: Int
        /// The recipes' `eval.metric`: `mean` and `std` are its final-split values, `valBestMean` its best
        /// value on `eval.split`.
        public var metric: String
        public var mean: Double
        public var std: Double
        /// The split of `metrics` and `perClass` (the recipes' `eval.final_split`).
        public var split: String
        /// Every final-split metric by name: mean and sample std over seeds.
        public var metrics: [String: Stat]
        public var valBestMean: Double
        public var secondsMean: Double
        public var weightBits: Int
        public var activationBits: Int
        public var mode: String
        /// Every final-split per-class metric by name: per class, the mean over seeds (classes without
        /// samples, -1, left out of the mean).
        public var perClass: [String: [Double]]
        public var classes: [String]
        /// The cells' run directories (one per seed).
        public var dirs: [String]
    }

    /// Metric names in report order: the task's metrics (`preferred`) in their order, then the others by
    /// name, losses last.
    static func ordered(_ names: Set<String>, preferred: [String]) -> [String] {
        preferred.filter(names.contains) + names.subtracting(preferred).sorted { a, b in
            a.hasPrefix("loss") != b.hasPrefix("loss") ? !a.hasPrefix("loss") : a < b
        }
    }

    /// Merges finished cells into `summary.csv`, `summary.md` and `summary.json`: per variant and grid
    /// point, the mean and sample std over seeds of every final-split metric the cells report, the best
    /// `eval.split` value, seconds per run and per-class means. Returns the rows and the missing cells.
    public func collect() throws -> (rows: [SummaryRow], missing: [String]) {
        var groups: [(String, String, [(Cell, FinalReport, Recipe)])] = []
        var missing: [String] = []
        for cell in cells() {
            guard Sweep.isDone(cell.dir) else { missing.append(cell.label); continue }
            let f = try JSONCoding.decoder().decode(FinalReport.self, from: Data(contentsOf: URL(fileURLWithPath: cell.dir + "/final.json")))
            let r = try recipe(for: cell)
            if let i = groups.firstIndex(where: { $0.0 == cell.variant && $0.1 == cell.gridSuffix }) { groups[i].2.append((cell, f, r)) }
            else { groups.append((cell.variant, cell.gridSuffix, [(cell, f, r)])) }
        }
        func stats(_ v: [Double]) -> Stat {
            let m = v.reduce(0, +) / Double(max(v.count, 1))
            let s = v.count > 1 ? (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count - 1)).squareRoot() : 0
            return Stat(mean: m, std: s)
        }
        let rows: [SummaryRow] = groups.map { variant, grid, items in
            let r = items[0].2
            // Detection cells from before ap50_head/ap50_tail existed get them from their per-class AP50.
            let finals = items.map { item -> TaskMetrics? in
                guard var f = item.1.final else { return nil }
                if r.task == "detection" { HeadTail.add(to: &f, perClass: ["ap50"]) }
                return f
            }
            let names = Set(finals.flatMap { $0?.values.keys.map { $0 } ?? [] })
            var metrics: [String: Stat] = [:]
            for n in names { metrics[n] = stats(finals.map { $0?[n] ?? .nan }) }
            var perClass: [String: [Double]] = [:]
            for (n, first) in items[0].1.final?.perClass ?? [:] {
                perClass[n] = first.indices.map { c in stats(finals.compactMap { f in f?.perClass[n].flatMap { c < $0.count ? $0[c] : nil } }.filter { $0 >= 0 }).mean }
            }
            let headline = stats(finals.map { $0?[r.eval.metric] ?? .nan })
            return SummaryRow(variant: variant, grid: String(grid.dropFirst()), seeds: items.count, metric: r.eval.metric, mean: headline.mean, std: headline.std,
                              split: items[0].1.final?.split ?? r.eval.finalSplit, metrics: metrics,
                              valBestMean: stats(items.map { $0.1.best }).mean, secondsMean: stats(items.map { $0.1.seconds }).mean,
                              weightBits: r.quant.mode == "fp32" ? 32 : r.quant.weight.bits, activationBits: r.quant.mode == "fp32" ? 32 : r.quant.activation.bits,
                              mode: r.quant.mode, perClass: perClass, classes: items[0].1.classes, dirs: items.map(\.0.dir))
        }
        let first = groups.first?.2.first?.2 ?? (try? recipe(for: cells()[0]))
        let names = Sweep.ordered(Set(rows.flatMap { $0.metrics.keys }), preferred: Recipe.options(task: first?.task ?? "classification").evalMetrics)
        let split = rows.first?.split ?? "final", evalSplit = first?.eval.split ?? "val"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        // The sweep folder's own files: each collect replaces them.
        func write(_ text: String, _ name: String) throws {
            do { try AtomicFile.write(text, to: out + "/" + name, replacing: .anything) } catch { throw TrainingError("\(error)") }
        }
        if let text = try? String(contentsOfFile: file, encoding: .utf8) { try write(text, "sweep.yaml") }
        var csv = "variant,grid,mode,weight_bits,activation_bits,seeds," + names.map { "\(split)_\($0)_mean,\(split)_\($0)_std" }.joined(separator: ",")
        csv += (names.isEmpty ? "" : ",") + "\(evalSplit)_best_mean,seconds_mean\n"
        for r in rows {
            let values = names.flatMap { [r.metrics[$0]?.mean ?? .nan, r.metrics[$0]?.std ?? .nan] } + [r.valBestMean]
            csv += "\(r.variant),\(r.grid),\(r.mode),\(r.weightBits),\(r.activationBits),\(r.seeds)," + values.map { String(format: "%.4f", $0) }.joined(separator: ",") + String(format: ",%.1f\n", r.secondsMean)
        }
        try write(csv, "summary.csv")
        func label(_ n: String) -> String { n.replacingOccurrences(of: "_", with: " ") + (n.hasPrefix("loss") ? "" : " (%)") }
        func cell(_ n: String, _ s: Stat?) -> String {
            guard let s else { return "-" }
            return n.hasPrefix("loss") ? String(format: "%.4f ± %.4f", s.mean, s.std) : String(format: "%.2f ± %.2f", 100 * s.mean, 100 * s.std)
        }
        var md = "# Sweep \(name)\n\nBase: `\(file)`; seeds \(seeds.map(String.init).joined(separator: ", ")); \(split)-split metrics of each cell's best.h5, mean ± sample std over seeds.\n\n"
        md += "| variant | grid | mode | W/A bits | seeds | " + names.map(label).joined(separator: " | ") + (names.isEmpty ? "" : " | ") + "best \(evalSplit) (%) | s per run |\n"
        md += "|---|---|---|---|---|" + String(repeating: "---|", count: names.count) + "---|---|\n"
        for r in rows {
            md += "| \(r.variant) | \(r.grid.isEmpty ? "-" : r.grid) | \(r.mode) | \(r.mode == "fp32" ? "32/32" : "\(r.weightBits)/\(r.activationBits)") | \(r.seeds) | "
            md += names.map { cell($0, r.metrics[$0]) + " | " }.joined() + String(format: "%.2f | %.0f |\n", 100 * r.valBestMean, r.secondsMean)
        }
        if !missing.isEmpty { md += "\nNot finished (\(missing.count)): " + missing.joined(separator: ", ") + "\n" }
        try write(md, "summary.md")
        try write(String(decoding: try JSONCoding.encoder().encode(rows), as: UTF8.self), "summary.json")
        return (rows, missing)
    }
}
