import XCTest
import Foundation
import Checkpoint
import Files
import Recipes
@testable import Training

/// The pid of a process that has exited: the owner of a leftover temporary.
func deadPID() throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", "exit 0"]
    try p.run()
    p.waitUntilExit()
    return p.processIdentifier
}

func contents(_ dir: String) -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []) }

final class RunDirectoryTests: XCTestCase {
    /// Two runs into one directory: the second is refused while the first owns it, with the directory
    /// and the owner's pid in the message, resuming or not; once the first run ends, resume works.
    func testASecondWriterIsRefusedWhileTheFirstOwnsTheDirectory() throws {
        let root = tempDir("owner")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe(overrides: ["train.steps=3"])
        let dir = root + "/run"
        let first = try TrainingRun(recipe: r, runDir: dir, resume: false, quiet: true)
        for resume in [false, true] {
            XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: dir, resume: resume, quiet: true)) { e in
                XCTAssertTrue("\(e)".contains("run directory \(dir) is in use by process \(getpid())"), "\(e)")
            }
        }
        XCTAssertEqual(FileLock.holder(dir + "/.lock")?.pid, getpid())
        guard case .finished = try first.run() else { return XCTFail("not finished") }
        // run() released the directory; the refused attempts changed nothing in it.
        XCTAssertEqual(contents(dir), [".lock", "recipe.resolved.yaml", "metrics.jsonl", "train.log", "checkpoints", "final.json"])
        XCTAssertNoThrow(try TrainingRun(recipe: r, runDir: dir, resume: true, quiet: true))
    }

    /// A run that died before its first checkpoint (here: set up, never stepped, as after a kill -9 in
    /// epoch 1) leaves a directory without last.h5. A new run is refused with a hint; --resume with a
    /// different recipe is refused; --resume with the same recipe starts from step 0, says so, drops the
    /// dead attempt's metrics and temporaries, and finishes.
    func testADeadEndDirectoryResumesFromStepZero() throws {
        let root = tempDir("deadend")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe(overrides: ["train.steps=3"])
        let dir = root + "/run"
        do { _ = try TrainingRun(recipe: r, runDir: dir, resume: false, quiet: true) }   // dies here
        let dead = try deadPID()
        let staleTemp = ".last.h5.tmp-\(Temporaries.host)-\(dead)-1"
        FileManager.default.createFile(atPath: dir + "/checkpoints/" + staleTemp, contents: Data("half a checkpoint".utf8))
        try "{\"type\": \"nonfinite\", \"step\": 1}\n".write(toFile: dir + "/metrics.jsonl", atomically: true, encoding: .utf8)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoints/last.h5"))

        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: dir, resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("already exists; pass --resume") && "\(e)".contains("restarts from step 0"), "\(e)")
        }
        var changed = r; changed.train.optimizer.lr = 0.5
        XCTAssertThrowsError(try TrainingRun(recipe: changed, runDir: dir, resume: true, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("recipe differs"), "\(e)")
        }
        let run = try TrainingRun(recipe: r, runDir: dir, resume: true, quiet: true)
        XCTAssertEqual(run.step, 0)
        XCTAssertEqual(contents(dir + "/checkpoints"), [], "the dead writer's temporary is removed")
        XCTAssertEqual(try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8), "")
        guard case .finished(let f) = try run.run() else { return XCTFail("not finished") }
        XCTAssertEqual(f.steps, 3)
        XCTAssertTrue(try String(contentsOfFile: dir + "/train.log", encoding: .utf8).contains("has no checkpoint (the run stopped before its first one); starting from step 0"))
        XCTAssertFalse(try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).contains("nonfinite"))
    }

    /// --resume never adopts a folder that is not a run directory, and a new run never writes into a
    /// non-empty one; neither leaves a lock file behind.
    func testForeignFoldersAreLeftAlone() throws {
        let root = tempDir("foreign")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe(overrides: ["train.steps=3"])
        try FileManager.default.createDirectory(atPath: root + "/photos", withIntermediateDirectories: true)
        try "precious".write(toFile: root + "/photos/cat.png", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: root + "/photos", resume: true, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("has no checkpoints/last.h5 but holds cat.png") && "\(e)".contains("nothing was changed"), "\(e)")
        }
        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: root + "/photos", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("already exists; pass --resume to continue it, or choose another"), "\(e)")
        }
        XCTAssertEqual(contents(root + "/photos"), ["cat.png"])
    }

    /// A setup that fails after the directory was claimed (an init_from checkpoint that does not load)
    /// removes the directory it created, lock file included.
    func testAFailedSetupLeavesNoDirectory() throws {
        let root = tempDir("failedsetup")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try tinyRecipe(overrides: ["quant.mode=qat", "quant.init_from=\(root)/missing.h5"])
        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: root + "/a/run", resume: false, quiet: true)) { e in
            XCTAssertTrue("\(e)".contains("missing.h5"), "\(e)")
        }
        XCTAssertEqual(contents(root + "/a"), [])
        XCTAssertThrowsError(try TrainingRun(recipe: r, runDir: nil, resume: false, runsRoot: root + "/runs", quiet: true))
        XCTAssertEqual(contents(root + "/runs/tiny"), [])
    }
}
