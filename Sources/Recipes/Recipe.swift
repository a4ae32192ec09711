import Foundation
import UserPaths

/// A training recipe (`recipes/*.yaml`): every section with its defaults. `Recipe.load` reads a file
/// with `base:` inheritance and `--set` overrides; `tree()` gives the fully resolved form that run
/// directories and checkpoints store (every key, defaults filled in), which loads back to the same recipe.
///
/// Each section declares its defaults (the property declarations) and its keys once, in its `fields`
/// table: key, property, validation. Reading and the resolved form both come from that table.
public struct Recipe: Sendable, Equatable {
    public var name = "run"
    /// classification or detection (`Recipe.tasks`: the data formats and metrics of each).
    public var task = "classification"
    public var seed: UInt64 = 0
    /// Kernel and GEMM threads (nil: QAT_NUM_THREADS or all cores).
    public var threads: Int?
    public var model = Model()
    public var data = DataSpec()
    public var train = Train()
    public var quant = Quant()
    public var eval = Eval()
    /// The detector's FPN, head, anchors, matcher, loss and post-processing (detection recipes only).
    public var detector = Detector()

    public struct Model: RecipeSection {
        public var backbone = "mobilenet_v2"
        public var width = 0.5
        /// Classification head: linear (global average pooling, dropout, linear layer).
        public var head = "linear"
        /// Dropout before the classifier (torchvision's MobileNet default 0.2).
        public var dropout = 0.2
        /// A checkpoint whose float weights initialise the model where names and shapes match (before
        /// training and before `quant.init_from`); e.g. a classification checkpoint of the same
        /// backbone for a detector.
        public var initFrom: String?
        /// CIFAR practice for small inputs (classification): the stem and the first strided stage keep
        /// stride 1 (ResNet: a 3x3 stride-1 stem without max-pooling), so the backbone's total stride is 8
        /// instead of 32 and 32-px chips end in 4x4 maps.
        public var smallInput = false
        /// Channel counts of pruned groups (`qat prune` writes them): the model is built, then each named
        /// channel group (named by its first producing layer) shrinks to `keep` channels before weights load.
        public var channels: [ChannelCount] = []
        public struct ChannelCount: Equatable, Sendable {
            public var group: String
            public var keep: Int
            public init(group: String, keep: Int) { self.group = group; self.keep = keep }
        }
        public init() {}
        public static var fields: [Field<Model>] {
            [.choice("backbone", \.backbone, Recipe.backbones), .double("width", \.width, min: 0.05, max: 4), .choice("head", \.head, ["linear"]),
             .double("dropout", \.dropout, min: 0, max: 0.99), Field.optString("init_from", \.initFrom).addedWithDetection(),
             Field.bool("small_input", \.smallInput).writtenWhenSet(), channelsField.writtenWhenSet()]
        }

        static var channelsField: Field<Model> {
            Field("channels", read: { m, s, _ in
                guard let items = try m.list("channels") else { return }
                var seen = Set<String>()
                s.channels = try items.enumerated().map { i, item in
                    let r = try Reader(item, path: m.full("channels") + "[\(i)]", origin: item.origin)
                    guard let group = try r.optString("group") else {
                        throw RecipeError(origin: item.origin, key: r.full("group"), "each entry needs a group (the path of the group's first producing layer, as `qat prune` writes it)")
                    }
                    guard let keep = try r.optInt("keep", min: 1) else {
                        throw RecipeError(origin: item.origin, key: r.full("keep"), "each entry needs keep: the group's channel count (at least 1)")
                    }
                    guard seen.insert(group).inserted else {
                        throw RecipeError(origin: item.origin, key: r.full("group"), "group '\(group)' is listed twice")
                    }
                    try r.finish()
                    return ChannelCount(group: group, keep: keep)
                }
            }, write: { s, _ in
                Resolved.list(s.channels.map { Resolved.map([("group", Resolved.string($0.group)), ("keep", Resolved.int($0.keep))]) })
            })
        }
        public func check(_ r: Reader, _ context: RecipeContext) throws {
            if smallInput && context.task == "detection" {
                throw RecipeError(origin: r.value("small_input")?.origin ?? r.tree?.origin ?? r.fallbackOrigin, key: r.full("small_input"),
                                  "is for classification on small chips (total stride 8); a detector needs the C3-C5 maps at strides 8, 16 and 32: remove it")
            }
        }
    }

