import Foundation
import Files
import Recipes

/// The run directory a `TrainingRun` owns: chosen (`--run-dir` or the next `runs/<name>/<n>`), locked
/// for the run's life (`FileLock` on `DIR/.lock`: a second `qat train` into the same directory is
/// refused with the holder's pid), checked (a new run only into an empty directory; `--resume` only
/// with the same recipe), and cleared of stale temporaries left by a killed writer.
///
/// A directory without `checkpoints/last.h5` holds nothing to continue (the run died in its first
/// epoch: kill -9, divergence, a full disk). `--resume` restarts such a directory from step 0 when
/// its stored recipe matches, instead of leaving it neither resumable nor restartable.
///
/// Until `commit()` the directory is provisional: if the run's setup fails (bad data, model or
/// `init_from`), a directory this claim created is removed again, so a failed start leaves nothing.
final class RunDirectory {
    let path: String
    let lock: FileLock
    /// The caller passed the lock in (a sweep holds its cells' locks) and releases it itself.
    let lockIsBorrowed: Bool
    /// `checkpoints/last.h5` exists: a resume continues from it. False with `--resume`: step 0.
    let hasCheckpoint: Bool
    /// This claim made the directory (removed again if the setup fails before `commit()`).
    let created: Bool
    private(set) var committed = false

    /// What a run directory may hold when it has no checkpoint and is resumed from step 0; anything
    /// else means it is not (only) a run that died before its first checkpoint.
    static let deadEndFiles: Set<String> = [".lock", "recipe.resolved.yaml", "metrics.jsonl", "train.log", "checkpoints"]

    private init(path: String, lock: FileLock, lockIsBorrowed: Bool, hasCheckpoint: Bool, created: Bool) {
        self.path = path; self.lock = lock; self.lockIsBorrowed = lockIsBorrowed; self.hasCheckpoint = hasCheckpoint; self.created = created
    }

    deinit { if !committed { abandon() } }

    /// Chooses, creates (unless resuming), locks and checks the run directory. `lock`: the directory's
    /// lock, already held by the caller.
    static func claim(recipe: Recipe, runDir: String?, resume: Bool, runsRoot: String, lock given: FileLock? = nil) throws -> RunDirectory {
        let fm = FileManager.default
        var created = false
        var dir: String
        if let runDir {
            dir = runDir
        } else {
            let parent = runsRoot + "/" + recipe.name
            let existing = ((try? fm.contentsOfDirectory(atPath: parent)) ?? []).compactMap(Int.init)
            if resume {
                guard let last = existing.max() else { throw TrainingError("--resume: no run of '\(recipe.name)' under \(parent) to resume (name one with --run-dir)") }
                dir = parent + "/\(last)"
            } else {
                try makeFolder(parent)
                // mkdir(2) without -p takes a number atomically: two runs started together get two.
                var n = (existing.max() ?? 0) + 1
                while mkdir(parent + "/\(n)", 0o755) != 0 {
                    guard errno == EEXIST else { throw TrainingError("cannot create run directory \(parent)/\(n): \(String(cString: strerror(errno)))") }
                    n += 1
                }
                dir = parent + "/\(n)"
                created = true
            }
        }
        var isDir: ObjCBool = false
        let exists = fm.fileExists(atPath: dir, isDirectory: &isDir)
        if exists && !isDir.boolValue { throw TrainingError("run directory \(dir) exists and is a file; choose another --run-dir") }
        if resume && !exists {
            throw TrainingError("--resume: \(dir)/checkpoints/last.h5 does not exist (nothing to resume; start without --resume)")
        }
        if !exists {
            try makeFolder((dir as NSString).deletingLastPathComponent)
            if mkdir(dir, 0o755) == 0 { created = true }
            else if errno != EEXIST { throw TrainingError("cannot create run directory \(dir): \(String(cString: strerror(errno)))") }
        }
        let lock: FileLock
        if let given {
            precondition(given.path == FileLock.file(ofDirectory: dir), "RunDirectory: the lock passed in is not \(dir)'s")
            lock = given
        } else {
            // The lock first, then the checks: a directory another process is writing is refused as
            // busy (naming that process), whatever it holds so far.
            do { lock = try FileLock.acquire(FileLock.file(ofDirectory: dir), guarding: "run directory \(dir)") }
            catch let e as FileError {
                if created { rmdir(dir) }
                if e.kind == .busy { throw TrainingError(e.message) }
                try check(dir, recipe: recipe, resume: resume)   // a read-only folder of someone else's: say what it is
                throw TrainingError("\(e)")
            }
        }
        let claimed = RunDirectory(path: dir, lock: lock, lockIsBorrowed: given != nil, hasCheckpoint: fm.fileExists(atPath: dir + "/checkpoints/last.h5"), created: created)
        // From here on, an error abandons the claim (deinit): a directory it created is removed.
        Temporaries.removeStale(in: dir)
        Temporaries.removeStale(in: dir + "/checkpoints")
        try check(dir, recipe: recipe, resume: resume)
        return claimed
    }

