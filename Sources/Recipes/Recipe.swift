import Foundation

/// A training recipe (`recipes/*.yaml`): every section with its defaults. `Recipe.load` reads a file
/// with `base:` inheritance and `--set` overrides; `tree()` gives the fully resolved form that run
/// directories and checkpoints store (every key, defaults filled in), which loads back to the same recipe.
public struct Recipe: Sendable, Equatable {
    public var name = "run"
    /// classification (now) or detection (later; rejected with a clear message until then).
    public var task = "classification"
    public var seed: UInt64 = 0
    /// Kernel and OpenBLAS threads (nil: QAT_NUM_THREADS or all cores).
    public var threads: Int?
    public var model = Model()
    public var data = DataSpec()
    public var train = Train()
    public var quant = Quant()
    public var eval = Eval()

    public struct Model: Sendable, Equatable {
        public var backbone = "mobilenet_v2"
        public var width = 0.5
        /// Classification head: linear (global average pooling, dropout, linear layer).
        public var head = "linear"
        /// Dropout before the classifier (torchvision's MobileNet default 0.2).
        public var dropout = 0.2
    }

    public struct Synth: Sendable, Equatable {
        public var images = 300
        public var size = 192
        public var seed: UInt64 = 0
        public var imbalance = 10.0
        public var labelNoise = 0.0
        public var noiseMode = "symmetric"
        public var chipSize = 32
    }

    public struct Augment: Sendable, Equatable {
        public var hflip = 0.5, vflip = 0.5, rot90 = 0.5
        public var colorJitter = 0.0
    }

    public struct DataSpec: Sendable, Equatable {
        /// synth_chips: generate (once, cached under `cache`) the synthetic aircraft benchmark and cut chips;
        /// hdf5_chips: a folder with {train,val,test}.h5 as `qat data synth --chips` writes.
        public var format = "synth_chips"
        public var path: String?
        public var cache = "data/cache"
        public var synth = Synth()
        public var inputSize = 32
        public var augment = Augment()
    }

    public struct Optimizer: Sendable, Equatable {
        public var name = "sgd"
        public var lr = 0.05
        public var momentum = 0.9
        public var nesterov = false
        public var weightDecay = 4e-5
        public var betas = [0.9, 0.999]
        /// Learning-rate multiplier for quantizer scales and zero points (LSQ practice: smaller).
        public var quantLRScale = 1.0
    }

    public struct Schedule: Sendable, Equatable {
        public var name = "cosine"
        public var warmupSteps = 0
        /// Final learning rate as a fraction of `lr` (cosine).
        public var minLRRatio = 0.0
        public var milestones: [Int] = []
        public var gamma = 0.1
    }

    public struct Train: Sendable, Equatable {
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
    }

    public struct QuantizerSpec: Sendable, Equatable {
        public var bits = 8
        public var symmetric = false
        public var perChannel = false
        public var learnable = true
        /// minmax, moving_minmax, percentile, mse, lsq, lsq_plus.
        public var range = "minmax"
    }

    public struct Dropout: Sendable, Equatable {
        public var p = 0.0
        /// element, channel, tensor.
        public var granularity = "element"
        /// constant (p) or linear (start -> end over `steps` optimizer steps).
        public var schedule = "constant"
        public var start = 0.0, end = 0.0
        public var steps = 0
        /// both, weights, activations.
        public var apply = "both"
    }

    public struct Override: Sendable, Equatable {
        public var pattern: String
        public var skip = false
        public var weightBits: Int?
        public var inputBits: Int?
    }

    public struct Quant: Sendable, Equatable {
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
        public var residualAdds = true
        /// PTQ options (section 4 of ALGORITHMS.md).
        public var equalize = false
        public var biasCorrection = false
        public var overrides: [Override] = []
        /// FP32 (or QAT) checkpoint to start from: float weights load, quantizers calibrate.
        public var initFrom: String?
    }

