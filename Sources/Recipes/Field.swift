import Foundation

/// What reading or writing a section depends on besides the section itself: the recipe's task (data
/// formats and evaluation metrics differ by task, and keys added with detection stay out of a
/// classification recipe's resolved form unless set).
public struct RecipeContext: Sendable {
    public var task: String
    public init(task: String) { self.task = task }
}

/// One key of a recipe section: its name, how it is read into the section (with validation) and how it
/// is written to the resolved form. A section's `fields`, in order, are its keys; reading and the
/// resolved tree both come from that one table, and the default of a key is the value the section
/// holds before reading (its declared default, or what the enclosing section set, e.g. per-channel
/// weight quantizers).
public struct Field<S> {
    public let key: String
    let read: (Reader, inout S, RecipeContext) throws -> Void
    /// nil: the key is left out of the resolved form.
    let write: (S, RecipeContext) -> Tree?

    public init(_ key: String, read: @escaping (Reader, inout S, RecipeContext) throws -> Void, write: @escaping (S, RecipeContext) -> Tree?) {
        self.key = key; self.read = read; self.write = write
    }
}

/// A mapping of a recipe (`model`, `train.optimizer`, `detector.anchors`, ...) read and written through
/// its field table.
public protocol RecipeSection: Sendable, Equatable {
    init()
    static var fields: [Field<Self>] { get }
    /// Checks across keys, after every key is read (`r` gives the keys' origins for errors).
    func check(_ r: Reader, _ context: RecipeContext) throws
}

extension RecipeSection {
    public func check(_ r: Reader, _ context: RecipeContext) throws {}

    /// Reads every field (absent keys keep the current value), checks, and rejects unknown keys.
    public mutating func read(_ r: Reader, _ context: RecipeContext) throws {
        for f in Self.fields { try f.read(r, &self, context) }
        try check(r, context)
        try r.finish()
    }

    /// The resolved form: every field in table order.
    public func tree(_ context: RecipeContext) -> Tree {
        Resolved.map(Self.fields.compactMap { f in f.write(self, context).map { (f.key, $0) } })
    }
}

/// Scalars of the resolved form. Numbers are written so that integral doubles keep a decimal point
/// (`5.0`), which is what existing run directories stored.
enum Resolved {
    static let origin = Origin(file: "resolved")
    static func string(_ v: String) -> Tree { .scalar(v, quoted: true, origin) }
    static func number(_ v: Double) -> Tree { .scalar(v == v.rounded() && abs(v) < 1e15 ? String(format: "%.1f", v) : "\(v)", quoted: false, origin) }
    static func int(_ v: Int) -> Tree { .scalar("\(v)", quoted: false, origin) }
    static func bool(_ v: Bool) -> Tree { .scalar(v ? "true" : "false", quoted: false, origin) }
    static let null = Tree.null(origin)
    static func map(_ e: [(String, Tree)]) -> Tree { .map(e, origin) }
    static func list(_ e: [Tree]) -> Tree { .seq(e, origin) }
}

