import ArgumentParser
import Foundation
import DataParallel

/// `mpirun -np N qat bench allreduce`: in-place float-sum allreduce over the job's ranks, as DDP's
/// gradient buckets do it, timed per message size (the median over --reps after 3 warm-ups). Reports
/// the algorithm bandwidth (bytes / time) and the bus bandwidth (2 (N-1)/N x bytes / time, what a ring
/// moves per link: nccl-tests' busbw), the figure a scaling model compares with the link speed.
struct AllreduceBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Time MPI allreduce of gradient-sized buffers over the ranks of an mpirun job (algbw, busbw).")

    @Option(help: "Message sizes in MiB, comma-separated.")
    var mib = "0.25,1,4,16"
    @Option(help: "Timed repetitions per size (median reported, after 3 warm-up runs).")
    var reps: Int = 20
    @Flag(help: "Print the report as JSON instead of text.")
    var json = false

    struct Row: Codable { var mib: Double; var seconds: Double; var algbwGBps: Double; var busbwGBps: Double }
    struct Report: Codable { var ranks: Int; var rows: [Row] }

    func run() throws {
        try FlagCheck.reps(reps)
        let sizes = mib.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 != nil && $0! > 0 && $0! <= 1024 }) else {
            throw ValidationError("--mib: expected sizes in MiB in (0, 1024], comma-separated (e.g. 0.25,1,4); got \(mib)")
        }
        guard let world = try guarded({ try MPIWorld.startIfLaunched() }) else {
            throw ValidationError("qat bench allreduce measures MPI between ranks: launch it with mpirun, e.g. mpirun -np 2 qat bench allreduce")
        }
        defer { world.finalize() }
        var rows: [Row] = []
        for s in sizes.map({ $0! }) {
            let n = max(1, Int(s * 1_048_576 / 4))
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: n)
            defer { buf.deallocate() }
            buf.initialize(repeating: 1, count: n)
            var times: [Double] = []
            for i in 0..<(reps + 3) {
                world.barrier(what: "allreduce benchmark", idle: false)
                let t0 = DispatchTime.now().uptimeNanoseconds
                var r = world.iallreduceSum(buf, count: n, what: "allreduce benchmark")
                world.wait(&r)
                var t = [Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9]
                world.allreduce(&t, max: true, what: "allreduce benchmark timing")   // the slowest rank's time
                if i >= 3 { times.append(t[0]) }
            }
            let med = times.sorted()[times.count / 2], bytes = Double(n * 4), ranks = Double(world.size)
            rows.append(Row(mib: s, seconds: med, algbwGBps: bytes / med / 1e9, busbwGBps: 2 * (ranks - 1) / ranks * bytes / med / 1e9))
        }
        guard world.rank == 0 else { return }
        let report = Report(ranks: world.size, rows: rows)
        try printBench(report, json: json) { r in
            (["allreduce over \(r.ranks) ranks (float sum, in place; median of \(reps))", "     MiB      time   algbw GB/s   busbw GB/s"]
             + r.rows.map { String(format: "%8.2f %8.3f ms %10.3f %12.3f", $0.mib, 1000 * $0.seconds, $0.algbwGBps, $0.busbwGBps) }).joined(separator: "\n")
        }
    }
}
