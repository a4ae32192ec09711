import Foundation
import UserPaths

/// A folder written as a whole: filled under a temporary name beside its destination
/// (`.NAME.partial-HOST-PID-RANDOM`, see `Temporaries`) and renamed into place when complete. The
/// destination is absent (or empty) or complete, never half-written, so an interrupted `qat data synth
/// --out` or cache generation never blocks a rerun; the next start removes the stale temporary folder.
public enum StagedFolder {
    /// Refuses a destination that exists and is not an empty folder (nothing is changed).
    public static func checkDestination(_ dest: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dest, isDirectory: &isDir) else { return }
        guard isDir.boolValue else { throw FileError(.notEmpty, path: dest, "exists and is a file; choose a new folder (nothing was overwritten)") }
        if let items = try? FileManager.default.contentsOfDirectory(atPath: dest), !items.isEmpty {
            throw FileError(.notEmpty, path: dest, "already exists and is not empty; choose a new folder (nothing was overwritten)")
        }
    }

    /// Creates `dest` (absent or an empty folder) by calling `fill` with a fresh temporary folder beside
    /// it, then renaming that folder to `dest`. If `fill` throws, the temporary folder is removed and the
    /// error passes on. Stale temporary folders of `dest` left by dead processes are removed first.
    public static func create(_ dest: String, fill: (String) throws -> Void) throws {
        let url = URL(fileURLWithPath: dest)
        let parent = url.deletingLastPathComponent().path, name = url.lastPathComponent
        do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
        catch { throw FileError(.io, path: dest, "cannot create its parent folder \(parent): \(PathProblem.diagnose(dest) ?? describe(error))") }
        Temporaries.removeStale(in: parent, for: name)
        try checkDestination(dest)
        let tmpName = Temporaries.begin(for: name, .folder)
        defer { Temporaries.end(tmpName) }
        let tmp = parent + "/" + tmpName
        guard mkdir(tmp, 0o755) == 0 else {
            throw FileError(.io, path: dest, "cannot create the temporary folder \(tmp): \(FileError.errnoText(errno))")
        }
        do {
            try fill(tmp)
            // rename(2) replaces an empty folder and refuses a non-empty one (ENOTEMPTY/EEXIST).
            guard rename(tmp, dest) == 0 else {
                let err = errno
                if err == ENOTEMPTY || err == EEXIST {
                    throw FileError(.notEmpty, path: dest, "was filled by another process meanwhile; nothing was overwritten")
                }
                throw FileError(.io, path: dest, "cannot move the finished folder \(tmp) into place: \(FileError.errnoText(err))")
            }
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw error
        }
        AtomicFile.syncFolder(parent)
    }

    /// A Foundation error's reason without its `NSCocoaErrorDomain` wrapping.
    static func describe(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return FileError.errnoText(Int32(underlying.code))
        }
        return ns.localizedDescription
    }
}
