import ArgumentParser
import Foundation
import Kernels
import Bench
import NN
import Checkpoint
import Datasets
import Recipes
import Training
import Files
import UserPaths
import HDF5

@main
struct QAT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qat",
        abstract: "Quantization-aware training research framework (Swift, CPU).",
        discussion: "Threads: set QAT_NUM_THREADS (default: all cores); GEMMs are split over them (OpenBLAS runs single-threaded inside).",
        subcommands: [TrainCommand.self, EvalCommand.self, SweepCommand.self, ExportCommand.self, BenchCommand.self, ModelCommand.self, QuantCommand.self, PruneCommand.self, DataCommand.self, Detect.self, PredictCommand.self])

    /// Chooses OpenBLAS's kernels for CPUs it does not recognise (see `BLASDispatch`), then runs the
    /// command. Exit status: 0 done; 1 an error in an input (recipe, data, checkpoint, a path that
    /// cannot be read or written) or in the run; 64 a bad flag (with the usage line); 130/143
    /// interrupted by SIGINT/SIGTERM after saving. Foundation's file errors are printed with the path
    /// and the cause (`PathError`).
    static func main() {
        let argv = CommandLine.arguments
        if argv.count > 1 && argv[1] == H5Sandbox.command { Foundation.exit(ReadHDF5.run(Array(argv.dropFirst(2)))) }
        BLASDispatch.reexecIfBetterKernelsExist()
        // Every HDF5 file (checkpoints, hdf5_chips data) is read by a child process first (H5Sandbox).
        H5Sandbox.executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? argv[0]
        do {
            var command = try parseAsRoot(nil)
            try command.run()
        } catch {
            exit(withError: PathError.translating(error))
        }
    }
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Time the framework's reference workloads (use a release build).",
        subcommands: [KernelsBench.self, TrainStepCommand.self, InferCommand.self, DataBenchCommand.self, DetectorBenchCommand.self, AllreduceBenchCommand.self])
}

/// `--reps` / `--threads` checks and report printing shared by the bench commands.
func validateBench(reps: Int, threads: Int?) throws {
    try FlagCheck.reps(reps)
    try FlagCheck.threads(threads)
}

func printBench<R: Encodable>(_ report: R, json: Bool, text: (R) -> String) throws {
    guard json else { print(text(report)); return }
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try enc.encode(report), as: UTF8.self))
}

struct DetectorBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detector",
        abstract: "RetinaNet (MobileNetV2 x0.5 + FPN + heads, 12 classes, batch 8 at 256 px): training step, inference, NMS of 10k boxes (bench_torch.py's retinanet_train, retinanet_infer, nms10k).")

    @Option(help: "Timed repetitions per workload (median is reported, after 3 warm-up runs).")
    var reps: Int = 10

    @Option(help: "Threads for kernels and GEMMs (overrides QAT_NUM_THREADS).")
    var threads: Int?

    @Flag(help: "Print the report as JSON instead of text.")
    var json = false

    func validate() throws { try validateBench(reps: reps, threads: threads) }

    func run() throws {
        if let threads { Parallel.setThreads(threads) }
        try printBench(try DetectorBench.run(reps: reps), json: json, text: DetectorBench.format)
    }
}

struct KernelsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Conv, depthwise, 1x1 and elementwise kernels: ms, GFLOP/s, ratio to cblas_sgemm, GB/s.")

    @Option(help: "Timed repetitions per workload (median is reported, after 3 warm-up runs).")
    var reps: Int = 20

    @Option(help: "Threads for kernels and GEMMs (overrides QAT_NUM_THREADS).")
    var threads: Int?

    @Flag(help: "Divide the batch of every workload by 8 (a smoke test, not a measurement).")
    var quick = false

    @Flag(help: "Print the report as JSON instead of a table.")
    var json = false

    func validate() throws { try validateBench(reps: reps, threads: threads) }

    func run() throws {
        if let threads { Parallel.setThreads(threads) }
        try printBench(KernelBench.run(.init(reps: reps, batchDivisor: quick ? 8 : 1)), json: json, text: KernelBench.format)
    }
}