    public struct Synth: RecipeSection {
        public var images = 300
        public var size = 192
        public var seed: UInt64 = 0
        public var imbalance = 10.0
        public var labelNoise = 0.0
        public var noiseMode = "symmetric"
        public var chipSize = 32
        public init() {}
        public static var fields: [Field<Synth>] {
            [.int("images", \.images, min: 10, cap: .synthImages), .int("size", \.size, min: 64, cap: .synthSize), .seed("seed", \.seed),
             .double("imbalance", \.imbalance, min: 1), .double("label_noise", \.labelNoise, min: 0, max: 1),
             .choice("noise_mode", \.noiseMode, ["symmetric", "similar"]), .int("chip_size", \.chipSize, min: 8, cap: .chipSize)]
        }
        /// The chips of a split must fit what a chips file may hold, whatever the scenes contain.
        public func check(_ r: Reader, _ context: RecipeContext) throws {
            let bound = images * Cap.synthAircraftPerScene * chipSize * chipSize * 3   // at most 1e5 * 8 * 256^2 * 3: no overflow
            if bound > Cap.chipBytes {
                let key = r.value("chip_size") != nil ? "chip_size" : "images"
                throw RecipeError(origin: r.value(key)?.origin ?? r.tree?.origin ?? r.fallbackOrigin, key: r.full(key),
                                  "\(images) scenes x up to \(Cap.synthAircraftPerScene) aircraft x \(chipSize)x\(chipSize)x3 bytes = \(bound) bytes of chips, "
                                  + "above the cap of \(Cap.chipBytes) bytes (4 GiB) a chips file may hold; lower data.synth.images or data.synth.chip_size")
            }
        }
    }

    public struct Augment: RecipeSection {
        public var hflip = 0.5, vflip = 0.5, rot90 = 0.5
        public var colorJitter = 0.0
        /// Probability of a random rescale by a factor in `scaleRange` followed by a crop (or pad) back
        /// to the original size; boxes less than half visible are dropped.
        public var scaleCrop = 0.0
        public var scaleRange = [0.8, 1.2]
        public init() {}
        public static var fields: [Field<Augment>] {
            [.double("hflip", \.hflip, min: 0, max: 1), .double("vflip", \.vflip, min: 0, max: 1), .double("rot90", \.rot90, min: 0, max: 1),
             .double("color_jitter", \.colorJitter, min: 0, max: 1),
             Field.double("scale_crop", \.scaleCrop, min: 0, max: 1).addedWithDetection(),
             Field.doubleList("scale_range", \.scaleRange) { v in
                 v.count == 2 && v[0] > 0 && v[0] <= v[1] ? nil : "expected [low, high] scale factors with 0 < low <= high, e.g. [0.8, 1.2]; got \(v)"
             }.addedWithDetection()]
        }
    }

    /// DOTA images are cut into overlapping square tiles (the DOTA devkit's ImgSplit).
    public struct DOTATiles: RecipeSection {
        public var tile = 1024
        public var gap = 200
        public init() {}
        public static var fields: [Field<DOTATiles>] { [.int("tile", \.tile, min: 32, cap: .dotaTile), .int("gap", \.gap, min: 0)] }
        public func check(_ r: Reader, _ context: RecipeContext) throws {
            if gap >= tile { throw RecipeError(origin: r.value("gap")?.origin ?? r.tree?.origin, key: r.full("gap"), "must be smaller than tile (\(tile)), got \(gap)") }
        }
    }

