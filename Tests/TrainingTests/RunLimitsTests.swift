import XCTest
import Foundation
import Kernels
import Datasets
import Recipes
@testable import Training

/// Step-count overflow, ETA formatting, resuming a finished run, sweep typos blamed on the sweep file,
/// and the caps that Recipes and Datasets share.
final class RunLimitsTests: XCTestCase {
    /// epochs x batches per epoch is overflow-checked and capped; before the fix a release build
    /// wrapped it to a negative count and trained nothing.
    func testStepCountOverflowAndCapAreErrors() throws {
        var r = Recipe()
        r.train.epochs = Cap.epochs.max
        XCTAssertEqual(try TrainingRun.totalSteps(r, batchesPerEpoch: 1000), 1_000_000_000)
        XCTAssertThrowsError(try TrainingRun.totalSteps(r, batchesPerEpoch: 1001)) { e in
            XCTAssertTrue("\(e)".contains("train.epochs 1000000 x 1001 batches per epoch is more than the cap of 1000000000 optimizer steps"), "\(e)")
            XCTAssertTrue("\(e)".contains("at most 999000 here"), "\(e)")
        }
        r.train.epochs = Int.max   // past the recipe cap, as a library caller could set it
        XCTAssertThrowsError(try TrainingRun.totalSteps(r, batchesPerEpoch: 3)) { XCTAssertTrue("\($0)".contains("more than the cap"), "\($0)") }
        r.train.steps = 7
        XCTAssertEqual(try TrainingRun.totalSteps(r, batchesPerEpoch: 3), 7)
    }

    func testETAIsNeverNegativeOrATrap() {
        XCTAssertEqual(Console.duration(3725), "1h02m")
        XCTAssertEqual(Console.duration(59), "0m59s")
        XCTAssertEqual(Console.duration(-5), "?")
        XCTAssertEqual(Console.duration(.infinity), "?")
        XCTAssertEqual(Console.duration(1e30), ">1y")   // Int(1e30) would trap
    }

    /// --resume of a finished run changes nothing and says so; a run killed between its final record and
    /// final.json writes the final record once when resumed.
    func testResumingAFinishedRunAppendsNoSecondFinalRecord() throws {
        let root = tempDir("finished")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe(overrides: ["train.epochs=1"])
        guard case .finished(let f) = try TrainingRun(recipe: r, runDir: root + "/r", resume: false, quiet: true).run() else { return XCTFail() }
        let metrics = root + "/r/metrics.jsonl"
        let before = try String(contentsOfFile: metrics, encoding: .utf8), log = try String(contentsOfFile: root + "/r/train.log", encoding: .utf8)
        func finals() throws -> Int {
            try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").filter { $0.contains("\"type\":\"final\"") }.count
        }
        XCTAssertEqual(try finals(), 1)
        let again = try TrainingRun(recipe: r, runDir: root + "/r", resume: true, quiet: true)
        XCTAssertEqual(try again.run(), .alreadyFinished(f))
        XCTAssertEqual(try String(contentsOfFile: metrics, encoding: .utf8), before)
        XCTAssertEqual(try String(contentsOfFile: root + "/r/train.log", encoding: .utf8), log)

        try FileManager.default.removeItem(atPath: root + "/r/final.json")
        guard case .finished = try TrainingRun(recipe: r, runDir: root + "/r", resume: true, quiet: true).run() else { return XCTFail() }
        XCTAssertEqual(try finals(), 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/r/final.json"))
    }

    /// A typo in a grid or set key is reported at the sweep file's line, not as a --set override.
    func testSweepKeyTyposAreBlamedOnTheSweepFile() throws {
        let root = tempDir("sweepblame")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (body, key) in [("base: base.yaml\ngrid:\n  trian.epochs: [1, 2]\n", "trian"), ("base: base.yaml\ngrid:\n  train.epocs: [1, 2]\n", "train.epocs"),
                            ("base: base.yaml\nset:\n  trian.epochs: 1\n", "trian")] {
            let path = try writeSweep(root, body)
            XCTAssertThrowsError(try Sweep.load(path)) { e in
                guard let e = e as? RecipeError else { return XCTFail("\(e)") }
                XCTAssertEqual(e.origin?.file, path, body)
                XCTAssertEqual(e.origin?.line, 3, body)
                XCTAssertEqual(e.key, key)
                XCTAssertFalse(e.description.contains("--set"), e.description)
            }
        }
        let empty = try writeSweep(root, "# nothing yet\n")
        XCTAssertThrowsError(try Sweep.load(empty)) { XCTAssertTrue("\($0)".contains("is empty"), "\($0)") }
        XCTAssertThrowsError(try Sweep.load(root)) { XCTAssertTrue("\($0)".contains("is a directory"), "\($0)") }
    }

    /// Recipes cannot import Datasets or Kernels, so the caps they share are declared twice.
    func testRecipeCapsEqualTheLibrariesCaps() {
        XCTAssertEqual(Cap.synthImages.max, SyntheticAircraft.Config.maxImages)
        XCTAssertEqual(Cap.synthSize.max, SyntheticAircraft.Config.maxSize)
        XCTAssertEqual(Cap.synthAircraftPerScene, SyntheticAircraft.Config.maxAircraftPerScene)
        XCTAssertEqual(Cap.chipSize.max, Chips.maxSize)
        XCTAssertEqual(Cap.chipBytes, HDF5ClassificationSource.maxImageBytes)
        XCTAssertEqual(Cap.threads.max, Parallel.maxThreads)
    }
}
