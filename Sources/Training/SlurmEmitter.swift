import Foundation

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
