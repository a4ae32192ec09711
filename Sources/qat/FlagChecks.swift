import ArgumentParser
import Datasets
import Kernels
import Recipes

/// Checks of size flags, called from each command's `validate()` (before `run()` creates or allocates
/// anything). A flag outside its range is a usage error (exit 64) naming the flag, the value, the
/// range and what the cap bounds. The caps are the recipes' (`Cap`), so a flag and the recipe key it
/// mirrors accept the same values.
enum FlagCheck {
    static func range(_ flag: String, _ value: Int, _ r: ClosedRange<Int>, _ what: String) throws {
        guard r.contains(value) else {
            throw ValidationError("\(flag) must be \(r.lowerBound)...\(r.upperBound) (\(what)), got \(value)")
        }
    }

    static func threads(_ threads: Int?) throws {
        if let threads { try range("--threads", threads, 1...Parallel.maxThreads, "threads for kernels and OpenBLAS") }
    }

    static func reps(_ reps: Int) throws { try range("--reps", reps, 1...100_000, "timed repetitions") }

    /// A batch of `batch` images of `size` px: each within its cap, and their pixels within
    /// `Cap.batchPixels` (the same rule as train.batch x data.input_size in a recipe).
    static func batch(_ batch: Int, size: Int, sizeFlag: String = "--size", minSize: Int) throws {
        try range("--batch", batch, 1...Cap.batch.max, Cap.batch.what)
        try range(sizeFlag, size, minSize...Cap.inputSize.max, Cap.inputSize.what)
        guard batch * size * size <= Cap.batchPixels else {
            throw ValidationError("--batch \(batch) at \(sizeFlag) \(size) is \(batch * size * size) pixels per batch, above the cap of \(Cap.batchPixels); "
                                  + "use --batch \(Cap.batchPixels / (size * size)) or less, or a smaller \(sizeFlag)")
        }
    }

    /// `qat data synth`'s values, through the library's own checks (`SyntheticAircraft.Config.validate`,
    /// `Chips.validate`), whose errors name the flag.
    static func synth(_ c: SyntheticAircraft.Config, chipSize: Int?) throws {
        do {
            try c.validate()
            if let chipSize { try Chips.validate(size: chipSize, scenes: c.images) }
        } catch let e as DataError { throw ValidationError(e.description) }
    }
}
