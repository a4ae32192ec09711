import Foundation

/// Reads an HDF5 file in a child process first, so that a file libhdf5 crashes on cannot crash us.
///
/// libhdf5 (1.10.8 on Debian 12) has memory-safety bugs on crafted input: fuzzing our readers finds
/// heap overflows in `H5HG_read`, oversized allocations in `H5C_protect` and SEGVs in its decoders,
/// all before any of our checks can run (the checkpoint `Trailer` refuses damaged files, but a crafted
/// file can carry a matching trailer, and `hdf5_chips` files are written by other tools and have none).
/// Validating HDF5's own metadata is libhdf5's job, so the fix is isolation: with `executable` set
/// (the `qat` command sets it to itself), `vet` runs `EXECUTABLE _read-hdf5 KIND FILE ARGS...`, a child
/// that performs the same read the caller is about to do (`qat` maps KIND to it), and waits for it:
/// - the child exits (0: it read the file, 1: it refused it with a message): the caller then reads the
///   file itself. libhdf5 is deterministic, so it reaches the same outcome, now known to be safe;
/// - the child is killed by a signal (libhdf5 crashed, or ran out of memory) or runs past the time
///   limit: `vet` throws `HDF5Error(.corrupt)` naming the file and the signal; nothing was loaded.
/// Without `executable` (libraries, tests, the fuzz harnesses) the read happens in process, as before.
/// Cost: one process start plus a second read of the file (measured in docs/RELIABILITY.md).
public enum H5Sandbox {
    /// The program that runs the child read, or nil to read in process. Set once at start-up.
    nonisolated(unsafe) public static var executable: String?
    /// The hidden command name the child is started with.
    public static let command = "_read-hdf5"

    /// Seconds the child may take: a minute plus one per 20 MB of file (libhdf5 reads far faster).
    public static func timeLimit(fileBytes: Int) -> Double { 60 + Double(fileBytes) / 20e6 }

    /// Reads `path` as `kind` in a child process (see the type's comment); returns when the caller may
    /// read it in process. `arguments` carry the caller's caps, so the child reads exactly as far.
    /// `timeLimit` replaces `timeLimit(fileBytes:)` (tests).
    public static func vet(_ path: String, kind: String, arguments: [String] = [], timeLimit: Double? = nil) throws {
        guard let exe = executable else { return }
        try vet(path, kind: kind, arguments: arguments, timeLimit: timeLimit, executable: exe)
    }

    static func vet(_ path: String, kind: String, arguments: [String], timeLimit: Double?, executable exe: String) throws {
        var st = stat()
        // Missing files, directories and the like: the in-process reader explains them.
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return }
        let argv = [exe, command, kind, path] + arguments
        var pid: pid_t = 0
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let cargs = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        let rc = posix_spawn(&pid, exe, &actions, nil, cargs, environ)
        guard rc == 0 else {
            throw HDF5Error(.io, file: path, "cannot start the process that checks HDF5 files (\(exe)): \(String(cString: strerror(rc)))")
        }
        let limit = timeLimit ?? Self.timeLimit(fileBytes: Int(st.st_size))
        let start = Date()
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR {
                throw HDF5Error(.io, file: path, "lost the process that checks HDF5 files: \(String(cString: strerror(errno)))")
            }
            if Date().timeIntervalSince(start) > limit {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw HDF5Error(.corrupt, file: path, String(format: "reading it did not finish within %.0f s (libhdf5 hangs on this file): it is corrupt or crafted; nothing was loaded", limit))
            }
            usleep(r == 0 && Date().timeIntervalSince(start) < 0.5 ? 1_000 : 20_000)
        }
        // WIFSIGNALED / WTERMSIG are C macros Swift does not import.
        let signal = status & 0x7f
        if signal != 0 && signal != 0x7f {
            let name = signalName(signal)
            throw HDF5Error(.corrupt, file: path, "libhdf5 crashed reading it (\(name), in a separate process that checks HDF5 files first): the file is corrupt or crafted; nothing was loaded; use another copy of it")
        }
        let code = (status >> 8) & 0xff
        // A child that aborted through a Swift runtime trap exits by SIGILL/SIGTRAP (caught above); any
        // other status than 0 or 1 means it did not finish its read normally.
        guard code == 0 || code == 1 else {
            throw HDF5Error(.corrupt, file: path, "the process that checks HDF5 files first ended with status \(code) reading it: the file is corrupt or crafted; nothing was loaded")
        }
    }

    static func signalName(_ s: Int32) -> String {
        switch s {
        case SIGSEGV: return "SIGSEGV"
        case SIGBUS: return "SIGBUS"
        case SIGABRT: return "SIGABRT"
        case SIGFPE: return "SIGFPE"
        case SIGILL: return "SIGILL"
        case SIGTRAP: return "SIGTRAP"
        case SIGKILL: return "SIGKILL, e.g. out of memory"
        default: return "signal \(s)"
        }
    }
}