    public struct DataSpec: RecipeSection {
        /// Classification: synth_chips (generate, once, under `cache`, the synthetic aircraft benchmark and
        /// cut chips) or hdf5_chips (a folder with {train,val,test}.h5 as `qat data synth --chips` writes).
        /// Detection: synth_coco (the synthetic benchmark as a COCO folder, cached the same way), coco
        /// (`path` with images/ and annotations/{train,val,test}.json) or dota (`path` with train/, val/,
        /// test/, each holding images/ and labelTxt/).
        public var format = "synth_chips"
        public var path: String?
        public var cache = "data/cache"
        public var synth = Synth()
        public var inputSize = 32
        public var augment = Augment()
        public var dota = DOTATiles()
        public init() {}
        public static var fields: [Field<DataSpec>] {
            [Field("format", read: { r, s, c in
                let formats = Recipe.options(task: c.task).dataFormats
                let f = try r.choice("format", formats.contains(s.format) ? s.format : formats[0], Recipe.tasks.flatMap(\.dataFormats))
                guard formats.contains(f) else {
                    let owner = Recipe.tasks.first { $0.dataFormats.contains(f) }!.name
                    throw RecipeError(origin: r.value("format")?.origin, key: r.full("format"),
                                      "'\(f)' is a \(owner) format but the recipe's task is \(c.task), which takes \(formats.joined(separator: ", ")) (or set task: \(owner))")
                }
                s.format = f
            }, write: { s, _ in Resolved.string(s.format) }),
             .optString("path", \.path), .string("cache", \.cache), .section("synth", \.synth), .int("input_size", \.inputSize, min: 8, cap: .inputSize),
             .section("augment", \.augment), Field.section("dota", \.dota).addedWithDetection()]
        }
        /// The formats that read `data.path`, with what the folder holds.
        public static let pathNeeds = ["hdf5_chips": "a folder with train.h5, val.h5, test.h5",
                                "coco": "a folder with images/ and annotations/{train,val,test}.json",
                                "dota": "a folder with train/, val/ and test/, each holding images/ and labelTxt/"]
        public func check(_ r: Reader, _ context: RecipeContext) throws {
            if path == nil, let what = DataSpec.pathNeeds[format] {
                throw RecipeError(origin: r.tree?.origin ?? r.fallbackOrigin, key: r.full("path"), "format \(format) needs data.path (\(what))")
            }
        }
    }

    public struct Optimizer: RecipeSection {
        public var name = "sgd"
        public var lr = 0.05
        public var momentum = 0.9
        public var nesterov = false
        public var weightDecay = 4e-5
        public var betas = [0.9, 0.999]
        /// Learning-rate multiplier for quantizer scales and zero points (LSQ practice: smaller).
        public var quantLRScale = 1.0
        public init() {}
        public static var fields: [Field<Optimizer>] {
            [.choice("name", \.name, ["sgd", "adam", "adamw"]), .double("lr", \.lr, min: 0), .double("momentum", \.momentum, min: 0, max: 1),
             .bool("nesterov", \.nesterov), .double("weight_decay", \.weightDecay, min: 0),
             .doubleList("betas", \.betas) { v in
                 v.count == 2 && v.allSatisfy({ $0 >= 0 && $0 < 1 }) ? nil : "expected two numbers in [0, 1), e.g. [0.9, 0.999]; got \(v)"
             },
             .double("quant_lr_scale", \.quantLRScale, min: 0)]
        }
    }

    public struct Schedule: RecipeSection {
        public var name = "cosine"
        public var warmupSteps = 0
        /// Final learning rate as a fraction of `lr` (cosine).
        public var minLRRatio = 0.0
        public var milestones: [Int] = []
        public var gamma = 0.1
        public init() {}
        public static var fields: [Field<Schedule>] {
            [.choice("name", \.name, ["constant", "cosine", "step"]), .int("warmup_steps", \.warmupSteps, min: 0),
             .double("min_lr_ratio", \.minLRRatio, min: 0, max: 1), .intList("milestones", \.milestones), .double("gamma", \.gamma, min: 0, max: 1)]
        }
    }

    public struct Train: RecipeSection {
        public var epochs = 10
        /// Total optimizer steps; when set it replaces `epochs`.
        public var steps: Int?
        public var batch = 32
        public var optimizer = Optimizer()
        public var schedule = Schedule()
        public var clipGradNorm: Double?
        /// EMA decay of the weights used for evaluation (nil: no EMA).
        public var ema: Double?
        public var logEvery = 20
        /// Consecutive non-finite losses that stop the run.
        public var maxNonFinite = 5
        /// Knowledge distillation from a float teacher (classification).
        public var distill = Distill()
        /// Network slimming's sparsity training (Liu et al. 2017): lambda * sign(gamma) is added to every
        /// BatchNorm's gamma gradient (the subgradient of lambda * sum |gamma|), so `qat prune --criterion bn`
        /// finds channels to remove. 0: off.
        public var bnSparsity = 0.0
        /// Data-parallel training under `mpirun` (ignored by a single process).
        public var distributed = Distributed()
        public init() {}
        public static var fields: [Field<Train>] {
            [.int("epochs", \.epochs, min: 0, cap: .epochs), .optInt("steps", \.steps, min: 0, cap: .steps), .int("batch", \.batch, min: 2, cap: .batch),
             .section("optimizer", \.optimizer), .section("schedule", \.schedule),
             .optDouble("clip_grad_norm", \.clipGradNorm, min: 0), .optDouble("ema", \.ema, min: 0, max: 0.999999),
             .int("log_every", \.logEvery, min: 1), .int("max_nonfinite", \.maxNonFinite, min: 1),
             Field.section("distill", \.distill).writtenWhenSet(), Field.double("bn_sparsity", \.bnSparsity, min: 0, max: 1).writtenWhenSet(),
             Field.section("distributed", \.distributed).writtenWhenSet()]
        }
    }

