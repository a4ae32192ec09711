import Foundation
import Kernels
import Checkpoint
import Recipes
import DataParallel

/// How a `TrainingRun` becomes one rank of a data-parallel job (`mpirun -np N qat train RECIPE`):
/// checks at start, the cores per rank, and rank 0's starting state sent to the others.
///
/// The recipe's `train.batch` is the global batch; rank r trains on elements [r B/N, (r+1) B/N) of every
/// global batch of the single-process order, gradients are averaged over ranks (`GradientBuckets`), so
/// N ranks take the steps one process takes, up to the order of floating-point sums. Rank 0 alone
/// evaluates and writes the run directory; the others wait for it at each epoch's end.
enum DataParallelRun {
    /// Every rank must run the same resolved recipe with the same binary, and the global batch must
    /// split evenly over the ranks.
    static func check(_ recipe: Recipe, world: MPIWorld) throws {
        world.timeout = recipe.train.distributed.timeoutSeconds
        let b = recipe.train.batch, n = world.size
        let recipes = world.allgather(Fingerprint.of(recipe.resolvedYAML()), what: "recipe fingerprints")
        if let r = recipes.firstIndex(where: { $0 != recipes[0] }) {
            throw TrainingError("rank \(r) resolved a different recipe than rank 0 (fingerprints \(String(recipes[r], radix: 16)) and \(String(recipes[0], radix: 16))): "
                                + "every rank must get the same recipe file and --set overrides (is the file different on another host?)")
        }
        let binaries = world.allgather(Fingerprint.executable(), what: "binary fingerprints")
        if let r = binaries.firstIndex(where: { $0 != binaries[0] }) {
            throw TrainingError("rank \(r) runs a different qat binary than rank 0 (fingerprints \(String(binaries[r], radix: 16)) and \(String(binaries[0], radix: 16))): "
                                + "install the same build on every host")
        }
        guard n <= b else {
            throw TrainingError("train.batch: mpirun started \(n) ranks but the global batch is \(b) samples; every rank needs a slice of each batch: "
                                + "use at most \(b) ranks or raise train.batch to a multiple of \(n)")
        }
        guard b % n == 0 else {
            let lower = b / n * n, upper = lower + n
            throw TrainingError("train.batch \(b) does not split evenly over \(n) ranks (each rank takes an equal slice of every global batch, "
                                + "so that the averaged gradient is the global batch's): set train.batch to \(lower > 0 ? "\(lower) or " : "")\(upper)")
        }
    }

    /// Without `threads` in the recipe or QAT_NUM_THREADS, the cores of a host are divided among its ranks.
    static func shareCores(_ world: MPIWorld) {
        guard ProcessInfo.processInfo.environment["QAT_NUM_THREADS"] == nil else { return }
        Parallel.setThreads(max(1, ProcessInfo.processInfo.activeProcessorCount / world.localSize))
    }

    struct Header: Codable {
        var quantized: Bool
        var ptqStructure: Bool
        var finished: FinalReport?
    }

    struct Start {
        var quantized: Bool
        var ptqStructure: Bool
        var finished: FinalReport?
        var checkpoint: Checkpoint?
    }

    /// Rank 0: the model's structure and, unless the run had finished, its whole state as a checkpoint
    /// (weights with calibrated quantizers, optimizer, EMA, step), so every rank starts from the same bits
    /// whether the run is new, resumed or initialised from another checkpoint.
    static func sendStart(_ world: MPIWorld, run: TrainingRun, ptqStructure: Bool) throws {
        let header = Header(quantized: run.handle != nil, ptqStructure: ptqStructure, finished: run.alreadyFinished)
        _ = world.broadcast(Array(try JSONCoding.encoder(pretty: false).encode(header)), what: "starting state (header)", patient: true)
        guard run.alreadyFinished == nil else { return }
        let tmp = FileManager.default.temporaryDirectory.path + "/qat-rank0-\(getpid())-\(UUID().uuidString).h5"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        do { try run.snapshot().save(to: tmp) } catch { throw TrainingError("data-parallel start: writing the starting state to \(tmp): \(error)") }
        guard let d = FileManager.default.contents(atPath: tmp) else { throw TrainingError("data-parallel start: cannot read back \(tmp)") }
        _ = world.broadcast(Array(d), what: "starting state", patient: true)
    }

    /// Ranks after the first: what `sendStart` sent.
    static func receiveStart(_ world: MPIWorld) throws -> Start {
        let h = try JSONCoding.decoder().decode(Header.self, from: Data(world.broadcast(nil, what: "starting state (header)", patient: true)))
        var start = Start(quantized: h.quantized, ptqStructure: h.ptqStructure, finished: h.finished)
        guard h.finished == nil else { return start }
        let bytes = world.broadcast(nil, what: "starting state", patient: true)
        let tmp = FileManager.default.temporaryDirectory.path + "/qat-rank\(world.rank)-\(getpid())-\(UUID().uuidString).h5"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else { throw TrainingError("data-parallel start: cannot write \(tmp)") }
        do { start.checkpoint = try Checkpoint.load(from: tmp) } catch { throw TrainingError("data-parallel start: rank 0's starting state: \(error)") }
        return start
    }
}
