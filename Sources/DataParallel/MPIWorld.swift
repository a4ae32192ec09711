import Foundation
import CMPI
import Autodiff

/// An error of the data-parallel layer that the user can fix (how the job was launched, the recipe).
public struct DataParallelError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The processes of a data-parallel job started by Open MPI's `mpirun`: rank, size and the collectives
/// the trainer needs. Open MPI is loaded at run time (`CMPI`), and only when the process was started by
/// `mpirun`: a single-process `qat` needs neither the launcher nor the library.
///
/// Every collective is non-blocking underneath and completed by polling with a deadline (`timeout`): a
/// rank that stops answering (hung, or stuck in a step the others left) makes the waiting ranks print
/// which collective timed out and abort the whole job (`MPI_Abort`) instead of hanging. A rank that
/// fails with an error calls `abort(message:)`, which names it; a rank that dies is noticed by `mpirun`,
/// which ends the others.
public final class MPIWorld: CrossProcessSum {
    public let rank: Int
    public let size: Int
    /// Ranks on this host (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE): the default thread count divides the
    /// cores among them.
    public let localSize: Int
    /// Seconds a collective may wait for the other ranks before the job is aborted.
    public var timeout: Double = 300

    private init(rank: Int, size: Int, localSize: Int) { self.rank = rank; self.size = size; self.localSize = localSize }

    /// The environment variable by which `mpirun` (Open MPI's, or a PMIx launcher such as Slurm's srun)
    /// announces a job, with its value; nil for a process started any other way.
    public static func launcher(_ env: [String: String] = ProcessInfo.processInfo.environment) -> (String, String)? {
        for k in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"] { if let v = env[k] { return (k, v) } }
        return nil
    }

    /// The job this process belongs to when `mpirun` started it (MPI initialised, errors returned to us),
    /// else nil (a single process: MPI is never loaded).
    public static func startIfLaunched() throws -> MPIWorld? {
        guard let (key, value) = launcher() else { return nil }
        var err = [CChar](repeating: 0, count: 512)
        guard cmpi_load(&err, Int32(err.count)) == 0 else {
            throw DataParallelError("this process was started by an MPI launcher (\(key)=\(value)) but Open MPI cannot be used: \(MPIWorld.text(err)). "
                                    + "Install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) on every host, or run qat without mpirun for one process.")
        }
        var r: Int32 = 0, s: Int32 = 0
        let rc = cmpi_init(&r, &s)
        guard rc == 0 else { throw DataParallelError("MPI_Init failed: \(MPIWorld.describe(rc))") }
        let local = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? Int(s)
        return MPIWorld(rank: Int(r), size: Int(s), localSize: max(1, local))
    }