    /// Data-parallel training over MPI (`mpirun -np N qat train RECIPE`): `train.batch` is the global
    /// batch, split evenly over the ranks.
    public struct Distributed: RecipeSection, Equatable {
        /// BatchNorm statistics over the global batch (PyTorch's SyncBatchNorm) instead of each rank's slice.
        public var syncBN = false
        /// Gradient bucket size in MiB (PyTorch DDP: bucket_cap_mb, 25; smaller here, where whole models are a few MiB).
        public var bucketMB = 1.0
        /// Seconds a rank waits in a collective for the others before the job is aborted.
        public var timeoutSeconds = 300.0
        public init() {}
        public static var fields: [Field<Distributed>] {
            [.bool("sync_bn", \.syncBN), .double("bucket_mb", \.bucketMB, min: 0.01, max: 1024), .double("timeout_s", \.timeoutSeconds, min: 1, max: 86_400)]
        }
    }

    /// Knowledge distillation (Hinton et al. 2015): the loss becomes (1 - weight) x cross-entropy +
    /// weight x T^2 x KL(softmax(teacher / T) || softmax(student / T)), the teacher being the float
    /// weights of the `teacher` checkpoint in eval mode on the same augmented batch.
    public struct Distill: RecipeSection {
        public var teacher: String?
        public var weight = 0.5
        public var temperature = 1.0
        public init() {}
        public static var fields: [Field<Distill>] {
            [.optString("teacher", \.teacher), .double("weight", \.weight, min: 0, max: 1), .double("temperature", \.temperature, min: 0.01, max: 100)]
        }
        public func check(_ r: Reader, _ context: RecipeContext) throws {
            guard teacher != nil else {
                if r.tree != nil {
                    throw RecipeError(origin: r.tree?.origin ?? r.fallbackOrigin, key: r.full("teacher"),
                                      "distillation needs a teacher checkpoint (e.g. the FP32 run's checkpoints/best.h5)")
                }
                return
            }
            if context.task == "detection" {
                throw RecipeError(origin: r.tree?.origin ?? r.fallbackOrigin, key: r.full("teacher"),
                                  "distillation is implemented for classification only (task: detection)")
            }
        }
    }

    public struct QuantizerSpec: RecipeSection {
        public var bits = 8
        public var symmetric = false
        public var perChannel = false
        public var learnable = true
        /// minmax, moving_minmax, percentile, mse, lsq, lsq_plus.
        public var range = "minmax"
        /// false: these tensors stay float (weights-only or activations-only quantization).
        public var enabled = true
        public init() {}
        public init(bits: Int = 8, perChannel: Bool = false) { self.bits = bits; self.perChannel = perChannel }
        public static var fields: [Field<QuantizerSpec>] {
            [.int("bits", \.bits, min: 2, max: 8), .bool("symmetric", \.symmetric), .bool("per_channel", \.perChannel),
             .bool("learnable", \.learnable), .choice("range", \.range, Recipe.rangeMethods), Field.bool("enabled", \.enabled).writtenWhenSet()]
        }
    }

    public struct Dropout: RecipeSection {
        public var p = 0.0
        /// element, channel, tensor.
        public var granularity = "element"
        /// constant (p) or linear (start -> end over `steps` optimizer steps).
        public var schedule = "constant"
        public var start = 0.0, end = 0.0
        public var steps = 0
        /// both, weights, activations.
        public var apply = "both"
        public init() {}
        public static var fields: [Field<Dropout>] {
            [.double("p", \.p, min: 0, max: 1), .choice("granularity", \.granularity, ["element", "channel", "tensor"]),
             .choice("schedule", \.schedule, ["constant", "linear"]), .double("start", \.start, min: 0, max: 1), .double("end", \.end, min: 0, max: 1),
             .int("steps", \.steps, min: 0), .choice("apply", \.apply, ["both", "weights", "activations"])]
        }
        public func check(_ r: Reader, _ context: RecipeContext) throws {
            if schedule == "linear" && steps < 1 { throw RecipeError(origin: r.tree?.origin, key: r.full("steps"), "a linear dropout schedule needs steps >= 1") }
        }
    }

