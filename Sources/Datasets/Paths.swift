import Foundation

/// Keeps a dataset's files inside its folder. Annotation files come from elsewhere (downloads,
/// converters, other people); a `file_name` of `../../home/me/.ssh/id.png`, an absolute path, or a
/// symlink in `images/` pointing out of it would make a run read files the dataset does not own.
enum DatasetPath {
    enum Check: Equatable {
        /// The file exists and resolves (symlinks followed) inside the folder; the path to open.
        case inside(String)
        /// The name is relative and clean but nothing is there.
        case missing(String)
        /// Refused, with the reason.
        case outside(String)
    }

    /// The canonical absolute path (symlinks resolved), nil when it does not exist.
    static func canonical(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    /// Where `name` (relative to `folder`, whose canonical path is `canonicalFolder`) leads.
    static func check(_ name: String, in folder: String, canonicalFolder: String) -> Check {
        if name.isEmpty { return .outside("is empty") }
        if name.hasPrefix("/") { return .outside("is an absolute path") }
        if name.split(separator: "/").contains("..") { return .outside("contains '..'") }
        let path = folder + "/" + name
        guard let real = canonical(path) else { return .missing(path) }
        guard real.hasPrefix(canonicalFolder.hasSuffix("/") ? canonicalFolder : canonicalFolder + "/") else {
            return .outside("resolves to \(real) through a symbolic link")
        }
        return .inside(path)
    }
}
