import Foundation
import UserPaths
import Kernels
import Autodiff
import Datasets
import Recipes
import Files

/// An error in a training run that the user can fix (data, checkpoints, run directories), with the
/// file or key it concerns.
public struct TrainingError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The splits of a classification dataset.
public struct ClassificationData: Sendable {
    public let train: HDF5ClassificationSource
    public let val: HDF5ClassificationSource
    public let test: HDF5ClassificationSource
    public let root: String
    public var classes: [String] { train.classes }

    public func split(_ name: String) -> HDF5ClassificationSource {
        switch name {
        case "train": return train
        case "val": return val
        default: return test
        }
    }

    /// Opens (and for `synth_chips` first generates, once, into the cache) the data a recipe names.
    public static func open(_ spec: Recipe.DataSpec, log: (String) -> Void = { _ in }) throws -> ClassificationData {
        let dir: String
        switch spec.format {
        case "hdf5_chips":
            dir = spec.path!
        default:
            dir = try SyntheticBenchmark.folder(spec, log: log) + "/chips"
        }
        func load(_ split: String) throws -> HDF5ClassificationSource {
            let p = dir + "/\(split).h5"
            guard FileManager.default.fileExists(atPath: p) else {
                throw TrainingError("data: \(p) does not exist (data.path must be a folder with train.h5, val.h5 and test.h5, as `qat data synth --chips` writes under chips/)")
            }
            do { return try HDF5ClassificationSource(path: p) } catch { throw TrainingError("data: \(error)") }
        }
        let d = ClassificationData(train: try load("train"), val: try load("val"), test: try load("test"), root: dir)
        guard d.train.count > 0 else { throw TrainingError("data: \(dir)/train.h5 holds no samples") }
        for s in [d.val, d.test] where s.classes != d.train.classes {
            throw TrainingError("data: the splits in \(dir) name different classes (\(s.classes.count) vs \(d.train.classes.count))")
        }
        return d
    }
}

/// The synthetic aircraft benchmark of a recipe's `data.synth`, generated once into `data.cache`.
public enum SyntheticBenchmark {
    /// The cache folder of a parameter set: a COCO folder (images/, annotations/{train,val,test}.json;
    /// what synth_coco reads) with the chips cut from it (chips/{train,val,test}.h5; what synth_chips
    /// reads). One process generates an entry, holding its lock (`.<entry>.lock` beside it); another
    /// that needs the same entry waits for it (saying which process it waits for) and then reads it.
    /// The entry is written as a `StagedFolder` (a temporary folder renamed at the end), so an
    /// interrupted generation never leaves a half data set behind, and stale temporary folders of dead
    /// processes are removed at the next start.
    public static func folder(_ spec: Recipe.DataSpec, log: (String) -> Void) throws -> String {
        let s = spec.synth
        let key = "aircraft-n\(s.images)-s\(s.size)-seed\(s.seed)-imb\(fmt(s.imbalance))-noise\(fmt(s.labelNoise))-\(s.noiseMode)-chip\(s.chipSize)"
        let dir = spec.cache + "/" + key
        let fm = FileManager.default
        func complete() -> Bool { fm.fileExists(atPath: dir + "/chips/test.h5") }
        do { try fm.createDirectory(atPath: spec.cache, withIntermediateDirectories: true) }
        catch { throw TrainingError("data.cache: cannot create \(spec.cache): \(PathProblem.cause(of: error, path: spec.cache))") }
        Temporaries.removeStale(in: spec.cache)
        if complete() { return dir }
        let lock: FileLock
        do {
            guard let l = try FileLock.acquire(spec.cache + "/.\(key).lock", guarding: "data cache entry \(dir)",
                                               waiting: { h in log("data: waiting for \(h.map(\.description) ?? "another process"), which is generating \(dir)") },
                                               cancelled: { StopSignal.requested != 0 }) else {
                throw TrainingError("data: interrupted while waiting for another process to generate \(dir)")
            }
            lock = l
        } catch let e as FileError { throw TrainingError("data.cache: \(e)") }
        defer { lock.release() }
        if complete() { return dir }   // the process we waited for generated it
        // Builds before StagedFolder wrote `<entry>.partial-<UUID>` (no owner in the name); holding the
        // entry's lock, any such folder of this entry is a leftover.
        for name in (try? fm.contentsOfDirectory(atPath: spec.cache)) ?? [] where name.hasPrefix(key + ".partial-") {
            try? fm.removeItem(atPath: spec.cache + "/" + name)
        }
        // An incomplete entry (written by an older build without staging) is ours to replace: we hold its lock.
        if fm.fileExists(atPath: dir) {
            do { try fm.removeItem(atPath: dir) } catch { throw TrainingError("data.cache: cannot remove the incomplete \(dir): \((error as NSError).localizedDescription)") }
        }
        var c = SyntheticAircraft.Config()
        c.images = s.images; c.size = s.size; c.seed = s.seed; c.imbalance = s.imbalance; c.labelNoise = s.labelNoise
        c.noiseMode = SyntheticAircraft.NoiseMode(rawValue: s.noiseMode) ?? .symmetric
        c.minLength = 16 * Double(s.size) / 256; c.maxLength = 64 * Double(s.size) / 256
        log("data: generating the synthetic aircraft benchmark into \(dir) (\(s.images) images, once)")
        do {
            try StagedFolder.create(dir) { tmp in
                _ = try SyntheticAircraft.generate(c, to: tmp)
                try fm.createDirectory(atPath: tmp + "/chips", withIntermediateDirectories: true)
                for split in ["train", "val", "test"] {
                    _ = try Chips.write(cocoRoot: tmp, split: split, size: s.chipSize, to: tmp + "/chips/\(split).h5")
                }
            }
        } catch {
            throw TrainingError("data: generating \(dir) failed: \(error)")
        }
        return dir
    }