    /// AdaRound (Nagel et al. 2020) for PTQ: per layer, `iterations` Adam steps at `lr` on `batches`
    /// calibration batches, regulariser weight `reg`, beta annealed `beta_start` -> `beta_end` after the
    /// `warm_start` share of iterations; with `held_out_batches`, the calibration batches after those check
    /// each layer (round-to-nearest kept where the learned rounding does not beat it there).
    public struct AdaRound: RecipeSection {
        public var enabled = false
        public var iterations = 1000
        public var lr = 0.01
        public var reg = 0.01
        public var betaStart = 20.0, betaEnd = 2.0
        public var warmStart = 0.2
        public var batches = 4
        public var heldOutBatches = 0
        public init() {}
        public static var fields: [Field<AdaRound>] {
            [.bool("enabled", \.enabled), .int("iterations", \.iterations, min: 1, max: 1_000_000), .double("lr", \.lr, min: 1e-8, max: 10),
             .double("reg", \.reg, min: 0, max: 100), .double("beta_start", \.betaStart, min: 1, max: 100), .double("beta_end", \.betaEnd, min: 1, max: 100),
             .double("warm_start", \.warmStart, min: 0, max: 1), .int("batches", \.batches, min: 1, max: 1024),
             Field.int("held_out_batches", \.heldOutBatches, min: 0, max: 1024).writtenWhenSet()]
        }
    }

    public struct Override: Sendable, Equatable {
        public var pattern: String
        public var skip = false
        public var weightBits: Int?
        public var inputBits: Int?
    }

    public struct Quant: RecipeSection {
        /// fp32, qat or ptq.
        public var mode = "fp32"
        public var weight = QuantizerSpec(bits: 8, perChannel: true)
        public var activation = QuantizerSpec()
        public var learnZeroPoint = true
        public var gradFactor = "lsq_pytorch"
        public var ste = "clipped"
        public var dropout = Dropout()
        public var foldBN = false
        public var freezeBNAfter: Int?
        public var calibrationBatches = 8
        /// BatchNorm statistics during calibration: batch (QAT's training-mode forward, torch.ao's QAT
        /// observers), running (eval mode, what a deployed PTQ model computes) or auto (batch for QAT,
        /// running for PTQ).
        public var calibrationStatistics = "auto"
        public var residualAdds = true
        /// PTQ options (section 4 of ALGORITHMS.md).
        public var equalize = false
        public var biasCorrection = false
        /// Learned rounding of the weights (PTQ only; `AdaRound`).
        public var adaround = AdaRound()
        /// BatchNorm re-estimation (`BatchNormReestimation`) on this many unaugmented training batches,
        /// applied to best.h5 when the run ends (QAT and PTQ); nil: off.
        public var bnReestimationBatches: Int?
        public var overrides: [Override] = []
        /// The statistics `calibrationStatistics` resolves to for this mode.
        public var calibratesWithBatchStatistics: Bool {
            calibrationStatistics == "batch" || (calibrationStatistics == "auto" && mode == "qat")
        }
        /// FP32 (or QAT) checkpoint to start from: float weights load, quantizers calibrate.
        public var initFrom: String?
        public init() {}
        public static var fields: [Field<Quant>] {
            [.choice("mode", \.mode, ["fp32", "qat", "ptq"]), .section("weight", \.weight), .section("activation", \.activation),
             .bool("learn_zero_point", \.learnZeroPoint), .choice("grad_factor", \.gradFactor, ["one", "lsq_pytorch", "lsq_mqbench"]),
             .choice("ste", \.ste, ["clipped", "identity"]), .section("dropout", \.dropout), .bool("fold_bn", \.foldBN),
             .optInt("freeze_bn_after", \.freezeBNAfter, min: 0), .int("calibration_batches", \.calibrationBatches, min: 1),
             Field.choice("calibration_statistics", \.calibrationStatistics, ["auto", "batch", "running"]).writtenWhenSet(),
             .bool("residual_adds", \.residualAdds), .bool("equalize", \.equalize), .bool("bias_correction", \.biasCorrection),
             Field.section("adaround", \.adaround).writtenWhenSet(),
             Field.optInt("bn_reestimation_batches", \.bnReestimationBatches, min: 1).writtenWhenSet(), overridesField, .optString("init_from", \.initFrom)]
        }

