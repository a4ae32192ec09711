import ArgumentParser
import Foundation
import Kernels
import Recipes
import Training
import Files
import UserPaths
import DataParallel

/// Prints a user error (recipe, data, checkpoint, run directory, a path that cannot be read or
/// written) and exits with status 1.
func userError(_ e: Error) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(PathError.translating(e))\n".utf8))
    return ExitCode(1)
}

func guarded<T>(_ body: () throws -> T) throws -> T {
    do { return try body() }
    catch let e as ExitCode { throw e }
    catch let e as ValidationError { throw e }
    catch { throw userError(error) }   // recipe, data, checkpoint and run-directory errors carry their own file and key
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train from a recipe into a run directory (runs/<name>/<n>).",
        discussion: """
        Writes recipe.resolved.yaml, metrics.jsonl, train.log, checkpoints/last.h5 and best.h5, and final.json when done.
        Ctrl-C (SIGINT) or SIGTERM saves checkpoints/last.h5 and exits; rerun with --resume to continue with identical results.
        One process owns a run directory at a time (a lock on DIR/.lock): a second qat train into it is refused with the owner's pid.
        --resume on a directory whose run stopped before its first checkpoint restarts it from step 0 (same recipe).
        """)

    @Argument(help: "Recipe file (YAML).")
    var recipe: String
    @Option(name: .customLong("set"), help: "Override a recipe key, e.g. --set train.epochs=5 (repeatable).")
    var sets: [String] = []
    @Option(help: "Run directory (default: runs/<name>/<next number>).")
    var runDir: String?
    @Flag(help: "Continue the run in --run-dir (default: the latest runs/<name>/<n>) from checkpoints/last.h5.")
    var resume = false
    @Option(help: "Parent folder of run directories when --run-dir is not given.")
    var runsRoot = "runs"

    func run() throws {
        // Started by mpirun: one rank of a data-parallel job. An error on any rank ends every rank
        // (MPI_Abort) with a message naming it, instead of leaving the others waiting.
        let world = try guarded { try MPIWorld.startIfLaunched() }
        func ranked<T>(_ body: () throws -> T) throws -> T {
            guard let world else { return try guarded(body) }
            do { return try body() } catch { world.abort(message: "\(PathError.translating(error))") }
        }
        defer { world?.finalize() }
        let r = try ranked { try Recipe.load(path: recipe, overrides: sets) }
        StopSignal.install()
        let runObj = try ranked { try TrainingRun(recipe: r, runDir: runDir, resume: resume, runsRoot: runsRoot, world: world) }
        let outcome = try ranked { try runObj.run() }
        guard runObj.writes else {
            if case .interrupted(_, let sig) = outcome { throw ExitCode(sig == SIGTERM ? 143 : 130) }
            return
        }
        switch outcome {
        case .finished(let f):
            print(String(format: "done: %@ in %.1f s; best %@ %.2f%% at step %d; results in %@", r.name, f.seconds, f.metric, 100 * f.best, f.bestStep, runObj.dir))
        case .interrupted(let step, let sig):
            let setArgs = sets.map { " --set '\($0)'" }.joined()
            let launcher = world.map { "mpirun -np \($0.size) " } ?? ""
            print("stopped at step \(step) (signal \(sig)); checkpoint saved. Resume with:\n  \(launcher)qat train \(recipe)\(setArgs) --run-dir \(runObj.dir) --resume")
            throw ExitCode(sig == SIGTERM ? 143 : 130)
        case .alreadyFinished(let f):
            print(String(format: "%@ is already finished (final.json): best %@ %.2f%% at step %d; nothing was run or written. "
                         + "Start a new run without --resume, or evaluate it with: qat eval %@/checkpoints/best.h5", runObj.dir, f.metric, 100 * f.best, f.bestStep, runObj.dir))
        }
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluate a checkpoint written by qat train (the model comes from the recipe stored in it).")

    @Argument(help: "Checkpoint (HDF5), e.g. runs/quickstart/1/checkpoints/best.h5.")
    var checkpoint: String
    @Option(help: "A data folder to evaluate on instead of the recipe's (data.path): classification, a folder with train.h5, val.h5, test.h5; detection, a COCO folder (or a DOTA one for a dota recipe).")
    var data: String?
    @Option(help: "Split: train, val or test.")
    var split = "test"
    @Option(name: .customLong("set"), help: "Override a key of the stored recipe (e.g. eval.batch=64).")
    var sets: [String] = []
    @Option(help: "fp32: evaluate the float weights of a quantized checkpoint.")
    var quant: String?
    @Option(help: "Where to write the metrics JSON (default: <checkpoint>.<split>[.fp32|.int8].metrics.json beside it); never a checkpoint, recipe or metrics file.")
    var out: String?
    @Option(help: "int8: run the integer engine compiled from the quantized checkpoint (classifiers, RetinaNet) instead of the fake-quant model.")
    var engine: String?
    @Flag(help: "With --engine int8: also run the fake-quant model and report how many activation codes equal its codes.")
    var compare = false

    func run() throws {
        guard ["train", "val", "test"].contains(split) else { throw ValidationError("--split must be train, val or test, got \(split)") }
        if let quant, quant != "fp32" { throw ValidationError("--quant takes fp32 (evaluate float weights), got \(quant)") }
        if let engine, engine != "int8" { throw ValidationError("--engine takes int8 (the integer engine); leave it out for the fake-quant model, got \(engine)") }
        if compare && engine == nil { throw ValidationError("--compare compares the int8 engine with the fake-quant model: add --engine int8") }
        if engine != nil && quant != nil { throw ValidationError("--engine int8 runs the quantized model; it cannot be combined with --quant fp32") }
        let fp32 = quant == "fp32"
        let base = checkpoint.hasSuffix(".h5") ? String(checkpoint.dropLast(3)) : checkpoint
        let prefix = "\(base).\(split)\(fp32 ? ".fp32" : "")\(engine != nil ? ".int8" : "")"
        let path = out ?? "\(prefix).metrics.json"
        // Before the evaluation, so a refused --out costs nothing (and never replaces the checkpoint).
        try guarded { try ProtectedFiles.check(output: path) }
        let r = try guarded { try CheckpointEvaluation.run(checkpoint: checkpoint, data: data, split: split, overrides: sets, fp32: fp32, filesPrefix: prefix,
                                                                engine: engine != nil ? .int8(compare: compare) : .model) }
        print(CheckpointEvaluation.table(r, checkpoint: checkpoint), terminator: "")
        for f in r.files { print("wrote \(f)") }
        try guarded { try AtomicFile.write(try JSONCoding.encoder().encode(r.metrics), to: path) }
        print("metrics: \(path)")
    }
}

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep", abstract: "Run an ablation sweep (grid or variants x seeds, or evolve); cells already done are skipped.",
        discussion: """
        A failed cell is recorded in its failed.json; a cell that needs it (init_from) fails too instead of waiting, and the command exits 1.
        So does a cell waiting for a shard that ran once but is no longer running (killed; its lock OUT/.shard-I-of-N.lock free for 60 s).
        A cell another process is running (its lock) is skipped.
        Under mpirun -np N, every cell trains data-parallel over the N ranks (rank 0 runs the sweep and writes everything); a failing cell is recorded in its failed.json and ends the job.
        """)

    @Argument(help: "Sweep file (YAML).")
    var sweep: String
    @Option(help: "Run only shard I of N (1 <= I <= N): cells I, I+N, I+2N, ... (e.g. a cluster job array).")
    var shard: String?
    @Flag(help: "Merge finished cells into summary.csv, summary.md and summary.json instead of running.")
    var collect = false
    @Flag(help: "Print each cell's training progress.")
    var verbose = false
    @Option(help: "Run only the cells of dependency stage K (0: cells starting from no other cell; what --emit slurm's arrays run).")
    var stage: Int?
    @Option(help: "Print a submission script for a scheduler instead of running: slurm.")
    var emit: String?
    @Option(help: "--emit slurm: partition of every job.")
    var partition: String?
    @Option(help: "--emit slurm: time limit of each array task (Slurm's format, e.g. 2:00:00).")
    var time: String?
    @Option(help: "--emit slurm: CPUs per array task (also its QAT_NUM_THREADS).")
    var cpus = 1
    @Option(help: "--emit slurm: at most this many array tasks per stage (default: one per cell).")
    var tasks: Int?

    func validate() throws {
        if let e = emit, e != "slurm" { throw ValidationError("--emit supports slurm, got '\(e)'") }
        if emit != nil && (collect || shard != nil || stage != nil) { throw ValidationError("--emit prints a script; it does not go with --collect, --shard or --stage") }
        if emit == nil && (partition != nil || time != nil || tasks != nil) { throw ValidationError("--partition, --time and --tasks go with --emit slurm") }
        if let k = stage, k < 0 { throw ValidationError("--stage must be 0 or more, got \(k)") }
    }

    func run() throws {
        // Started by mpirun: every cell is a data-parallel run over all ranks. Rank 0 reads the sweep and
        // runs its loop; the other ranks train what it sends. An error on any rank ends every rank.
        if emit == nil && !collect, let world = try guarded({ try MPIWorld.startIfLaunched() }) {
            defer { world.finalize() }
            StopSignal.install()
            if world.rank != 0 {
                do { _ = try Sweep.follow(world: world) } catch { world.abort(message: "\(PathError.translating(error))") }
                return
            }
            // Every way out of rank 0's sweep that does not abort tells the other ranks once that it ended.
            var exit: ExitCode? = nil
            do { try runSweep(world: world) } catch let e as ExitCode { exit = e } catch {
                world.abort(message: "\(PathError.translating(error))")
            }
            Sweep.endFollowers(world)
            if let exit { throw exit }
            return
        }
        try runSweep(world: nil)
    }

    func runSweep(world: MPIWorld?) throws {
        var s = try guarded { try Sweep.load(sweep) }
        s.world = world
        if emit != nil {
            var o = SlurmEmitter.Options()
            o.partition = partition; o.time = time; o.cpus = cpus; o.tasks = tasks
            let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]).path
            print(try guarded { try SlurmEmitter.script(sweep: s, sweepPath: sweep, qat: exe, workdir: FileManager.default.currentDirectoryPath, options: o) },
                  terminator: "")
            return
        }
        s.stage = stage
        if collect {
            let (rows, missing) = try guarded { try s.collect() }
            print("collected \(rows.count) rows from \(s.out) (\(missing.count) cells not finished): \(s.out)/summary.csv, summary.md, summary.json")
            return
        }
        var sh: (Int, Int)? = nil
        if let shard { sh = try guarded { try Sweep.parseShard(shard) } }
        StopSignal.install()
        let start = Date()
        let n = s.evolve != nil ? s.evolve!.generations : try guarded { try s.cells(stage: stage, shard: sh) }.count
        print("sweep \(s.name): \(n) \(s.evolve != nil ? "generations" : "cells")\(sh.map { " (shard \($0.0)/\($0.1))" } ?? "") -> \(s.out)")
        let r = try guarded { try s.run(shard: sh, quiet: !verbose) { print($0); fflush(nil) } }
        print(String(format: "sweep %@: ran %d, skipped %d (done before, or run by another process) in %.1f s", s.name, r.ran, r.skipped, Date().timeIntervalSince(start)))
        if r.interrupted {
            print("interrupted; rerun the same command to continue (finished cells are skipped, the interrupted one resumes)")
            throw ExitCode(130)
        }
        if !r.failed.isEmpty {
            FileHandle.standardError.write(Data("error: \(r.failed.count) cell(s) failed: \(r.failed.joined(separator: ", ")) (messages above; rerunning the sweep retries them)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Export checkpoints (weights), runs and sweeps (notebooks).",
                                                    subcommands: [WeightsCommand.self, NotebookCommand.self], defaultSubcommand: WeightsCommand.self)
}

/// Every format of `qat export CKPT --format F`.
enum ExportFormat: String, CaseIterable, ExpressibleByArgument {
    case safetensors, weights, onnx, onnxQDQ = "onnx-qdq"
}

struct WeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "A checkpoint as weights or an ONNX graph (also `qat export CKPT --format ...`).",
        discussion: """
        safetensors: float parameters and buffers under PyTorch's names (running_mean, running_var; paths equal torchvision's), \
        loadable into the torchvision model of the same architecture; quantizer state is left out.
        weights: our HDF5 checkpoint without optimizer state (recipe and quantizer state kept: qat eval works on it).
        onnx: the float model (opset 17). onnx-qdq: the fake-quant model, quantizers as QuantizeLinear/DequantizeLinear \
        (weights as int8 codes, activations below 8 bits clipped to their grid). Classification checkpoints.
        --reference DIR (ONNX formats) also writes the first --images test images and our outputs for scripts/onnx/check.py.
        """)

    @Argument(help: "Checkpoint (.h5).")
    var checkpoint: String
    @Option(help: "safetensors, weights, onnx or onnx-qdq.")
    var format: ExportFormat
    @Option(help: "Output file: NAME.safetensors, NAME.h5 or NAME.onnx (never an existing checkpoint, recipe or metrics file).")
    var out: String
    @Option(help: "ONNX formats: a folder for reference inputs and our outputs (input.f32, output.f32, reference.json).")
    var reference: String?
    @Option(help: "Reference images (the first N of the test split).")
    var images = 256

    func validate() throws {
        if reference != nil && (format == .safetensors || format == .weights) {
            throw ValidationError("--reference goes with --format onnx or onnx-qdq")
        }
    }

    func run() throws {
        print(try guarded {
            switch format {
            case .safetensors: return try WeightsExport.export(checkpoint: checkpoint, format: .safetensors, out: out)
            case .weights: return try WeightsExport.export(checkpoint: checkpoint, format: .weights, out: out)
            case .onnx, .onnxQDQ:
                return try ModelExport.export(checkpoint: checkpoint, format: format == .onnx ? .onnx : .onnxQDQ, out: out,
                                              reference: reference, images: images)
            }
        })
    }
}

struct NotebookCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notebook", abstract: "A Jupyter notebook (nbformat 4) of a run directory or a collected sweep, plots rendered as SVG.")

    @Argument(help: "Run directory or sweep folder (after qat sweep --collect).")
    var dir: String
    @Option(help: "Output notebook, e.g. notebooks-export/NAME.ipynb (never a checkpoint, recipe or metrics file).")
    var out: String
    @Flag(help: "Also write a static HTML page with the same plots (NAME.html).")
    var html = false

    func run() throws {
        let written = try guarded { try NotebookExport.export(dir: dir, out: out, html: html) }
        print("wrote " + written.joined(separator: ", "))
    }
}
