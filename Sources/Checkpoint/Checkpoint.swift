import Foundation
import CHDF5
import HDF5
import Files

/// Checkpoint failures are HDF5 file errors with checkpoint-specific kinds (missing keys, versions...).
public typealias CheckpointError = HDF5Error
import Kernels
import Autodiff
import NN
import Optim

/// Everything a training run needs to continue bit for bit, in memory. Layout on disk
/// (docs/CHECKPOINTS.md): `/params/<path>`, `/buffers/<path>`, `/optimizer/<path>/<slot>`,
/// `/quant/<path>/<name>`, `/rng/<module path>` (uint64 [key, counter]); attributes on `/`.
public struct Checkpoint: Equatable {
    public static let formatVersion: Int64 = 1

    public struct Entry: Equatable {
        public var shape: [Int]
        public var values: [Float]
        public init(shape: [Int], values: [Float]) { self.shape = shape; self.values = values }
        public init(_ t: Tensor) { shape = t.shape; values = t.scalars }
    }

    public var params: [String: Entry] = [:]
    public var buffers: [String: Entry] = [:]
    /// path -> slot -> values (`momentum_buffer`, `exp_avg`, `exp_avg_sq`, `step`).
    public var optimizer: [String: [String: Entry]] = [:]
    public var optimizerType = ""
    public var optimizerStep: Int64 = 0
    /// Quantizer state: quantizer path -> name (`scale`, `zeroPoint`, `initialized`) -> values.
    public var quant: [String: [String: Entry]] = [:]
    /// Attributes of each `/quant/<path>` group (bits, scheme, mode, qmin, qmax).
    public var quantAttributes: [String: [String: String]] = [:]
    /// Random generators of modules (dropout), by module path.
    public var moduleRNG: [String: RNG] = [:]

    public var step: Int64 = 0
    public var epoch: Int64 = 0
    public var seed: UInt64 = 0
    /// The run's main generator (data order, augmentation).
    public var rng = RNG(seed: 0)
    public var recipe = ""
    /// Metrics at save time as a JSON object text.
    public var metricsJSON = "{}"
    public var model = ""

    public init() {}
}

/// Options for `Checkpoint.save`, mostly for tests.
public struct SaveOptions: Sendable {
    /// Throw after writing this many datasets (simulates a crash mid-save).
    public var failAfterDatasets: Int?
    /// Make the file write fail like a full disk after this many bytes (`WriteFaults`).
    public var failWriteAfterBytes: Int?
    public init(failAfterDatasets: Int? = nil, failWriteAfterBytes: Int? = nil) {
        self.failAfterDatasets = failAfterDatasets; self.failWriteAfterBytes = failWriteAfterBytes
    }
}

/// What `Checkpoint.load` accepts before it allocates: a file declares every shape, so without caps a
/// damaged or crafted file could ask for any amount of memory. The defaults are far above any model
/// this framework trains (the flagship detector has a few million parameters).
public struct LoadLimits: Sendable {
    /// Elements of one dataset (2^28: 1 GiB of float32).
    public var maxEntryElements: Int
    /// Elements of all datasets of a file together (2^30: 4 GiB of float32).
    public var maxTotalElements: Int
    public init(maxEntryElements: Int = 1 << 28, maxTotalElements: Int = 1 << 30) {
        self.maxEntryElements = maxEntryElements; self.maxTotalElements = maxTotalElements
    }
}

extension Checkpoint {
    /// The checksum scheme new files declare in the root attribute `checksum`: a `crc32` attribute on
    /// every dataset (CRC-32 of its stored bytes, `zlib.crc32` in Python).
    public static let checksumScheme = "crc32"

    /// Writes atomically: the file is built in memory, then written to a temporary file in the same
    /// folder, fsynced and renamed over `path` (and the folder fsynced). A failure or a kill at any
    /// point leaves the previous file at `path` untouched, and libhdf5 never sees a disk error.
    public func save(to path: String, options: SaveOptions = SaveOptions()) throws {
        let w = try H5Writer(creating: path)
        var written = 0
        func tick() throws {
            written += 1
            if let limit = options.failAfterDatasets, written > limit {
                throw CheckpointError(.io, file: path, "injected failure after \(limit) datasets")
            }
        }
        func put(_ g: H5Handle, _ name: String, _ e: Entry) throws {
            try tick()
            guard Extent.count(e.shape) == e.values.count else {
                throw CheckpointError(.invalid, file: path, "entry \(name) has \(e.values.count) values for shape \(e.shape)")
            }
            try e.values.withUnsafeBufferPointer { try w.floats(g, name, shape: e.shape, $0.baseAddress ?? UnsafePointer(bitPattern: 4)!) }
        }
        let root = try w.group("/")
        try w.attr(root, "format_version", int64: Checkpoint.formatVersion)
        try w.attr(root, "checksum", string: Checkpoint.checksumScheme)
        try w.attr(root, "step", int64: step)
        try w.attr(root, "epoch", int64: epoch)
        try w.attr(root, "seed", uint64: seed)
        try w.attr(root, "rng_key", uint64: rng.key)
        try w.attr(root, "rng_counter", uint64: rng.counter)
        try w.attr(root, "recipe", string: recipe)
        try w.attr(root, "metrics", string: metricsJSON)
        try w.attr(root, "model", string: model)
        let pg = try w.group("/params")
        for k in params.keys.sorted() { try put(pg, k, params[k]!) }
        let bg = try w.group("/buffers")
        for k in buffers.keys.sorted() { try put(bg, k, buffers[k]!) }
        let og = try w.group("/optimizer")
        try w.attr(og, "type", string: optimizerType)
        try w.attr(og, "step", int64: optimizerStep)
        for k in optimizer.keys.sorted() {
            let g = try w.group("/optimizer/\(k)")
            for s in optimizer[k]!.keys.sorted() { try put(g, s, optimizer[k]![s]!) }
        }
        _ = try w.group("/quant")
        for k in Set(quant.keys).union(quantAttributes.keys).sorted() {
            let g = try w.group("/quant/\(k)")
            for (a, v) in (quantAttributes[k] ?? [:]).sorted(by: { $0.key < $1.key }) { try w.attr(g, a, string: v) }
            for s in (quant[k] ?? [:]).keys.sorted() { try put(g, s, quant[k]![s]!) }
        }
        let rg = try w.group("/rng")
        for k in moduleRNG.keys.sorted() { try tick(); try w.uint64s(rg, k, [moduleRNG[k]!.key, moduleRNG[k]!.counter]) }
        try w.commit(replacing: .anything, faults: WriteFaults(failAfterBytes: options.failWriteAfterBytes))
    }