        public func check(_ r: Reader, _ context: RecipeContext) throws {
            if mode != "fp32" && !weight.enabled && !activation.enabled {
                throw RecipeError(origin: r.value("weight")?.origin ?? r.tree?.origin ?? r.fallbackOrigin, key: r.full("weight.enabled"),
                                  "quant.weight.enabled and quant.activation.enabled are both false: nothing would be quantized (use quant.mode: fp32)")
            }
            if bnReestimationBatches != nil && mode == "fp32" {
                throw RecipeError(origin: r.value("bn_reestimation_batches")?.origin ?? r.tree?.origin ?? r.fallbackOrigin,
                                  key: r.full("bn_reestimation_batches"),
                                  "BatchNorm re-estimation recomputes the statistics of a quantized model: set quant.mode: qat or ptq (it is fp32), or remove the key")
            }
            if calibrationStatistics == "batch" && mode == "ptq" {
                throw RecipeError(origin: r.value("calibration_statistics")?.origin ?? r.tree?.origin ?? r.fallbackOrigin,
                                  key: r.full("calibration_statistics"),
                                  "a PTQ model runs with BatchNorm's running statistics, so its ranges are calibrated with them: use running or auto (it is batch)")
            }
            if adaround.enabled && mode != "ptq" {
                throw RecipeError(origin: r.value("adaround")?.origin ?? r.tree?.origin ?? r.fallbackOrigin, key: r.full("adaround.enabled"),
                                  "AdaRound learns the rounding of a PTQ model: set quant.mode: ptq (it is \(mode))")
            }
            if adaround.enabled && adaround.heldOutBatches > 0 && adaround.batches + adaround.heldOutBatches > calibrationBatches {
                throw RecipeError(origin: r.value("adaround")?.origin ?? r.tree?.origin ?? r.fallbackOrigin, key: r.full("adaround.held_out_batches"),
                                  "AdaRound learns on \(adaround.batches) calibration batches and checks on the \(adaround.heldOutBatches) after them: quant.calibration_batches must be at least \(adaround.batches + adaround.heldOutBatches) (it is \(calibrationBatches))")
            }
        }

        /// Per-path overrides: a list of mappings whose bit keys are written only when set.
        static var overridesField: Field<Quant> {
            Field("overrides", read: { q, s, _ in
                guard let items = try q.list("overrides") else { return }
                s.overrides = try items.enumerated().map { i, item in
                    let r = try Reader(item, path: q.full("overrides") + "[\(i)]", origin: item.origin)
                    guard let pattern = try r.optString("pattern") else {
                        throw RecipeError(origin: item.origin, key: r.full("pattern"), "each override needs a pattern (a glob over layer paths, e.g. 'features.0.*')")
                    }
                    let o = Override(pattern: pattern, skip: try r.bool("skip", false), weightBits: try r.optInt("weight_bits", min: 2, max: 8),
                                     inputBits: try r.optInt("input_bits", min: 2, max: 8))
                    try r.finish()
                    return o
                }
            }, write: { s, _ in
                Resolved.list(s.overrides.map { o in
                    var e: [(String, Tree)] = [("pattern", Resolved.string(o.pattern)), ("skip", Resolved.bool(o.skip))]
                    if let w = o.weightBits { e.append(("weight_bits", Resolved.int(w))) }
                    if let a = o.inputBits { e.append(("input_bits", Resolved.int(a))) }
                    return Resolved.map(e)
                })
            })
        }
    }

    public struct Eval: RecipeSection {
        public var split = "val"
        public var everyEpochs = 1
        /// Metric that picks best.h5 (higher is better), one of the task's `evalMetrics`: accuracy or
        /// macro_accuracy; map (COCO AP over IoU 0.5:0.95), map50, map75 or agnostic_map50 (classes merged).
        public var metric = "accuracy"
        public var batch = 128
        /// Split evaluated with best.h5 at the end of the run ("none" to skip).
        public var finalSplit = "test"
        public init() {}
        public static var fields: [Field<Eval>] {
            [.choice("split", \.split, ["train", "val", "test"]), .int("every_epochs", \.everyEpochs, min: 1),
             Field("metric", read: { r, s, c in
                 let metrics = Recipe.options(task: c.task).evalMetrics
                 let m = try r.choice("metric", metrics.contains(s.metric) ? s.metric : metrics[0], Recipe.tasks.flatMap(\.evalMetrics))
                 guard metrics.contains(m) else {
                     throw RecipeError(origin: r.value("metric")?.origin, key: r.full("metric"), "'\(m)' is not a metric of task \(c.task), which has \(metrics.joined(separator: ", "))")
                 }
                 s.metric = m
             }, write: { s, _ in Resolved.string(s.metric) }),
             .int("batch", \.batch, min: 1, cap: .batch), .choice("final_split", \.finalSplit, ["train", "val", "test", "none"])]
        }
    }

