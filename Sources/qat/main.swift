import ArgumentParser
import Foundation
import Kernels
import Bench

@main
struct QAT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qat",
        abstract: "Quantization-aware training research framework (Swift, CPU).",
        discussion: "Threads: set QAT_NUM_THREADS (default: all cores); OpenBLAS uses the same count.",
        subcommands: [BenchCommand.self])
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Time the framework's reference workloads (use a release build).",
        subcommands: [KernelsBench.self])
}

struct KernelsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Conv, depthwise, 1x1 and elementwise kernels: ms, GFLOP/s, ratio to cblas_sgemm, GB/s.")

    @Option(help: "Timed repetitions per workload (median is reported, after 3 warm-up runs).")
    var reps: Int = 20

    @Option(help: "Threads for kernels and OpenBLAS (overrides QAT_NUM_THREADS).")
    var threads: Int?

    @Flag(help: "Divide the batch of every workload by 8 (a smoke test, not a measurement).")
    var quick = false

    @Flag(help: "Print the report as JSON instead of a table.")
    var json = false

    func validate() throws {
        guard reps >= 1 else { throw ValidationError("--reps must be at least 1, got \(reps)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    func run() throws {
        if let threads { Parallel.setThreads(threads) }
        let report = KernelBench.run(.init(reps: reps, batchDivisor: quick ? 8 : 1))
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(report), as: UTF8.self))
        } else {
            print(KernelBench.format(report))
        }
    }
}