    /// Refuses what a run must not write into: another run or foreign files without `--resume`, a
    /// different recipe or foreign files with it.
    static func check(_ dir: String, recipe: Recipe, resume: Bool) throws {
        let fm = FileManager.default
        let entries = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0 != ".lock" && !Temporaries.isStale($0) }
        let hasCheckpoint = fm.fileExists(atPath: dir + "/checkpoints/last.h5")
        let checkpointFiles = ((try? fm.contentsOfDirectory(atPath: dir + "/checkpoints")) ?? []).filter { !Temporaries.isStale($0) }
        let foreign = entries.filter { !deadEndFiles.contains($0) } + checkpointFiles.map { "checkpoints/" + $0 }
        if resume {
            if let stored = try? String(contentsOfFile: dir + "/recipe.resolved.yaml", encoding: .utf8), stored != recipe.resolvedYAML() {
                let a = stored.split(separator: "\n"), b = recipe.resolvedYAML().split(separator: "\n")
                let diff = zip(a, b).first { $0 != $1 }.map { "'\($0.0.trimmingCharacters(in: .whitespaces))' in the run vs '\($0.1.trimmingCharacters(in: .whitespaces))' now" } ?? "different length"
                throw TrainingError("--resume: the recipe differs from \(dir)/recipe.resolved.yaml (\(diff)); resume with the same recipe and --set values, or start a new run")
            }
            if !hasCheckpoint && !foreign.isEmpty {
                throw TrainingError("--resume: \(dir) has no checkpoints/last.h5 but holds \(foreign.sorted().joined(separator: ", ")): it is not a run that stopped before its first checkpoint, so nothing was changed. Start a new run in another --run-dir")
            }
            return
        }
        guard !entries.isEmpty else { return }
        if !hasCheckpoint && foreign.isEmpty {
            throw TrainingError("run directory \(dir) already exists; pass --resume to continue it (it stopped before its first checkpoint, so it restarts from step 0 with the same recipe), or choose another --run-dir (nothing was changed)")
        }
        throw TrainingError("run directory \(dir) already exists; pass --resume to continue it, or choose another --run-dir (nothing was changed)")
    }

    static func makeFolder(_ dir: String) throws {
        guard !dir.isEmpty else { return }
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        catch { throw TrainingError("cannot create folder \(dir) for run directories: \((error as NSError).localizedDescription)") }
    }

    /// The run's files are in place (the resolved recipe written): the directory stays, whatever happens.
    func commit() { committed = true }

    /// Releases the lock (unless borrowed): the run wrote its last file.
    func release() { if !lockIsBorrowed { lock.release() } }

    /// A failed setup: a directory this claim created is removed (only what the setup put there: the
    /// lock file and an empty checkpoints folder); an existing one loses only a lock file this claim
    /// created.
    private func abandon() {
        guard !lockIsBorrowed else { return }
        if created { rmdir(path + "/checkpoints") }
        if created || lock.createdFile { lock.releaseRemovingFile() } else { lock.release() }
        if created { rmdir(path) }
    }
}