    public init() {}

    public static let backbones = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18"]
    static let rangeMethods = ["minmax", "moving_minmax", "percentile", "mse", "lsq", "lsq_plus"]

    /// What a task accepts for `data.format` and `eval.metric` (the first of each is the default), and
    /// the format of a plain data folder (what `qat eval --data DIR` switches a synthetic recipe to).
    public struct TaskOptions: Sendable {
        public let name: String
        public let dataFormats: [String]
        public let evalMetrics: [String]
        public let folderFormat: String
    }
    public static let tasks = [
        TaskOptions(name: "classification", dataFormats: ["synth_chips", "hdf5_chips"], evalMetrics: ["accuracy", "macro_accuracy"], folderFormat: "hdf5_chips"),
        TaskOptions(name: "detection", dataFormats: ["synth_coco", "coco", "dota"], evalMetrics: ["map50", "map", "map75", "agnostic_map50"], folderFormat: "coco"),
    ]
    public static func options(task: String) -> TaskOptions { tasks.first { $0.name == task } ?? tasks[0] }

    /// Reads a recipe tree (after merging and overrides).
    public init(tree: Tree, defaultName: String = "run") throws {
        self.init()
        name = defaultName
        let root = try Reader(tree, path: "", origin: tree.origin)
        // The task is read before the sections, which depend on it.
        for f in Recipe.fields { try f.read(root, &self, RecipeContext(task: task)) }
        try root.finish()
        try checkBatchPixels(tree)
    }

    /// A batch of `train.batch` (or `eval.batch`) images at `data.input_size` must stay within
    /// `Cap.batchPixels`; each key alone is within its cap, so the products cannot overflow.
    func checkBatchPixels(_ tree: Tree) throws {
        for (section, batch) in [("train", train.batch), ("eval", eval.batch)] {
            let pixels = batch * data.inputSize * data.inputSize
            guard pixels > Cap.batchPixels else { continue }
            let origin = tree[section]?["batch"]?.origin ?? tree["data"]?["input_size"]?.origin ?? tree.origin
            throw RecipeError(origin: origin, key: "\(section).batch",
                              "\(batch) images of \(data.inputSize)x\(data.inputSize) px = \(pixels) pixels per batch, above the cap of \(Cap.batchPixels) "
                              + "(memory grows with batch x input_size^2); lower \(section).batch to at most \(Cap.batchPixels / (data.inputSize * data.inputSize)) or data.input_size")
        }
    }

    static var fields: [Field<Recipe>] {
        [
            Field("name", read: { r, s, _ in
                s.name = try r.string("name", s.name)
                guard !s.name.isEmpty, !s.name.contains("/"), s.name != ".", s.name != ".." else {
                    throw RecipeError(origin: r.value("name")?.origin ?? r.tree?.origin ?? r.fallbackOrigin, key: "name", "must be a non-empty name without '/', got '\(s.name)'")
                }
            }, write: { s, _ in Resolved.string(s.name) }),
            .choice("task", \.task, Recipe.tasks.map(\.name)),
            .seed("seed", \.seed),
            .optInt("threads", \.threads, min: 1, cap: .threads),
            .section("model", \.model),
            .section("data", \.data),
            .section("train", \.train),
            .section("quant", \.quant),
            .section("eval", \.eval),
            // Only detection recipes have (and write) the detector section.
            Field("detector", read: { r, s, c in
                if c.task != "detection", let v = r.value("detector") {
                    throw RecipeError(origin: v.origin, key: "detector", "only detection recipes have a detector section (this recipe's task is \(c.task)); set task: detection or remove it")
                }
                try s.detector.read(try r.sub("detector"), c)
            }, write: { s, c in c.task == "detection" ? s.detector.tree(c) : nil }),
        ]
    }

    /// Every key with its value, defaults included (for classification recipes, keys added with
    /// detection only when set: see `Field.addedWithDetection`).
    public func tree() -> Tree {
        let c = RecipeContext(task: task)
        return Resolved.map(Recipe.fields.compactMap { f in f.write(self, c).map { (f.key, $0) } })
    }