    static func fmt(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(v) }
}

/// Loader settings of a recipe (augmentation only for training); public so tasks outside this file
/// (detection) build their loaders the same way.
public func loaderConfig(_ r: Recipe, batch: Int, train: Bool) -> Loader.Config {
    var c = Loader.Config()
    c.batchSize = batch
    c.size = r.data.inputSize
    c.shuffle = train
    c.dropLast = train
    c.seed = r.seed ^ 0x10AD
    if train {
        var p = Augment.Policy()
        p.flipHorizontal = r.data.augment.hflip; p.flipVertical = r.data.augment.vflip; p.rotate90 = r.data.augment.rot90
        p.colorJitter = r.data.augment.colorJitter
        p.scaleCrop = r.data.augment.scaleCrop; p.scaleRange = (r.data.augment.scaleRange[0], r.data.augment.scaleRange[1])
        c.policy = p
    } else { c.policy = nil }
    c.prefetch = 1   // batches are built synchronously with makeBatch
    return c
}

/// The first `batches` batches of `source` without augmentation (in order): quantizer calibration and
/// PTQ bias-correction inputs.
func unaugmentedBatches(_ source: SampleSource, recipe: Recipe, batches: Int) throws -> [Tensor] {
    try orderedBatches(source, config: loaderConfig(recipe, batch: recipe.train.batch, train: false), batches: batches)
}

/// The first `batches` batches of `source` in split order under `config` (its batch size; augmentation
/// as the config says): calibration inputs, and the reference inputs of `TrainingTask.inputs`.
func orderedBatches(_ source: SampleSource, config: Loader.Config, batches: Int) throws -> [Tensor] {
    let batch = config.batchSize
    let l = try Loader(source, config: config)
    return try (0..<min(batches, l.batchCount())).map { b in
        let x = try l.makeBatch(epoch: 0, indices: Array((b * batch)..<min((b + 1) * batch, source.count)))
        return Tensor(shape: x.shape, storage: x.images)
    }
}