    /// Reads and validates a checkpoint file. Errors name the file and the problem: missing file, a
    /// directory, not HDF5, truncated/corrupt, unsupported format version, a shape over `limits`, a
    /// failed checksum, non-finite values or impossible quantizer parameters (`validate`). Files from
    /// before checksums (no `checksum` attribute on `/`) load without verification.
    public static func load(from path: String, limits: LoadLimits = LoadLimits()) throws -> Checkpoint {
        // In the qat command, a child process reads the file first (libhdf5 crashes on crafted files).
        try H5Sandbox.vet(path, kind: "checkpoint", arguments: ["\(limits.maxEntryElements)", "\(limits.maxTotalElements)"])
        var r = try H5Reader(opening: path)
        let root = try r.group("/")
        guard r.hasAttr(root, "format_version") else {
            throw CheckpointError(.invalid, file: path, "has no format_version attribute on '/': not a qat checkpoint")
        }
        let version = try r.int64(root, "format_version")
        guard version == formatVersion else {
            throw CheckpointError(.formatVersion, file: path, "has format_version \(version); this build reads version \(formatVersion) (use the qat release that wrote it, or re-export)")
        }
        if r.hasAttr(root, "checksum") {
            let scheme = try r.string(root, "checksum")
            guard scheme == checksumScheme else {
                throw CheckpointError(.formatVersion, file: path, "declares checksum scheme '\(scheme)'; this build verifies '\(checksumScheme)' (use the qat release that wrote it)")
            }
            r.requireChecksums = true
        }
        var c = Checkpoint()
        c.step = try r.int64(root, "step")
        c.epoch = try r.int64(root, "epoch")
        c.seed = try r.uint64(root, "seed")
        c.rng = RNG(key: try r.uint64(root, "rng_key"), counter: try r.uint64(root, "rng_counter"))
        c.recipe = try r.string(root, "recipe")
        c.metricsJSON = try r.string(root, "metrics")
        c.model = try r.string(root, "model")
        for required in ["/params", "/buffers", "/optimizer", "/quant", "/rng"] where !r.exists(required) {
            throw CheckpointError(.corrupt, file: path, "has no \(required) group: truncated or not written by qat")
        }
        // One budget for the whole file: each dataset may use what is left of it.
        var budget = limits.maxTotalElements
        func flat(_ group: String) throws -> [String: Entry] {
            let g = try r.group(group)
            var out: [String: Entry] = [:]
            for n in try r.members(g, path: group) {
                let (s, v) = try r.floats(g, n, where: "\(group)/\(n)", maxElements: min(limits.maxEntryElements, budget))
                budget -= v.count
                out[n] = Entry(shape: s, values: v)
            }
            return out
        }
        func nested(_ group: String) throws -> [String: [String: Entry]] {
            let g = try r.group(group)
            var out: [String: [String: Entry]] = [:]
            for n in try r.members(g, path: group) { out[n] = try flat("\(group)/\(n)") }
            return out
        }
        c.params = try flat("/params")
        c.buffers = try flat("/buffers")
        c.optimizer = try nested("/optimizer")
        let og = try r.group("/optimizer")
        c.optimizerType = try r.string(og, "type", of: "/optimizer")
        c.optimizerStep = try r.int64(og, "step", of: "/optimizer")
        c.quant = try nested("/quant")
        let qg = try r.group("/quant")
        for k in try r.members(qg, path: "/quant") {
            let g = try r.group("/quant/\(k)")
            var attrs: [String: String] = [:]
            for a in ["bits", "scheme", "mode", "qmin", "qmax"] where r.hasAttr(g, a) { attrs[a] = try r.string(g, a, of: "/quant/\(k)") }
            if !attrs.isEmpty { c.quantAttributes[k] = attrs }
        }
        let rg = try r.group("/rng")
        for n in try r.members(rg, path: "/rng") {
            let v = try r.uint64s(rg, n, where: "/rng/\(n)", expected: [2])
            c.moduleRNG[n] = RNG(key: v[0], counter: v[1])
        }
        try c.validate(file: path)
        return c
    }
}