    // MARK: loading

    /// Reads `path`, follows `base:` (relative to the file, deep merge, lists replaced), applies the
    /// `--set key.path=value` overrides in order, and validates. Returns the recipe and the merged tree.
    public static func load(path: String, overrides: [String] = []) throws -> Recipe {
        var tree = try loadTree(path: path, chain: [])
        tree = try applyOverrides(tree, overrides)
        let base = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        return try Recipe(tree: tree, defaultName: base)
    }

    /// A recipe from YAML text (no `base:` resolution beyond `directory`).
    public static func parse(_ text: String, file: String = "(recipe)", overrides: [String] = []) throws -> Recipe {
        var tree = try Tree.parse(text, file: file)
        tree = try resolveBase(tree, file: file, chain: [file])
        tree = try applyOverrides(tree, overrides)
        return try Recipe(tree: tree)
    }

    public static func loadTree(path: String, chain: [String] = []) throws -> Tree {
        let full = URL(fileURLWithPath: path).standardizedFileURL.path
        if chain.contains(full) {
            throw RecipeError(origin: Origin(file: path), key: "base", "inheritance cycle: \((chain + [full]).joined(separator: " -> "))")
        }
        let named = chain.isEmpty ? "" : " (named by 'base:' in \(chain.last!))"
        let text: String
        do { text = try UserFile.readText(path, maxBytes: YAMLLimits.standard.maxBytes, what: "recipe file") } catch let e as PathError {
            throw RecipeError(origin: Origin(file: path), (e.isNotFound ? "recipe file not found" : e.cause) + named)
        }
        let tree = try Tree.parse(text, file: path)
        if case .null = tree {
            throw RecipeError(origin: Origin(file: path), "is empty (no keys)\(named); a recipe needs at least its sections, e.g. 'model: {backbone: resnet18}'. "
                              + "To train with every default, write 'name: \(((path as NSString).lastPathComponent as NSString).deletingPathExtension)'")
        }
        return try resolveBase(tree, file: path, chain: chain + [full])
    }

    static func resolveBase(_ tree: Tree, file: String, chain: [String]) throws -> Tree {
        if case .null = tree { return .map([], tree.origin) }
        guard case .map = tree else { throw RecipeError(origin: tree.origin, "a recipe must be a mapping of sections (name, model, data, train, quant, eval, ...)") }
        guard let baseNode = tree["base"] else { return tree }
        guard case .scalar(let rel, _, _) = baseNode else { throw RecipeError(origin: baseNode.origin, key: "base", "expected a file name") }
        let dir = (file as NSString).deletingLastPathComponent
        let basePath = rel.hasPrefix("/") ? rel : (dir.isEmpty ? rel : dir + "/" + rel)
        let baseTree = try loadTree(path: basePath, chain: chain)
        return baseTree.merged(with: tree.removing("base"))
    }

    /// Applies `key.path=value` overrides (value parsed as YAML: numbers, booleans, lists, strings).
    public static func applyOverrides(_ tree: Tree, _ overrides: [String]) throws -> Tree {
        var t = tree
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else {
                throw RecipeError(origin: Origin(file: "--set"), key: o, "expected key.path=value, e.g. train.epochs=5")
            }
            let key = String(o[..<eq]), raw = String(o[o.index(after: eq)...])
            let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !key.isEmpty, !parts.contains(where: \.isEmpty) else {
                throw RecipeError(origin: Origin(file: "--set"), key: key, "the key path must be dotted names, e.g. quant.weight.bits")
            }
            // An empty value would parse as YAML null and silently mean the default.
            guard !raw.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw RecipeError(origin: Origin(file: "--set"), key: key,
                                  "has no value (--set \(key)=); give one, e.g. --set \(key)=VALUE, or leave the --set out to keep the recipe's value (null resets an optional key)")
            }
            let value: Tree
            do { value = try Tree.parse(raw, file: "--set \(key)") } catch { value = .scalar(raw, quoted: true, Origin(file: "--set \(key)")) }
            t = t.setting(parts, to: value)
        }
        return t
    }

    /// The resolved YAML (what `recipe.resolved.yaml` holds).
    public func resolvedYAML() -> String {
        "# Resolved recipe: every key with its value (defaults included); loads back to the same recipe.\n" + tree().yaml()
    }
}