    public struct Eval: Sendable, Equatable {
        public var split = "val"
        public var everyEpochs = 1
        /// Metric that picks best.h5 (higher is better): accuracy or macro_accuracy.
        public var metric = "accuracy"
        public var batch = 128
        /// Split evaluated with best.h5 at the end of the run ("none" to skip).
        public var finalSplit = "test"
    }

    public init() {}

    public static let backbones = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18"]
    static let rangeMethods = ["minmax", "moving_minmax", "percentile", "mse", "lsq", "lsq_plus"]

    /// Reads a recipe tree (after merging and overrides).
    public init(tree: Tree, defaultName: String = "run") throws {
        let root = try Reader(tree, path: "", origin: tree.origin)
        name = try root.string("name", defaultName)
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw RecipeError(origin: root.value("name")?.origin ?? tree.origin, key: "name", "must be a non-empty name without '/', got '\(name)'")
        }
        task = try root.choice("task", "classification", ["classification", "detection"])
        if task == "detection" {
            throw RecipeError(origin: root.value("task")?.origin, key: "task", "detection recipes are not supported yet (the detector issue adds them); use classification")
        }
        seed = UInt64(try root.int("seed", 0, min: 0))
        threads = try root.optInt("threads", min: 1)

        let m = try root.sub("model")
        model.backbone = try m.choice("backbone", model.backbone, Recipe.backbones)
        model.width = try m.double("width", model.width, min: 0.05, max: 4)
        model.head = try m.choice("head", model.head, ["linear"])
        model.dropout = try m.double("dropout", model.dropout, min: 0, max: 0.99)
        try m.finish()

        let d = try root.sub("data")
        data.format = try d.choice("format", data.format, ["synth_chips", "hdf5_chips"])
        data.path = try d.optString("path")
        data.cache = try d.string("cache", data.cache)
        if data.format == "hdf5_chips" && data.path == nil {
            throw RecipeError(origin: d.tree?.origin ?? tree.origin, key: "data.path", "format hdf5_chips needs data.path (a folder with train.h5, val.h5, test.h5)")
        }
        let s = try d.sub("synth")
        data.synth.images = try s.int("images", data.synth.images, min: 10)
        data.synth.size = try s.int("size", data.synth.size, min: 64)
        data.synth.seed = UInt64(try s.int("seed", Int(data.synth.seed), min: 0))
        data.synth.imbalance = try s.double("imbalance", data.synth.imbalance, min: 1)
        data.synth.labelNoise = try s.double("label_noise", data.synth.labelNoise, min: 0, max: 1)
        data.synth.noiseMode = try s.choice("noise_mode", data.synth.noiseMode, ["symmetric", "similar"])
        data.synth.chipSize = try s.int("chip_size", data.synth.chipSize, min: 8)
        try s.finish()
        data.inputSize = try d.int("input_size", data.inputSize, min: 8)
        let a = try d.sub("augment")
        data.augment.hflip = try a.double("hflip", data.augment.hflip, min: 0, max: 1)
        data.augment.vflip = try a.double("vflip", data.augment.vflip, min: 0, max: 1)
        data.augment.rot90 = try a.double("rot90", data.augment.rot90, min: 0, max: 1)
        data.augment.colorJitter = try a.double("color_jitter", data.augment.colorJitter, min: 0, max: 1)
        try a.finish()
        try d.finish()