/// The workload flags `qat bench train-step` and `qat bench infer` share (bench_torch.py's defaults).
struct BackboneWorkload: ParsableArguments {
    @Option(help: "Backbone: \(Backbones.names.joined(separator: ", ")).")
    var model = "mobilenet_v2"
    @Option(help: "Width multiplier.")
    var width = 0.5
    @Option(help: "Images per batch.")
    var batch = 8
    @Option(help: "Square input size in pixels.")
    var size = 256
    @Option(help: "Timed repetitions (median is reported, after warm-up).")
    var reps = 10
    @Option(help: "Threads for kernels and GEMMs (overrides QAT_NUM_THREADS).")
    var threads: Int?

    func validate() throws {
        guard Backbones.names.contains(model) else { throw ValidationError("--model \(model) is not one of \(Backbones.names.joined(separator: ", "))") }
        guard width > 0, width <= 4 else { throw ValidationError("--width must be in (0, 4] (the recipes' model.width range), got \(width)") }
        try FlagCheck.reps(reps)
        try FlagCheck.batch(batch, size: size, minSize: 32)
        try FlagCheck.threads(threads)
    }
}

struct TrainStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step",
        abstract: "Time one training step of a backbone (features, loss mean(y^2), SGD momentum 0.9): bench_torch.py's mbv2_train.")

    @OptionGroup var workload: BackboneWorkload
    @Option(help: "Also time the QAT step, e.g. w8a8 (bench_torch.py's mbv2_qat), and report its ratio to the float step.")
    var quant: String?
    @Flag(help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        if let quant, TrainStepBench.parseQuant(quant) == nil { throw ValidationError("--quant \(quant) is not wNaM with N, M in 2...8 (e.g. w8a8)") }
        let w = workload, last = (w.size + 31) / 32
        guard w.batch * last * last >= 2 else {
            throw ValidationError("--batch \(w.batch) at --size \(w.size) leaves one value per channel at stride 32; BatchNorm needs two in training: use --batch 2 or --size 64")
        }
    }

    func run() throws {
        let w = workload
        if let threads = w.threads { Parallel.setThreads(threads) }
        let r = try TrainStepBench.run(model: w.model, width: w.width, batch: w.batch, size: w.size, reps: w.reps, quant: quant)
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(r), as: UTF8.self))
        } else { print(TrainStepBench.format(r)) }
    }
}

struct InferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Time inference of a backbone's features (bench_torch.py's mbv2_infer): our FP32 path, and with --engine int8 the int8 engine, alternately in one run.")

    @OptionGroup var workload: BackboneWorkload
    @Option(help: "fp32, or int8 (also times fp32 for the ratio).")
    var engine = "fp32"
    @Option(help: "Quantization of the int8 model, wNaM (weights per channel, activations per tensor, calibrated on random images).")
    var quant = "w8a8"
    @Option(help: "With --engine int8: also write that quantized model as a QDQ ONNX file (for timing ONNX Runtime on the same model).")
    var onnxOut: String?
    @Flag(help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        if onnxOut != nil && engine != "int8" { throw ValidationError("--onnx-out writes the int8 engine's quantized model: add --engine int8") }
        if let onnxOut { try guarded { try ProtectedFiles.check(output: onnxOut) } }
        guard ["fp32", "int8"].contains(engine) else { throw ValidationError("--engine must be fp32 or int8, got \(engine)") }
        if TrainStepBench.parseQuant(quant) == nil { throw ValidationError("--quant \(quant) is not wNaM with N, M in 2...8 (e.g. w8a8)") }
    }

    func run() throws {
        let w = workload
        if let threads = w.threads { Parallel.setThreads(threads) }
        try printBench(InferBench.run(model: w.model, width: w.width, batch: w.batch, size: w.size, reps: w.reps, engine: engine, quant: quant, onnxOut: onnxOut),
                       json: json, text: InferBench.format)
    }
}

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "model", abstract: "Inspect models.", subcommands: [SummaryCommand.self])
}

struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary", abstract: "Per-layer table: path, kind, parameter shapes, parameters, multiply-accumulates per image.")

    @Argument(help: "Model name (\(Backbones.names.joined(separator: ", "))) or a recipe file (.yaml): its model, input size and classes.")
    var name: String
    @Option(help: "Width multiplier (model names only).")
    var width = 1.0
    @Option(help: "Square input size for the MAC count (model names only).")
    var size = 224
    @Option(help: "Classifier classes (0: feature extractor only; model names only).")
    var classes = 1000
    @Option(name: .customLong("set"), help: "Recipe override, e.g. --set model.width=1.0 (recipes only).")
    var sets: [String] = []

    var isRecipe: Bool { name.hasSuffix(".yaml") || name.hasSuffix(".yml") }

    func validate() throws {
        guard isRecipe || Backbones.names.contains(name) else {
            throw ValidationError("unknown model '\(name)'; choose one of \(Backbones.names.joined(separator: ", ")), or give a recipe file (.yaml)")
        }
        guard width > 0, width <= 4 else { throw ValidationError("--width must be in (0, 4] (the recipes' model.width range), got \(width)") }
        try FlagCheck.range("--size", size, 32...Cap.inputSize.max, Cap.inputSize.what)
        try FlagCheck.range("--classes", classes, 0...100_000, "classifier outputs")
    }

    func run() throws {
        var rng = RNG(seed: 0)
        if isRecipe {
            let r = try guarded { try Recipe.load(path: name, overrides: sets) }
            // The synthetic benchmark always has the 12 aircraft types; a data folder names its classes.
            let synthetic = r.data.format == "synth_chips" || r.data.format == "synth_coco"
            let classes = try guarded { synthetic ? AircraftType.catalog.count : try makeTask(r).classes.count }
            let m: Module = try guarded {
                r.task == "detection" ? try DetectionTask.makeDetector(r, classes: classes, rng: &rng) as Module
                                      : try ClassificationTask.classifier(r, classes: classes, rng: &rng)
            }
            print("\(name): \(r.model.backbone) x\(r.model.width), \(classes) classes, input \(r.data.inputSize) px")
            print(ModelSummary(m, inputShape: [1, 3, r.data.inputSize, r.data.inputSize]).format())
            return
        }
        let m = try Backbones.make(name, width: width, numClasses: classes == 0 ? nil : classes, rng: &rng)
        print(ModelSummary(m, inputShape: [1, 3, size, size]).format())
    }
}

struct QuantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "quant", abstract: "Quantization tools.", subcommands: [QuantDemoCommand.self, QuantReportCommand.self, QuantSensitivityCommand.self, MixedPrecisionCommand.self])
}

struct QuantDemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "FP32 vs QAT W8A8 / W4A4 vs PTQ W4A4 vs QAT W4A4 with quantization dropout on a synthetic 32-class task.")

    @Option(help: "Seed for data, initialisation and training.")
    var seed: UInt64 = 0
    @Option(help: "FP32 training steps.")
    var fp32Steps = 400
    @Option(help: "QAT fine-tuning steps (from the FP32 weights).")
    var qatSteps = 200
    @Option(help: "Threads (overrides QAT_NUM_THREADS).")
    var threads: Int?
    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        try FlagCheck.range("--fp32-steps", fp32Steps, 1...1_000_000, "training steps")
        try FlagCheck.range("--qat-steps", qatSteps, 0...1_000_000, "training steps")
        try FlagCheck.threads(threads)
    }

    func run() throws {
        if let threads { Parallel.setThreads(threads) }
        var cfg = QuantDemo.Config()
        cfg.seed = seed; cfg.fp32Steps = fp32Steps; cfg.qatSteps = qatSteps
        let rows = try QuantDemo.run(cfg)
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(rows), as: UTF8.self))
        } else { print(QuantDemo.format(rows, cfg: cfg), terminator: "") }
    }
}

struct QuantReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Per-quantizer bits, scheme, scale and zero-point ranges and the share of clipped weights of a checkpoint.")

    @Argument(help: "Checkpoint file (HDF5).")
    var checkpoint: String

    func run() throws {
        try guarded { print(QuantReport(try Checkpoint.load(from: checkpoint)).format()) }
    }
}