extension Field {
    /// An integer in min...max; with `cap`, bounded by the cap (see `Cap`).
    public static func int(_ key: String, _ p: WritableKeyPath<S, Int>, min: Int? = nil, max: Int? = nil, cap: Cap? = nil) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = try r.int(key, s[keyPath: p], min: min, max: max, cap: cap) }, write: { s, _ in Resolved.int(s[keyPath: p]) })
    }

    public static func optInt(_ key: String, _ p: WritableKeyPath<S, Int?>, min: Int? = nil, max: Int? = nil, cap: Cap? = nil) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = try r.optInt(key, min: min, max: max, cap: cap) ?? s[keyPath: p] },
              write: { s, _ in s[keyPath: p].map(Resolved.int) ?? Resolved.null })
    }

    /// A seed: a non-negative integer.
    public static func seed(_ key: String, _ p: WritableKeyPath<S, UInt64>) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = UInt64(try r.int(key, Int(s[keyPath: p]), min: 0)) }, write: { s, _ in Resolved.int(Int(s[keyPath: p])) })
    }

    public static func double(_ key: String, _ p: WritableKeyPath<S, Double>, min: Double? = nil, max: Double? = nil) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = try r.double(key, s[keyPath: p], min: min, max: max) }, write: { s, _ in Resolved.number(s[keyPath: p]) })
    }

    public static func optDouble(_ key: String, _ p: WritableKeyPath<S, Double?>, min: Double? = nil, max: Double? = nil) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = try r.optDouble(key, min: min, max: max) ?? s[keyPath: p] },
              write: { s, _ in s[keyPath: p].map(Resolved.number) ?? Resolved.null })
    }

    public static func string(_ key: String, _ p: WritableKeyPath<S, String>) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = try r.string(key, s[keyPath: p]) }, write: { s, _ in Resolved.string(s[keyPath: p]) })
    }

    public static func optString(_ key: String, _ p: WritableKeyPath<S, String?>) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = try r.optString(key) ?? s[keyPath: p] },
              write: { s, _ in s[keyPath: p].map(Resolved.string) ?? Resolved.null })
    }

    public static func choice(_ key: String, _ p: WritableKeyPath<S, String>, _ allowed: [String]) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = try r.choice(key, s[keyPath: p], allowed) }, write: { s, _ in Resolved.string(s[keyPath: p]) })
    }

    public static func bool(_ key: String, _ p: WritableKeyPath<S, Bool>) -> Field {
        Field(key, read: { r, s, _ in s[keyPath: p] = try r.bool(key, s[keyPath: p]) }, write: { s, _ in Resolved.bool(s[keyPath: p]) })
    }

    /// A list of integers; `check` returns what is wrong with a list (nil: fine), e.g. "expected ...; got [..]".
    public static func intList(_ key: String, _ p: WritableKeyPath<S, [Int]>, check: @escaping ([Int]) -> String? = { _ in nil }) -> Field {
        Field(key, read: { r, s, _ in
            guard let v = try r.intList(key) else { return }
            if let problem = check(v) { throw RecipeError(origin: r.value(key)?.origin, key: r.full(key), problem) }
            s[keyPath: p] = v
        }, write: { s, _ in Resolved.list(s[keyPath: p].map(Resolved.int)) })
    }

    public static func doubleList(_ key: String, _ p: WritableKeyPath<S, [Double]>, check: @escaping ([Double]) -> String? = { _ in nil }) -> Field {
        Field(key, read: { r, s, _ in
            guard let v = try r.doubleList(key) else { return }
            if let problem = check(v) { throw RecipeError(origin: r.value(key)?.origin, key: r.full(key), problem) }
            s[keyPath: p] = v
        }, write: { s, _ in Resolved.list(s[keyPath: p].map(Resolved.number)) })
    }

    /// A nested section.
    public static func section<T: RecipeSection>(_ key: String, _ p: WritableKeyPath<S, T>) -> Field {
        Field(key, read: { r, s, c in try s[keyPath: p].read(try r.sub(key), c) }, write: { s, c in s[keyPath: p].tree(c) })
    }
}

extension Field where S: RecipeSection {
    /// A key added after run directories existed: the resolved form writes it only when it differs from
    /// the default, so that recipes which do not use it resolve to the text stored runs and checkpoints
    /// hold (`--resume` compares it).
    public func writtenWhenSet() -> Field {
        let write = self.write
        return Field(key, read: read, write: { s, c in
            let t = write(s, c)
            return t == write(S(), c) ? nil : t
        })
    }

    /// A key added with detection: a classification recipe's resolved form writes it only when it
    /// differs from the default, so that form stays the text existing run directories and checkpoints
    /// stored (`--resume` compares it).
    public func addedWithDetection() -> Field {
        let write = self.write
        return Field(key, read: read, write: { s, c in
            let t = write(s, c)
            return c.task == "classification" && t == write(S(), c) ? nil : t
        })
    }
}