        let t = try root.sub("train")
        train.epochs = try t.int("epochs", train.epochs, min: 0)
        train.steps = try t.optInt("steps", min: 0)
        train.batch = try t.int("batch", train.batch, min: 2)
        let o = try t.sub("optimizer")
        train.optimizer.name = try o.choice("name", train.optimizer.name, ["sgd", "adam", "adamw"])
        train.optimizer.lr = try o.double("lr", train.optimizer.lr, min: 0)
        train.optimizer.momentum = try o.double("momentum", train.optimizer.momentum, min: 0, max: 1)
        train.optimizer.nesterov = try o.bool("nesterov", train.optimizer.nesterov)
        train.optimizer.weightDecay = try o.double("weight_decay", train.optimizer.weightDecay, min: 0)
        if let betas = try o.doubleList("betas") {
            guard betas.count == 2, betas.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
                throw RecipeError(origin: o.value("betas")?.origin, key: "train.optimizer.betas", "expected two numbers in [0, 1), e.g. [0.9, 0.999]; got \(betas)")
            }
            train.optimizer.betas = betas
        }
        train.optimizer.quantLRScale = try o.double("quant_lr_scale", train.optimizer.quantLRScale, min: 0)
        try o.finish()
        let sc = try t.sub("schedule")
        train.schedule.name = try sc.choice("name", train.schedule.name, ["constant", "cosine", "step"])
        train.schedule.warmupSteps = try sc.int("warmup_steps", train.schedule.warmupSteps, min: 0)
        train.schedule.minLRRatio = try sc.double("min_lr_ratio", train.schedule.minLRRatio, min: 0, max: 1)
        train.schedule.milestones = try sc.intList("milestones") ?? train.schedule.milestones
        train.schedule.gamma = try sc.double("gamma", train.schedule.gamma, min: 0, max: 1)
        try sc.finish()
        train.clipGradNorm = try t.optDouble("clip_grad_norm", min: 0)
        train.ema = try t.optDouble("ema", min: 0, max: 0.999999)
        train.logEvery = try t.int("log_every", train.logEvery, min: 1)
        train.maxNonFinite = try t.int("max_nonfinite", train.maxNonFinite, min: 1)
        try t.finish()

        let q = try root.sub("quant")
        quant.mode = try q.choice("mode", quant.mode, ["fp32", "qat", "ptq"])
        func spec(_ key: String, _ def: QuantizerSpec) throws -> QuantizerSpec {
            let r = try q.sub(key)
            var out = def
            out.bits = try r.int("bits", def.bits, min: 2)
            if out.bits > 8 { throw RecipeError(origin: r.value("bits")?.origin, key: "quant.\(key).bits", "must be 2..8, got \(out.bits)") }
            out.symmetric = try r.bool("symmetric", def.symmetric)
            out.perChannel = try r.bool("per_channel", def.perChannel)
            out.learnable = try r.bool("learnable", def.learnable)
            out.range = try r.choice("range", def.range, Recipe.rangeMethods)
            try r.finish()
            return out
        }
        quant.weight = try spec("weight", quant.weight)
        quant.activation = try spec("activation", quant.activation)
        quant.learnZeroPoint = try q.bool("learn_zero_point", quant.learnZeroPoint)
        quant.gradFactor = try q.choice("grad_factor", quant.gradFactor, ["one", "lsq_pytorch", "lsq_mqbench"])
        quant.ste = try q.choice("ste", quant.ste, ["clipped", "identity"])
        let dr = try q.sub("dropout")
        quant.dropout.p = try dr.double("p", quant.dropout.p, min: 0, max: 1)
        quant.dropout.granularity = try dr.choice("granularity", quant.dropout.granularity, ["element", "channel", "tensor"])
        quant.dropout.schedule = try dr.choice("schedule", quant.dropout.schedule, ["constant", "linear"])
        quant.dropout.start = try dr.double("start", quant.dropout.start, min: 0, max: 1)
        quant.dropout.end = try dr.double("end", quant.dropout.end, min: 0, max: 1)
        quant.dropout.steps = try dr.int("steps", quant.dropout.steps, min: 0)
        quant.dropout.apply = try dr.choice("apply", quant.dropout.apply, ["both", "weights", "activations"])
        if quant.dropout.schedule == "linear" && quant.dropout.steps < 1 {
            throw RecipeError(origin: dr.tree?.origin, key: "quant.dropout.steps", "a linear dropout schedule needs steps >= 1")
        }
        try dr.finish()
        quant.foldBN = try q.bool("fold_bn", quant.foldBN)
        quant.freezeBNAfter = try q.optInt("freeze_bn_after", min: 0)
        quant.calibrationBatches = try q.int("calibration_batches", quant.calibrationBatches, min: 1)
        quant.residualAdds = try q.bool("residual_adds", quant.residualAdds)
        quant.equalize = try q.bool("equalize", quant.equalize)
        quant.biasCorrection = try q.bool("bias_correction", quant.biasCorrection)
        quant.overrides = try (q.list("overrides") ?? []).enumerated().map { i, item in
            let r = try Reader(item, path: "quant.overrides[\(i)]", origin: item.origin)
            guard let pattern = try r.optString("pattern") else {
                throw RecipeError(origin: item.origin, key: "quant.overrides[\(i)].pattern", "each override needs a pattern (a glob over layer paths, e.g. 'features.0.*')")
            }
            let o = Override(pattern: pattern, skip: try r.bool("skip", false), weightBits: try r.optInt("weight_bits", min: 2), inputBits: try r.optInt("input_bits", min: 2))
            for (k, b) in [("weight_bits", o.weightBits), ("input_bits", o.inputBits)] where (b ?? 2) > 8 {
                throw RecipeError(origin: r.value(k)?.origin, key: "quant.overrides[\(i)].\(k)", "must be 2..8, got \(b!)")
            }
            try r.finish()
            return o
        }
        quant.initFrom = try q.optString("init_from")
        try q.finish()

        let e = try root.sub("eval")
        eval.split = try e.choice("split", eval.split, ["train", "val", "test"])
        eval.everyEpochs = try e.int("every_epochs", eval.everyEpochs, min: 1)
        eval.metric = try e.choice("metric", eval.metric, ["accuracy", "macro_accuracy"])
        eval.batch = try e.int("batch", eval.batch, min: 1)
        eval.finalSplit = try e.choice("final_split", eval.finalSplit, ["train", "val", "test", "none"])
        try e.finish()
        try root.finish()
    }

    // MARK: resolved form

    static func s(_ v: String) -> Tree { .scalar(v, quoted: true, Origin(file: "resolved")) }
    static func n(_ v: Double) -> Tree { .scalar(v == v.rounded() && abs(v) < 1e15 ? String(format: "%.1f", v) : "\(v)", quoted: false, Origin(file: "resolved")) }
    static func i(_ v: Int) -> Tree { .scalar("\(v)", quoted: false, Origin(file: "resolved")) }
    static func b(_ v: Bool) -> Tree { .scalar(v ? "true" : "false", quoted: false, Origin(file: "resolved")) }
    static let null = Tree.null(Origin(file: "resolved"))
    static func m(_ e: [(String, Tree)]) -> Tree { .map(e, Origin(file: "resolved")) }
    static func l(_ e: [Tree]) -> Tree { .seq(e, Origin(file: "resolved")) }

    /// Every key with its value, defaults included.
    public func tree() -> Tree {
        typealias R = Recipe
        func spec(_ q: QuantizerSpec) -> Tree {
            R.m([("bits", R.i(q.bits)), ("symmetric", R.b(q.symmetric)), ("per_channel", R.b(q.perChannel)),
                 ("learnable", R.b(q.learnable)), ("range", R.s(q.range))])
        }
        return R.m([
            ("name", R.s(name)), ("task", R.s(task)), ("seed", R.i(Int(seed))), ("threads", threads.map(R.i) ?? R.null),
            ("model", R.m([("backbone", R.s(model.backbone)), ("width", R.n(model.width)), ("head", R.s(model.head)), ("dropout", R.n(model.dropout))])),
            ("data", R.m([
                ("format", R.s(data.format)), ("path", data.path.map(R.s) ?? R.null), ("cache", R.s(data.cache)),
                ("synth", R.m([("images", R.i(data.synth.images)), ("size", R.i(data.synth.size)), ("seed", R.i(Int(data.synth.seed))),
                               ("imbalance", R.n(data.synth.imbalance)), ("label_noise", R.n(data.synth.labelNoise)),
                               ("noise_mode", R.s(data.synth.noiseMode)), ("chip_size", R.i(data.synth.chipSize))])),
                ("input_size", R.i(data.inputSize)),
                ("augment", R.m([("hflip", R.n(data.augment.hflip)), ("vflip", R.n(data.augment.vflip)), ("rot90", R.n(data.augment.rot90)),
                                 ("color_jitter", R.n(data.augment.colorJitter))])),
            ])),
            ("train", R.m([
                ("epochs", R.i(train.epochs)), ("steps", train.steps.map(R.i) ?? R.null), ("batch", R.i(train.batch)),
                ("optimizer", R.m([("name", R.s(train.optimizer.name)), ("lr", R.n(train.optimizer.lr)), ("momentum", R.n(train.optimizer.momentum)),
                                   ("nesterov", R.b(train.optimizer.nesterov)), ("weight_decay", R.n(train.optimizer.weightDecay)),
                                   ("betas", R.l(train.optimizer.betas.map(R.n))), ("quant_lr_scale", R.n(train.optimizer.quantLRScale))])),
                ("schedule", R.m([("name", R.s(train.schedule.name)), ("warmup_steps", R.i(train.schedule.warmupSteps)),
                                  ("min_lr_ratio", R.n(train.schedule.minLRRatio)), ("milestones", R.l(train.schedule.milestones.map(R.i))),
                                  ("gamma", R.n(train.schedule.gamma))])),
                ("clip_grad_norm", train.clipGradNorm.map(R.n) ?? R.null), ("ema", train.ema.map(R.n) ?? R.null),
                ("log_every", R.i(train.logEvery)), ("max_nonfinite", R.i(train.maxNonFinite)),
            ])),
            ("quant", R.m([
                ("mode", R.s(quant.mode)), ("weight", spec(quant.weight)), ("activation", spec(quant.activation)),
                ("learn_zero_point", R.b(quant.learnZeroPoint)), ("grad_factor", R.s(quant.gradFactor)), ("ste", R.s(quant.ste)),
                ("dropout", R.m([("p", R.n(quant.dropout.p)), ("granularity", R.s(quant.dropout.granularity)), ("schedule", R.s(quant.dropout.schedule)),
                                 ("start", R.n(quant.dropout.start)), ("end", R.n(quant.dropout.end)), ("steps", R.i(quant.dropout.steps)),
                                 ("apply", R.s(quant.dropout.apply))])),
                ("fold_bn", R.b(quant.foldBN)), ("freeze_bn_after", quant.freezeBNAfter.map(R.i) ?? R.null),
                ("calibration_batches", R.i(quant.calibrationBatches)), ("residual_adds", R.b(quant.residualAdds)),
                ("equalize", R.b(quant.equalize)), ("bias_correction", R.b(quant.biasCorrection)),
                ("overrides", R.l(quant.overrides.map { o in
                    var e: [(String, Tree)] = [("pattern", R.s(o.pattern)), ("skip", R.b(o.skip))]
                    if let w = o.weightBits { e.append(("weight_bits", R.i(w))) }
                    if let a = o.inputBits { e.append(("input_bits", R.i(a))) }
                    return R.m(e)
                })),
                ("init_from", quant.initFrom.map(R.s) ?? R.null),
            ])),
            ("eval", R.m([("split", R.s(eval.split)), ("every_epochs", R.i(eval.everyEpochs)), ("metric", R.s(eval.metric)),
                          ("batch", R.i(eval.batch)), ("final_split", R.s(eval.finalSplit))])),
        ])
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
        guard FileManager.default.fileExists(atPath: path) else {
            throw RecipeError(origin: Origin(file: path), "recipe file not found" + (chain.isEmpty ? "" : " (named by 'base:' in \(chain.last!))"))
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw RecipeError(origin: Origin(file: path), "cannot read the file as UTF-8 text")
        }
        let tree = try Tree.parse(text, file: path)
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
