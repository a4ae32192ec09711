import Foundation

/// Reads one mapping of a recipe with defaults, recording every key it asks for so that `finish()` can
/// reject the keys nobody asked for (with the closest valid key as a hint).
public final class Reader {
    public let tree: Tree?
    public let path: String
    var known: [String] = []
    let fallbackOrigin: Origin

    public init(_ tree: Tree?, path: String, origin: Origin) throws {
        fallbackOrigin = origin
        self.path = path
        switch tree {
        case .none, .null?: self.tree = nil
        case .map?: self.tree = tree
        case let t?: throw RecipeError(origin: t.origin, key: path.isEmpty ? nil : path, "expected a mapping of keys, got \(Reader.kind(t))")
        }
    }

    static func kind(_ t: Tree) -> String {
        switch t {
        case .scalar(let s, _, _): return "'\(s)'"
        case .seq: return "a list"
        case .map: return "a mapping"
        case .null: return "null"
        }
    }

    public func full(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// The raw value (nil when absent or null).
    public func value(_ key: String) -> Tree? {
        if !known.contains(key) { known.append(key) }
        if case .null? = tree?[key] { return nil }
        return tree?[key]
    }

    func scalar(_ key: String, _ what: String) throws -> (String, Tree)? {
        guard let v = value(key) else { return nil }
        guard case .scalar(let s, _, _) = v else { throw RecipeError(origin: v.origin, key: full(key), "expected \(what), got \(Reader.kind(v))") }
        return (s, v)
    }

    public func string(_ key: String, _ def: String) throws -> String { try optString(key) ?? def }
    public func optString(_ key: String) throws -> String? { try scalar(key, "a string")?.0 }

    public func choice(_ key: String, _ def: String, _ allowed: [String]) throws -> String {
        guard let (s, v) = try scalar(key, "one of \(allowed.joined(separator: ", "))") else { return def }
        guard allowed.contains(s) else {
            let hint = closest(s, allowed).map { " (did you mean '\($0)'?)" } ?? ""
            throw RecipeError(origin: v.origin, key: full(key), "'\(s)' is not one of \(allowed.joined(separator: ", "))\(hint)")
        }
        return s
    }

    /// An integer; `cap` is an upper bound on what the value sizes (it replaces `max`, and its
    /// message names the cap and what it bounds).
    public func optInt(_ key: String, min: Int? = nil, max: Int? = nil, cap: Cap? = nil) throws -> Int? {
        guard let (s, v) = try scalar(key, "an integer") else { return nil }
        guard let i = Int(s) else {
            let digits = s.drop(while: { $0 == "-" || $0 == "+" })
            let huge = !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
            throw RecipeError(origin: v.origin, key: full(key), huge ? "\(s) does not fit a 64-bit integer\(cap.map { "; the cap is \($0.max) (\($0.what))" } ?? "")"
                                                                  : "expected an integer, got '\(s)'")
        }
        if let cap, i > cap.max {
            throw RecipeError(origin: v.origin, key: full(key),
                              "\(i) is above the cap of \(cap.max) (\(cap.what)); use at most \(cap.max) (caps: docs/RECIPES.md)")
        }
        if let min, let max, !(min...max).contains(i) { throw RecipeError(origin: v.origin, key: full(key), "must be \(min)..\(max), got \(i)") }
        if let min, i < min { throw RecipeError(origin: v.origin, key: full(key), "must be at least \(min), got \(i)") }
        if let max, i > max { throw RecipeError(origin: v.origin, key: full(key), "must be at most \(max), got \(i)") }
        return i
    }
    public func int(_ key: String, _ def: Int, min: Int? = nil, max: Int? = nil, cap: Cap? = nil) throws -> Int {
        try optInt(key, min: min, max: max, cap: cap) ?? def
    }

    public func optDouble(_ key: String, min: Double? = nil, max: Double? = nil) throws -> Double? {
        guard let (s, v) = try scalar(key, "a number") else { return nil }
        guard let d = Double(s), d.isFinite else { throw RecipeError(origin: v.origin, key: full(key), "expected a number, got '\(s)'") }
        if let min, d < min { throw RecipeError(origin: v.origin, key: full(key), "must be at least \(min), got \(s)") }
        if let max, d > max { throw RecipeError(origin: v.origin, key: full(key), "must be at most \(max), got \(s)") }
        return d
    }
    public func double(_ key: String, _ def: Double, min: Double? = nil, max: Double? = nil) throws -> Double {
        try optDouble(key, min: min, max: max) ?? def
    }

    public func bool(_ key: String, _ def: Bool) throws -> Bool {
        guard let (s, v) = try scalar(key, "true or false") else { return def }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw RecipeError(origin: v.origin, key: full(key), "expected true or false, got '\(s)'")
        }
    }

    public func list(_ key: String) throws -> [Tree]? {
        guard let v = value(key) else { return nil }
        guard case .seq(let items, _) = v else { throw RecipeError(origin: v.origin, key: full(key), "expected a list, got \(Reader.kind(v))") }
        return items
    }

    public func intList(_ key: String) throws -> [Int]? { try scalarList(key, "an integer", Int.init) }
    public func doubleList(_ key: String) throws -> [Double]? { try scalarList(key, "a number") { Double($0).flatMap { $0.isFinite ? $0 : nil } } }

    func scalarList<T>(_ key: String, _ what: String, _ parse: (String) -> T?) throws -> [T]? {
        try list(key)?.enumerated().map { i, t in
            guard case .scalar(let s, _, _) = t, let v = parse(s) else { throw RecipeError(origin: t.origin, key: full(key) + "[\(i)]", "expected \(what), got \(Reader.kind(t))") }
            return v
        }
    }

    public func sub(_ key: String) throws -> Reader {
        try Reader(value(key), path: full(key), origin: tree?.origin ?? fallbackOrigin)
    }

    /// Throws for the first key that was never asked for.
    public func finish() throws {
        guard case .map(let m, _)? = tree else { return }
        for (k, v) in m where !known.contains(k) {
            let hint = closest(k, known).map { " (did you mean '\(full($0))'?)" } ?? ""
            let valid = known.isEmpty ? "" : "; valid keys here: \(known.joined(separator: ", "))"
            throw RecipeError(origin: v.origin, key: full(k), "unknown key\(hint)\(valid)")
        }
    }
}

/// The candidate nearest to `s` by edit distance, if reasonably near.
public func closest(_ s: String, _ candidates: [String]) -> String? {
    func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a.lowercased()), b = Array(b.lowercased())
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count), cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count { cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)) }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
    let scored = candidates.map { ($0, distance(s, $0)) }.sorted { $0.1 < $1.1 }
    guard let best = scored.first, best.1 <= Swift.max(2, s.count / 3) else { return nil }
    return best.0
}
