import Foundation

/// A sweep's cells by dependency depth, for schedulers that order jobs themselves (Slurm): stage 0
/// holds the cells that start from no other cell's checkpoint, stage k + 1 those whose `init_from`
/// (model or quant) names a cell of stage k at most. Cells of one stage never depend on each other,
/// so a stage can run as one job array of any width once the stage before it has ended.
extension Sweep {
    /// Stage of each cell, by `Cell.index`. Throws a recipe error of a cell (as running it would).
    public func stages() throws -> [Int] {
        let all = cells()
        var stage = [Int?](repeating: nil, count: all.count)
        var producers: [[Int]] = []
        for cell in all {
            let r = try recipe(for: cell)
            producers.append([r.model.initFrom, r.quant.initFrom].compactMap { $0 }.compactMap { dep in
                all.first(where: { dep.hasPrefix($0.dir + "/") })?.index
            }.filter { $0 != cell.index })
        }
        func depth(_ i: Int, _ visiting: Set<Int>) throws -> Int {
            if let s = stage[i] { return s }
            guard !visiting.contains(i) else {
                throw TrainingError("sweep \(name): cells \(visiting.sorted().map { all[$0].label }.joined(separator: ", ")) start from each other's checkpoints (a cycle)")
            }
            let d = try producers[i].map { try depth($0, visiting.union([i])) + 1 }.max() ?? 0
            stage[i] = d
            return d
        }
        return try all.indices.map { try depth($0, []) }
    }

    /// The cells of `stage` (nil: all), then shard I of N among them (cells I, I+N, ... of that list).
    public func cells(stage: Int?, shard: (Int, Int)?) throws -> [Cell] {
        guard let stage else { return cells(shard: shard) }
        let s = try stages()
        let inStage = cells().filter { s[$0.index] == stage }
        guard let (i, n) = shard else { return inStage }
        return inStage.enumerated().filter { $0.offset % n == i - 1 }.map(\.element)
    }
}

/// `qat sweep SWEEP --emit slurm`: a bash script that submits the sweep to Slurm, one job array per
/// stage (`Sweep.stages`), each depending on the previous one (`afterany`: a failed cell is recorded in
/// its failed.json, and the cells that need it fail at once instead of waiting), then a `--collect` job
/// depending on the last. Array task t of stage k runs `qat sweep SWEEP --stage k --shard t/N_k` with
/// `QAT_NUM_THREADS` = the CPUs per task. Run it with bash on a node that can reach `sbatch`.
public enum SlurmEmitter {
    public struct Options: Sendable {
        public var partition: String?
        public var time: String?
        public var cpus = 1
        /// At most this many array tasks per stage (nil: one per cell).
        public var tasks: Int?
        public init() {}
    }

    public static func script(sweep s: Sweep, sweepPath: String, qat: String, workdir: String, options o: Options) throws -> String {
        guard o.cpus >= 1 else { throw TrainingError("--cpus must be at least 1, got \(o.cpus)") }
        if let t = o.tasks, t < 1 { throw TrainingError("--tasks must be at least 1, got \(t)") }
        guard s.evolve == nil else { throw TrainingError("sweep \(s.name): an evolve sweep runs generation after generation in one process; --emit slurm covers grid and variant sweeps") }
        let stages = try s.stages()
        let count = (stages.max() ?? -1) + 1
        func q(_ v: String) -> String { "'" + v.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        var common = ["--cpus-per-task=\(o.cpus)"]
        if let p = o.partition { common.append("--partition=\(q(p))") }
        if let t = o.time { common.append("--time=\(q(t))") }
        var lines = [
            "#!/usr/bin/env bash",
            "# Slurm submission of sweep \(s.name) (\(stages.count) cells in \(count) stage\(count == 1 ? "" : "s")), written by",
            "# `qat sweep \(sweepPath) --emit slurm`. Run it with bash where sbatch works: each stage is a job array",
            "# starting after the previous one ended; a final job collects the summary. Finished cells are skipped,",
            "# so submitting again continues the sweep. Logs: \(s.out)/slurm/.",
            "set -euo pipefail",
            "cd \(q(workdir))",
            "QAT=\(q(qat))",
            "SWEEP=\(q(sweepPath))",
            "mkdir -p \(q(s.out + "/slurm"))",
            "dep=()",
        ]
        for k in 0..<count {
            let n = stages.filter { $0 == k }.count
            let tasks = min(n, o.tasks ?? n)
            let run = "QAT_NUM_THREADS=\(o.cpus) \\\"$QAT\\\" sweep \\\"$SWEEP\\\" --stage \(k) --shard \\${SLURM_ARRAY_TASK_ID}/\(tasks)"
            lines.append("# stage \(k): \(n) cell\(n == 1 ? "" : "s") in \(tasks) task\(tasks == 1 ? "" : "s")")
            lines.append("jid=$(sbatch --parsable --job-name=\(q(s.name + "-stage\(k)")) --array=1-\(tasks) \(common.joined(separator: " ")) \"${dep[@]}\" "
                         + "--output=\(q(s.out + "/slurm/stage\(k)-%a.log")) --wrap=\"\(run)\")")
            lines.append("echo \"stage \(k): job array $jid (\(tasks) tasks)\"")
            lines.append("dep=(--dependency=afterany:${jid%%;*})")
        }
        lines.append("jid=$(sbatch --parsable --job-name=\(q(s.name + "-collect")) --cpus-per-task=1\(o.partition.map { " --partition=\(q($0))" } ?? "") \"${dep[@]}\" "
                     + "--output=\(q(s.out + "/slurm/collect.log")) --wrap=\"\\\"$QAT\\\" sweep \\\"$SWEEP\\\" --collect\")")
        lines.append("echo \"collect: job $jid -> \(s.out)/summary.csv\"")
        return lines.joined(separator: "\n") + "\n"
    }
}