struct QuantSensitivityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensitivity",
        abstract: "Per-layer PTQ sensitivity of a checkpoint: the metric with each layer alone quantized (drop from FP32) and with all but it (gain).",
        discussion: "Calibrates every quantizer once (the stored recipe's quant section, mode ptq, at the bits given), then evaluates 2 x layers times. Prints the table, most sensitive first; --out writes it as JSON.")

    @Argument(help: "Checkpoint (HDF5) written by qat train, usually an FP32 run's best.h5.")
    var checkpoint: String
    @Option(help: "Bits of weights and activations (both), 2...8.")
    var bits = 4
    @Option(help: "Weight bits (overrides --bits).")
    var weightBits: Int?
    @Option(help: "Activation bits (overrides --bits).")
    var activationBits: Int?
    @Flag(help: "Quantize weights only (activations stay float).")
    var weightsOnly = false
    @Flag(help: "Quantize activations only (weights stay float).")
    var activationsOnly = false
    @Option(help: "Split: train, val or test.")
    var split = "val"
    @Option(name: .customLong("set"), help: "Override a key of the stored recipe (e.g. quant.calibration_batches=16).")
    var sets: [String] = []
    @Option(help: "Write the report as JSON here (never a checkpoint, recipe or metrics file).")
    var out: String?

    func validate() throws {
        for (flag, v) in [("--bits", bits), ("--weight-bits", weightBits ?? bits), ("--activation-bits", activationBits ?? bits)] {
            try FlagCheck.range(flag, v, 2...8, "bits")
        }
        guard !(weightsOnly && activationsOnly) else { throw ValidationError("--weights-only and --activations-only exclude each other") }
        guard ["train", "val", "test"].contains(split) else { throw ValidationError("--split must be train, val or test, got \(split)") }
    }

    func run() throws {
        if let out { try guarded { try ProtectedFiles.check(output: out) } }
        let r = try guarded {
            try QuantSensitivity.run(checkpoint: checkpoint, split: split, weightBits: weightBits ?? bits, activationBits: activationBits ?? bits,
                                     weightsOnly: weightsOnly, activationsOnly: activationsOnly, overrides: sets) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        }
        print(QuantSensitivity.table(r), terminator: "")
        if let out { try guarded { try QuantSensitivity.write(r, to: out) }; print("wrote \(out)") }
    }
}

