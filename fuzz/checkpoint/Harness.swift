// libFuzzer harness: bytes written to a file and loaded with Checkpoint.load, compiled into the
// Checkpoint module by scripts/fuzz.sh. Beyond "no crash" (and no out-of-bounds access: ASan), it
// traps when anything but CheckpointError escapes, and for a file that loads it runs the quantization
// report, applies it non-strictly to a small model and checks that saving and loading again gives the
// same checkpoint. Loads use small LoadLimits so a declared giant entry costs no time; the limit
// arithmetic is the same at any size.
//
// QAT_FUZZ_SEEDS=DIR writes the seed files of fuzz/corpus/checkpoint into DIR and exits.
import Foundation
import CHDF5
import HDF5
import Kernels
import NN

private let limits = LoadLimits(maxEntryElements: 1 << 16, maxTotalElements: 1 << 18)
private let dir: String = {
    // In memory when the machine has /dev/shm: one file write per input, so a disk would set the pace.
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm/" : NSTemporaryDirectory()
    let d = base + "qat-fuzz-checkpoint-\(getpid())"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: dir) }
    return d
}()
nonisolated(unsafe) private var model: Module? = nil

private func seeds(_ out: String) throws {
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    var rng = RNG(seed: 1)
    let m = Sequential(try Conv2d(1, 2, kernel: 1, rng: &rng), BatchNorm2d(2), Dropout(p: 0.1, seed: 1))
    var c = Checkpoint.capture(model: m)
    c.recipe = "name: seed\nmodel: {backbone: resnet18}\n"
    c.metricsJSON = "{\"top1\": 0.5}"
    c.optimizerType = "SGD"; c.optimizerStep = 3
    c.optimizer["0.weight"] = ["momentum_buffer": .init(shape: [2, 1, 1, 1], values: [0.1, -0.2])]
    c.quant["0.weightQuantizer"] = ["scale": .init(shape: [2], values: [0.01, 0.02]), "zeroPoint": .init(shape: [2], values: [0, 0]),
                                    "initialized": .init(shape: [1], values: [1])]
    c.quantAttributes["0.weightQuantizer"] = ["bits": "8", "scheme": "8-bit symmetric signed per-channel(axis 0)", "mode": "minmax", "qmin": "-128", "qmax": "127"]
    try c.save(to: out + "/checksummed.h5")
    try Checkpoint().save(to: out + "/empty.h5")
    // A file from before checksums: the same content without crc32 attributes, so mutations of it
    // reach the value checks instead of stopping at a checksum.
    try c.save(to: out + "/legacy.h5")
    let f = H5Fopen(out + "/legacy.h5", qat_H5F_ACC_RDWR(), qat_H5P_DEFAULT())
    H5Adelete(f, "checksum")
    for p in ["/params/0.weight", "/params/0.bias", "/params/1.weight", "/params/1.bias", "/buffers/1.runningMean", "/buffers/1.runningVar",
              "/optimizer/0.weight/momentum_buffer", "/quant/0.weightQuantizer/scale", "/quant/0.weightQuantizer/zeroPoint",
              "/quant/0.weightQuantizer/initialized", "/rng/2"] {
        let ds = H5Dopen2(f, p, qat_H5P_DEFAULT()); H5Adelete(ds, "crc32"); H5Dclose(ds)
    }
    H5Fclose(f)
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    if let out = ProcessInfo.processInfo.environment["QAT_FUZZ_SEEDS"] {
        do { try seeds(out); exit(0) } catch { fatalError("seeds: \(error)") }
    }
    var rng = RNG(seed: 2)
    model = Sequential(try! Conv2d(1, 2, kernel: 1, rng: &rng), BatchNorm2d(2), Dropout(p: 0.1, seed: 1))
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = dir + "/input.h5"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0 && write(fd, data, size) == size)
    close(fd)
    do {
        let c = try Checkpoint.load(from: path, limits: limits)
        _ = QuantReport(c).format()
        if let model { _ = try? c.apply(to: model, strict: false, file: path) }
        try c.save(to: dir + "/again.h5")
        let back = try Checkpoint.load(from: dir + "/again.h5", limits: limits)
        if back != c { fatalError("a loaded checkpoint does not survive save + load") }
    } catch is CheckpointError {
    } catch {
        fatalError("Checkpoint.load threw \(type(of: error)), not CheckpointError: \(error)")
    }
    return 0
}
