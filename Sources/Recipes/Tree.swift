import Foundation
import Yams

/// Where a value came from: a file with line and column, or a `--set` override.
public struct Origin: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?, column: Int?
    public init(file: String, line: Int? = nil, column: Int? = nil) { self.file = file; self.line = line; self.column = column }
    public var description: String {
        if let line, let column { return "\(file):\(line):\(column)" }
        return file
    }
}

/// A parsed YAML document with origins, in key order. Recipes are read from trees so that merging
/// (`base:`), `--set` overrides and error messages (key path, file, line, column) stay simple.
public indirect enum Tree: Sendable, Equatable {
    case scalar(String, quoted: Bool, Origin)
    case map([(String, Tree)], Origin)
    case seq([Tree], Origin)
    case null(Origin)

    public static func == (a: Tree, b: Tree) -> Bool {
        switch (a, b) {
        case let (.scalar(x, qx, _), .scalar(y, qy, _)): return x == y && qx == qy
        case let (.map(x, _), .map(y, _)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.seq(x, _), .seq(y, _)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    public var origin: Origin {
        switch self {
        case .scalar(_, _, let o), .map(_, let o), .seq(_, let o), .null(let o): return o
        }
    }

    /// Parses YAML text; syntax errors become `RecipeError`s naming file, line and column. Text over
    /// `limits` (size, nesting, alias uses, nodes after alias expansion) is refused with the limit named,
    /// before Yams sees it where the text tells, and while converting where only the tree does.
    public static func parse(_ text: String, file: String, limits: YAMLLimits = .standard) throws -> Tree {
        try limits.check(text, file: file)
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch let e as YamlError {
            throw RecipeError(file: file, yamlError: e)
        }
        guard let node else { return .null(Origin(file: file, line: 1, column: 1)) }
        var nodesLeft = limits.maxNodes
        return try convert(node, file: file, depth: 0, nodesLeft: &nodesLeft, limits: limits)
    }

    /// Yams shares an aliased node instead of copying it, so the tree is where "billion laughs" would
    /// expand: every node converted counts against `maxNodes`, and the depth (aliases can stack one
    /// nested structure on another) against `maxDepth`.
    static func convert(_ n: Node, file: String, depth: Int, nodesLeft: inout Int, limits: YAMLLimits) throws -> Tree {
        let o = Origin(file: file, line: n.mark?.line, column: n.mark?.column)
        nodesLeft -= 1
        guard nodesLeft >= 0 else {
            throw RecipeError(origin: o, "expands to more than \(limits.maxNodes) nodes (aliases of aliases?) (limit: nodes)")
        }
        func nested() throws -> Int {
            guard depth < limits.maxDepth else {
                throw RecipeError(origin: o, "nests deeper than \(limits.maxDepth) levels of sequences and mappings (limit: depth); flatten the structure")
            }
            return depth + 1
        }
        switch n {
        case .scalar(let s):
            if s.style == .plain, ["", "~", "null", "Null", "NULL"].contains(s.string) { return .null(o) }
            return .scalar(s.string, quoted: s.style != .plain, o)
        case .sequence(let seq):
            let d = try nested()
            return .seq(try seq.map { try convert($0, file: file, depth: d, nodesLeft: &nodesLeft, limits: limits) }, o)
        case .mapping(let m):
            let d = try nested()
            var out: [(String, Tree)] = []
            var seen = Set<String>()   // a linear search made a 50k-key mapping quadratic
            for (k, v) in m {
                guard case .scalar(let ks) = k else {
                    throw RecipeError(origin: Origin(file: file, line: k.mark?.line, column: k.mark?.column), "mapping keys must be plain strings")
                }
                if !seen.insert(ks.string).inserted {
                    throw RecipeError(origin: Origin(file: file, line: k.mark?.line, column: k.mark?.column), "duplicate key '\(ks.string)'")
                }
                out.append((ks.string, try convert(v, file: file, depth: d, nodesLeft: &nodesLeft, limits: limits)))
            }
            return .map(out, o)
        }
    }

    /// Deep merge: maps merge key by key (the override's keys win, new keys are appended); anything else
    /// (scalars, lists) is replaced by the override.
    public func merged(with over: Tree) -> Tree {
        guard case .map(var base, let o) = self, case .map(let top, _) = over else { return over }
        for (k, v) in top {
            if let i = base.firstIndex(where: { $0.0 == k }) { base[i].1 = base[i].1.merged(with: v) } else { base.append((k, v)) }
        }
        return .map(base, o)
    }

    public subscript(key: String) -> Tree? {
        guard case .map(let m, _) = self else { return nil }
        return m.first { $0.0 == key }?.1
    }

    /// Sets `value` at a dotted path, creating maps on the way (a non-map in the way is replaced). Maps
    /// created on the way get `origin` (where the override was written: `--set`, or a sweep file's line),
    /// so an unknown key among them is blamed there.
    public func setting(_ path: [String], to value: Tree, origin created: Origin = Origin(file: "--set")) -> Tree {
        guard let head = path.first else { return value }
        var entries: [(String, Tree)] = []
        var origin = created
        if case .map(let m, let o) = self { entries = m; origin = o }
        let rest = Array(path.dropFirst())
        if let i = entries.firstIndex(where: { $0.0 == head }) {
            entries[i].1 = entries[i].1.setting(rest, to: value, origin: created)
        } else {
            entries.append((head, Tree.null(created).setting(rest, to: value, origin: created)))
        }
        return .map(entries, origin)
    }

    /// Removes a top-level key.
    public func removing(_ key: String) -> Tree {
        guard case .map(let m, let o) = self else { return self }
        return .map(m.filter { $0.0 != key }, o)
    }

    /// YAML text of the tree (block style, keys in order). Strings that YAML would read as another type
    /// (numbers, booleans, null) are single-quoted, so the text parses back to the same tree.
    public func yaml() -> String {
        (try? Yams.serialize(node: yamsNode(), indent: 2, width: -1, allowUnicode: true)) ?? ""
    }

    static func looksTyped(_ s: String) -> Bool {
        Double(s) != nil || Int(s) != nil || s.isEmpty
            || ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"].contains(s.lowercased())
            || s.hasPrefix("0x") || s.hasPrefix("0o") || s.hasPrefix(".")
    }

    func yamsNode() -> Node {
        switch self {
        case .scalar(let s, let q, _):
            if q { return Node(s, Tag(.str), Tree.looksTyped(s) ? .singleQuoted : .plain) }
            return Node(s, Tag(.implicit), .plain)
        case .null: return Node("null", Tag(.null), .plain)
        case .seq(let items, _): return .sequence(Node.Sequence(items.map { $0.yamsNode() }, Tag(.implicit), .block))
        case .map(let m, _): return .mapping(Node.Mapping(m.map { (Node($0.0), $0.1.yamsNode()) }, Tag(.implicit), .block))
        }
    }
}

/// A recipe problem: the file (and line/column when known), the key path, and what to do.
public struct RecipeError: Error, CustomStringConvertible, Equatable {
    public var origin: Origin?
    public var key: String?
    public var message: String
    public init(origin: Origin?, key: String? = nil, _ message: String) { self.origin = origin; self.key = key; self.message = message }

    init(file: String, yamlError e: YamlError) {
        switch e {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _):
            self.init(origin: Origin(file: file, line: mark.line, column: mark.column), "YAML syntax error: \(problem)")
        default:
            self.init(origin: Origin(file: file), "YAML error: \(e)")
        }
    }

    public var description: String {
        var s = ""
        if let origin { s += "\(origin): " }
        if let key { s += "'\(key)': " }
        return s + message
    }
}