struct MixedPrecisionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mixed-precision",
        abstract: "Per-layer weight bits from Hessian traces (Hutchinson) under an average-bits budget, and optionally input bits from Fisher traces under a BitOps budget, written as quant.overrides for a recipe.",
        discussion: "Each Hutchinson sample costs two gradient passes over --batches training batches. With --activation-choices, each layer's input bits are searched too (Fisher traces with respect to the inputs, as FIT, times their fake-quantization errors with the recipe's quant.activation.range) under --average-bitops, the BitOps per multiply-accumulate (16 = uniform W4A4). The plan file is a recipe fragment (use it as base: or paste it); it may replace only an earlier plan.")

    @Argument(help: "Checkpoint (HDF5) written by qat train, usually an FP32 run's best.h5.")
    var checkpoint: String
    @Option(help: "Average weight bits over all weights (e.g. 4: the size of uniform W4).")
    var averageBits = 4.0
    @Option(help: "Bit choices, comma-separated.")
    var choices = "2,3,4,8"
    @Option(help: "Input (activation) bit choices, comma-separated: search input bits too (needs --average-bitops).")
    var activationChoices: String?
    @Option(help: "BitOps budget per multiply-accumulate, weight bits x input bits averaged over MACs (16: uniform W4A4).")
    var averageBitops: Double?
    @Option(help: "Hutchinson samples (Rademacher vectors).")
    var samples = 16
    @Option(help: "Training batches per gradient.")
    var batches = 2
    @Option(name: .customLong("set"), help: "Override a key of the stored recipe.")
    var sets: [String] = []
    @Option(help: "The plan (YAML recipe fragment) to write.")
    var out: String
    @Option(help: "Also write the report (traces, errors, bits) as JSON here.")
    var json: String?

    static func bits(_ list: String) -> [Int] { list.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    var parsedChoices: [Int] { Self.bits(choices) }
    var parsedActivationChoices: [Int] { activationChoices.map(Self.bits) ?? [] }

    func validate() throws {
        let c = parsedChoices
        for (flag, list) in [("--choices", choices), ("--activation-choices", activationChoices)] {
            guard let list else { continue }
            let b = Self.bits(list)
            guard !b.isEmpty, b.count == list.split(separator: ",").count, b.allSatisfy({ (2...8).contains($0) }) else {
                throw ValidationError("\(flag) must be comma-separated bits in 2...8, got '\(list)'")
            }
        }
        guard (activationChoices == nil) == (averageBitops == nil) else {
            throw ValidationError("--activation-choices and --average-bitops go together (input bits are searched under a BitOps budget)")
        }
        if let o = averageBitops, let a = parsedActivationChoices.min() {
            guard o.isFinite, o >= Double(c.min()! * a), o <= 64 else {
                throw ValidationError("--average-bitops must be at least the lowest choices' product (\(c.min()! * a)) and at most 64, got \(o)")
            }
        }
        guard averageBits >= Double(c.min()!), averageBits <= 32 else {
            throw ValidationError("--average-bits must be at least the lowest choice (\(c.min()!)), got \(averageBits)")
        }
        try FlagCheck.range("--samples", samples, 1...10_000, "Hutchinson samples")
        try FlagCheck.range("--batches", batches, 1...1_000, "batches")
    }

    func run() throws {
        try guarded { try MixedPrecisionSearch.checkOutputs(plan: out, json: json) }
        let r = try guarded {
            try MixedPrecisionSearch.run(checkpoint: checkpoint, averageBits: averageBits, choices: parsedChoices, samples: samples, batches: batches,
                                         activationChoices: parsedActivationChoices, averageBitOps: averageBitops, overrides: sets) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        }
        print(MixedPrecisionSearch.table(r), terminator: "")
        try guarded { try MixedPrecisionSearch.write(r, plan: out, json: json) }
        print("wrote \(out)" + (json.map { " and \($0)" } ?? ""))
    }
}