    static func describe(_ rc: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 512)
        cmpi_error_string(rc, &buf, Int32(buf.count))
        return text(buf)
    }

    /// A NUL-terminated C buffer as a String.
    static func text(_ buf: [CChar]) -> String {
        String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Prints `message` prefixed with this rank to stderr and ends every rank of the job.
    public func abort(message: String, code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("error: rank \(rank) of \(size): \(message)\n".utf8))
        cmpi_abort(code)
        exit(code)
    }

    public func finalize() { _ = cmpi_finalize() }

    // MARK: completion

    /// An outstanding collective.
    public struct Request {
        var handle: UnsafeMutableRawPointer?
        let what: String
        var done = false
    }

    func started(_ rc: Int32, _ handle: UnsafeMutableRawPointer?, _ what: String) -> Request {
        if rc != 0 { abort(message: "\(what): \(MPIWorld.describe(rc))") }
        return Request(handle: handle, what: what)
    }

    /// Advances `r` (MPI progresses non-blocking collectives only inside MPI calls); true once complete.
    @discardableResult
    public func test(_ r: inout Request) -> Bool {
        if r.done { return true }
        var flag: Int32 = 0
        let rc = cmpi_test(&r.handle, &flag)
        if rc != 0 { abort(message: "\(r.what): \(MPIWorld.describe(rc))") }
        r.done = flag != 0
        return r.done
    }

    /// Polls `r` to completion; after `timeout` seconds without it, aborts the job naming the collective.
    /// `idle`: sleep between polls (for ranks that only wait, so they leave the cores to the others).
    /// `deadline` false: no timeout (waits for rank 0's own work, whose failure ends the job anyway).
    public func wait(_ r: inout Request, idle: Bool = false, deadline checked: Bool = true) {
        let deadline = checked ? Date().addingTimeInterval(timeout) : .distantFuture
        var polls = 0
        while !test(&r) {
            polls += 1
            if idle { usleep(2000) } else if polls % 64 == 0 { sched_yield() }
            if (idle || polls % 4096 == 0) && Date() > deadline {
                abort(message: "\(r.what): no answer from the other ranks for \(Int(timeout)) s (a rank hung or left the training loop); aborting the job")
            }
        }
    }

    // MARK: collectives

    public func iallreduceSum(_ p: UnsafeMutablePointer<Float>, count: Int, what: String) -> Request {
        precondition(count <= Int(Int32.max))
        var h: UnsafeMutableRawPointer? = nil
        return started(cmpi_iallreduce(p, Int32(count), 0, 0, 0, &h), h, what)
    }

    /// Sums (or maxima) of doubles over all ranks, in place.
    public func allreduce(_ v: inout [Double], max: Bool = false, channel: Int32 = 0, what: String) {
        v.withUnsafeMutableBufferPointer { allreduce($0.baseAddress!, count: $0.count, max: max, channel: channel, what: what) }
    }

    func allreduce(_ p: UnsafeMutablePointer<Double>, count: Int, max: Bool = false, channel: Int32 = 0, what: String) {
        var h: UnsafeMutableRawPointer? = nil
        var r = started(cmpi_iallreduce(p, Int32(count), 1, max ? 1 : 0, channel, &h), h, what)
        wait(&r)
    }

    /// Synchronised BatchNorm's sums (their own communicator: they run inside backward while gradient
    /// buckets are outstanding).
    public func sumInPlace(_ values: UnsafeMutablePointer<Double>, count: Int) {
        allreduce(values, count: count, channel: 1, what: "synchronised BatchNorm statistics")
    }

    /// Every rank's value, in rank order.
    public func allgather(_ value: UInt64, what: String) -> [UInt64] {
        var out = [UInt64](repeating: 0, count: size)
        var v = value
        withUnsafePointer(to: &v) { vp in
            out.withUnsafeMutableBufferPointer { op in
                var h: UnsafeMutableRawPointer? = nil
                var r = started(cmpi_iallgather_u64(vp, op.baseAddress!, &h), h, what)
                wait(&r)
            }
        }
        return out
    }

    /// Rank 0's bytes on every rank (the others pass nil and receive them). `patient`: the others wait
    /// without a deadline, sleeping (rank 0 may be evaluating or writing for a long time first).
    public func broadcast(_ bytes: [UInt8]?, what: String, patient: Bool = false) -> [UInt8] {
        var n = UInt64(bytes?.count ?? 0)
        withUnsafeMutableBytes(of: &n) { p in
            var h: UnsafeMutableRawPointer? = nil
            var r = started(cmpi_ibcast(p.baseAddress!, 8, 0, &h), h, what + " (size)")
            wait(&r, idle: patient && rank != 0, deadline: !patient)
        }
        var buf = rank == 0 ? bytes! : [UInt8](repeating: 0, count: Int(n))
        buf.withUnsafeMutableBytes { p in
            var offset = 0
            while offset < p.count {
                let chunk = min(p.count - offset, 1 << 30)
                var h: UnsafeMutableRawPointer? = nil
                var r = started(cmpi_ibcast(p.baseAddress! + offset, Int32(chunk), 0, &h), h, what)
                wait(&r, idle: patient && rank != 0, deadline: !patient)
                offset += chunk
            }
        }
        return buf
    }

    /// Waits for every rank, sleeping between polls and without a deadline: ranks that wait for rank 0
    /// (evaluating, writing a checkpoint) leave it the cores.
    /// `idle` false: spin (a benchmark's start line, where a sleeping rank would arrive late).
    public func barrier(what: String, idle: Bool = true) {
        var h: UnsafeMutableRawPointer? = nil
        var r = started(cmpi_ibarrier(&h), h, what)
        wait(&r, idle: idle, deadline: !idle)
    }
}
