import Foundation

/// The names of files and folders being written, and whether their writer is gone.
///
/// `AtomicFile` writes `NAME` through `.NAME.tmp-HOST-PID-RANDOM` in the same folder and `StagedFolder`
/// fills `NAME` as `.NAME.partial-HOST-PID-RANDOM`; the rename that publishes them removes the name.
/// A `kill -9` (or a power cut) leaves the temporary behind. Its name says who wrote it, so a later
/// start can tell a leftover from a write in progress: a temporary is stale when it was written on this
/// host by a process that no longer exists, or that carries this process's pid but is not one of the
/// temporaries this process is writing (a predecessor with the same pid: containers often start their
/// program as the same pid). Temporaries of other hosts (a folder on a network drive) are left for a
/// start on their own host; names in the older `.NAME.tmp-PID-RANDOM` form count as this host's.
public enum Temporaries {
    public enum Kind: String, Sendable {
        /// A file written by `AtomicFile`.
        case file = "tmp"
        /// A folder filled by `StagedFolder`.
        case folder = "partial"
    }

    /// Who wrote a temporary.
    public struct Owner: Equatable, Sendable {
        public var host: String
        public var pid: Int32
    }

    /// This machine's name as it appears in temporary names and lock files ('-' and '/' replaced, so
    /// the name parses back).
    public static let host: String = {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).map { $0 == "/" || $0 == "-" || $0 == " " ? "_" : $0 }
        return name.isEmpty ? "localhost" : String(name)
    }()

    /// A fresh temporary name (no folder) for `target` (a file or folder name, no folder), owned by
    /// this process.
    public static func name(for target: String, _ kind: Kind) -> String {
        ".\(target).\(kind.rawValue)-\(host)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// A fresh temporary name that this process is now writing: never judged stale until `end`.
    public static func begin(for target: String, _ kind: Kind) -> String {
        let n = name(for: target, kind)
        inFlight.insert(n)
        return n
    }

    /// The temporary `name` is renamed into place or removed.
    public static func end(_ name: String) { inFlight.remove(name) }

    /// Names of the temporaries this process is writing (threads write in parallel).
    final class InFlight: @unchecked Sendable {
        private var names: Set<String> = []
        private let lock = NSLock()
        func insert(_ n: String) { lock.lock(); names.insert(n); lock.unlock() }
        func remove(_ n: String) { lock.lock(); names.remove(n); lock.unlock() }
        func contains(_ n: String) -> Bool { lock.lock(); defer { lock.unlock() }; return names.contains(n) }
    }
    static let inFlight = InFlight()

    /// The target name, kind and owner of a temporary name; nil for any other name.
    public static func parse(_ name: String) -> (target: String, kind: Kind, owner: Owner)? {
        guard name.hasPrefix(".") else { return nil }
        for kind in [Kind.file, .folder] {
            guard let marker = name.range(of: ".\(kind.rawValue)-", options: .backwards), marker.lowerBound > name.index(after: name.startIndex) else { continue }
            let target = String(name[name.index(after: name.startIndex)..<marker.lowerBound])
            let parts = name[marker.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count >= 2, UInt32(parts[parts.count - 1]) != nil, let pid = Int32(parts[parts.count - 2]), pid > 0 else { continue }
            return (target, kind, Owner(host: parts.dropLast(2).joined(separator: "-"), pid: pid))
        }
        return nil
    }

    /// True when `owner` is a process of this host; false when it is gone; nil when that cannot be told
    /// (another host).
    public static func isAlive(_ owner: Owner) -> Bool? {
        guard owner.host.isEmpty || owner.host == host else { return nil }
        if owner.pid == getpid() { return true }
        return kill(owner.pid, 0) == 0 || errno == EPERM
    }

    /// A temporary whose writer is gone.
    public static func isStale(_ name: String) -> Bool {
        guard let t = parse(name) else { return false }
        if (t.owner.host.isEmpty || t.owner.host == host) && t.owner.pid == getpid() { return !inFlight.contains(name) }
        return isAlive(t.owner) == false
    }

    /// Removes the stale temporaries directly in `dir` (of `target` only, when given) and returns their
    /// names. Temporaries of live processes and of other hosts stay; a folder that cannot be listed
    /// holds nothing to remove.
    @discardableResult
    public static func removeStale(in dir: String, for target: String? = nil) -> [String] {
        var removed: [String] = []
        for name in entries(of: dir, prefix: target.map { ".\($0)." } ?? ".") {
            guard let t = parse(name), target == nil || t.target == target, isStale(name) else { continue }
            let path = dir + "/" + name
            if (try? FileManager.default.removeItem(atPath: path)) != nil { removed.append(name) }
        }
        return removed
    }

    /// Names in `dir` starting with `prefix`, read with readdir(3): a folder of thousands of images is
    /// listed on every write into it, so no Foundation objects per entry that does not match.
    static func entries(of dir: String, prefix: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        let p = Array(prefix.utf8)
        var out: [String] = []
        while let e = readdir(d) {
            let matches = withUnsafeBytes(of: &e.pointee.d_name) { raw -> Bool in
                guard raw.count > p.count else { return false }
                for i in 0..<p.count where raw[i] != p[i] { return false }
                return true
            }
            if matches {
                out.append(withUnsafeBytes(of: &e.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                })
            }
        }
        return out
    }
}