struct DataBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "PNG decode + augmentation + letterbox + normalisation throughput on one thread.")
    @Option(help: "Number of synthetic PNG images.")
    var images = 64
    @Option(help: "Image size in pixels.")
    var size = 256

    func validate() throws {
        try FlagCheck.range("--images", images, 1...10_000, "PNGs encoded and held in memory")
        try FlagCheck.range("--size", size, 16...Cap.inputSize.max, Cap.inputSize.what)
        guard images * size * size <= Cap.batchPixels else {
            throw ValidationError("--images \(images) at --size \(size) is \(images * size * size) pixels, above the cap of \(Cap.batchPixels); use fewer --images or a smaller --size")
        }
    }

    func run() throws {
        let r = try DataBench.run(images: images, size: size)
        print(String(format: "qat bench data: %d PNGs of %dx%d (%.0f KiB each): %.1f images/s on one thread (decode, flips/rot90, scale-crop and colour jitter at p 0.5, letterbox, normalise)", images, size, size, r.pngKiB, r.imagesPerSecond))
    }
}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data", abstract: "Datasets: the synthetic aircraft benchmark and statistics.",
                                                    subcommands: [SynthCommand.self, StatsCommand.self, ShowCommand.self, SheetCommand.self])
}

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth", abstract: "Generate the synthetic fine-grained aircraft benchmark as COCO folders (images/*.png, annotations/{train,val,test}.json).")

    @Option(help: "Output folder (must not exist or be empty; filled under a temporary name beside it and renamed when complete).")
    var out: String
    @Option(help: "Number of images (70% train, 15% val, 15% test).")
    var images = 100
    @Option(help: "Tile size in pixels.")
    var size = 256
    @Option(help: "Seed: same arguments, byte-identical output.")
    var seed: UInt64 = 0
    @Option(help: "Head/tail class frequency ratio.")
    var imbalance = 20.0
    @Option(help: "Probability that a train-split label is replaced by a wrong type.")
    var labelNoise = 0.0
    @Option(help: "Label noise mode: symmetric (any other type) or similar (a confusable sibling).")
    var noiseMode = "symmetric"
    @Option(help: "Shortest aircraft in pixels (default 16 at 256 px, scaled with --size).")
    var minLength: Double?
    @Option(help: "Longest aircraft in pixels (default 64 at 256 px, scaled with --size).")
    var maxLength: Double?
    @Flag(help: "Also cut single-aircraft chips into chips/{train,val,test}.h5 (HDF5 classification sets).")
    var chips = false
    @Option(help: "Chip size in pixels (with --chips).")
    var chipSize = 48
    @Option(help: "Threads (overrides QAT_NUM_THREADS).")
    var threads: Int?

    var config: SyntheticAircraft.Config {
        var c = SyntheticAircraft.Config()
        c.images = images; c.size = size; c.seed = seed; c.imbalance = imbalance; c.labelNoise = labelNoise
        c.noiseMode = SyntheticAircraft.NoiseMode(rawValue: noiseMode) ?? .symmetric
        c.minLength = minLength ?? 16 * Double(size) / 256
        c.maxLength = maxLength ?? 64 * Double(size) / 256
        return c
    }

    /// Every flag, caps included, before the output folder exists.
    func validate() throws {
        try FlagCheck.threads(threads)
        guard SyntheticAircraft.NoiseMode(rawValue: noiseMode) != nil else {
            throw ValidationError("--noise-mode must be symmetric or similar, got \(noiseMode)")
        }
        try FlagCheck.synth(config, chipSize: chips ? chipSize : nil)
    }

    func run() throws {
        if let threads { Parallel.setThreads(threads) }
        let c = config
        try guarded {
            // Written under a temporary name and renamed when complete: an interrupted run leaves no
            // half folder at --out, and the next run removes the temporary one (StagedFolder).
            try StagedFolder.create(out) { tmp in
                let s = try SyntheticAircraft.generate(c, to: tmp)
                print(String(format: "qat data synth: %d images, %d aircraft (%d noisy train labels) in %@ in %.1f s (%.1f images/s)",
                             s.images, s.objects, s.noisyLabels, out, s.seconds, Double(s.images) / max(s.seconds, 1e-9)))
                if chips {
                    try FileManager.default.createDirectory(atPath: tmp + "/chips", withIntermediateDirectories: true)
                    for split in ["train", "val", "test"] {
                        let n = try Chips.write(cocoRoot: tmp, split: split, size: chipSize, to: tmp + "/chips/\(split).h5")
                        print("chips/\(split).h5: \(n) chips of \(chipSize)x\(chipSize)")
                    }
                }
            }
        }
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Per-class counts per split, box sizes, objects per image, measured label noise.")
    @Argument(help: "A folder written by qat data synth (or any COCO folder with annotations/{train,val,test}.json).")
    var dir: String
    @Flag(help: "Skip invalid annotations (boxes outside images, unknown ids) and report them instead of failing.")
    var skipInvalid = false
    func run() throws {
        try guarded { print(try SyntheticAircraft.stats(dir, skipInvalid: skipInvalid)) }
    }
}

struct SheetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sheet", abstract: "Render the 12 aircraft types to a PNG sample sheet.")
    @Option(help: "Output PNG.")
    var out = "docs/images/aircraft-types.png"
    func run() throws {
        try guarded { try ImageCodec.writePNG(SyntheticAircraft.sampleSheet(), to: out) }
        print("wrote \(out)")
    }
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Draw an image's boxes and type names to a PNG.")
    @Argument(help: "A COCO folder (images/, annotations/).")
    var dir: String
    @Option(help: "Image id.")
    var image: Int
    @Option(help: "Output PNG.")
    var out: String
    @Option(help: "Upscaling factor (labels are 5x7 pixels).")
    var scale = 2
    func run() throws {
        guard (1...8).contains(scale) else { throw ValidationError("--scale must be 1...8, got \(scale)") }
        try guarded { try ImageCodec.writePNG(try Draw.show(dir: dir, imageId: image, scale: scale), to: out) }
        print("wrote \(out)")
    }
}
