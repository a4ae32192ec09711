/// Bounds on YAML text that `Tree.parse` enforces. Recipes (and the recipe stored in every checkpoint)
/// go through Yams, whose composer recurses once per nesting level (10k nested `[` overflow the stack)
/// and which shares aliased nodes, so a few lines of "billion laughs" expand into billions of nodes
/// when the tree is walked. Size, depth and alias uses are refused on the text before Yams sees it;
/// the nodes after alias expansion (and the depth they reach) are counted exactly while converting.
public struct YAMLLimits: Sendable, Equatable {
    /// UTF-8 bytes of the text (recipes are a few KiB).
    public var maxBytes: Int
    /// Nesting of sequences and mappings.
    public var maxDepth: Int
    /// Alias uses (`*name`) in the text.
    public var maxAliases: Int
    /// Nodes of the tree after aliases are expanded.
    public var maxNodes: Int

    public init(maxBytes: Int = 1 << 20, maxDepth: Int = 64, maxAliases: Int = 64, maxNodes: Int = 100_000) {
        self.maxBytes = maxBytes; self.maxDepth = maxDepth; self.maxAliases = maxAliases; self.maxNodes = maxNodes
    }

    public static let standard = YAMLLimits()

    /// The checks on the text: size, then a conservative nesting bound and the alias count from one
    /// pass of `YAMLNestingScan`. Errors name the file, the line and the limit.
    public func check(_ text: String, file: String) throws {
        let bytes = text.utf8.count
        guard bytes <= maxBytes else {
            throw RecipeError(origin: Origin(file: file), "is \(bytes) bytes; YAML text is limited to \(maxBytes) bytes (limit: size)")
        }
        let scan = YAMLNestingScan(text, stopAbove: maxDepth)
        if scan.maxDepth > maxDepth {
            throw RecipeError(origin: Origin(file: file, line: scan.line + 1, column: scan.column + 1),
                              "nests deeper than \(maxDepth) levels of sequences and mappings (limit: depth); flatten the structure")
        }
        if scan.aliases > maxAliases {
            throw RecipeError(origin: Origin(file: file), "uses \(scan.aliases) aliases (*name); at most \(maxAliases) are allowed (limit: aliases)")
        }
    }
}

/// An upper bound on the nesting libyaml builds from a text, from one pass over its characters that
/// follows libyaml's scanner (scanner.c) closely enough to know where tokens start: quoted and block
/// scalars are skipped with libyaml's own rules (a bracket inside `"]]"` or a `|` block closes
/// nothing), plain scalars end where libyaml ends them (which needs its indentation stack: block
/// collections open at `roll_indent` and close at `unroll_indent`), flow brackets count at token
/// starts. The bound counts block levels, indentless sequences (`key:` then `- x` at the key's
/// column), open flow collections and implicit single-pair mappings in flow sequences (`[a: b]`). A
/// simple key opens its mapping (block) or pair (flow sequence) around content already scanned
/// (`[[a]]: b`), so each pending key keeps the peak reached since it started and adds one level
/// to it when its `:` arrives. Where
/// libyaml would stop with an error the scan goes on: the bound only grows, and libyaml builds
/// nothing past its error.
/// Differential fuzzing (fuzz/recipe) checks the bound against the depth Yams actually builds.
struct YAMLNestingScan {
    private(set) var maxDepth = 0
    /// Where `maxDepth` was first reached (0-based line and column in characters).
    private(set) var line = 0, column = 0
    private(set) var aliases = 0

    private let s: [Unicode.Scalar]
    private var i = 0, ln = 0, col = 0
    /// Open flow collections: sequence or mapping, and whether a sequence holds an implicit pair.
    private var flows: [(sequence: Bool, pair: Bool)] = []
    private var pairs = 0
    /// Block collections (libyaml's indents stack): column, mapping or sequence, and whether an
    /// indentless sequence is open in that mapping.
    private var levels: [(column: Int, mapping: Bool, indentless: Bool)] = []
    private var indentless = 0
    private var indent: Int { levels.last?.column ?? -1 }
    private var simpleKeyAllowed = true
    private struct Key { var possible = false, column = 0, line = 0, index = 0, peak = 0 }
    /// The possible simple key of the block level and of each flow level.
    private var keys = [Key()]

    init(_ text: String, stopAbove limit: Int) {
        // libyaml's reader stops with "control characters are not allowed" at the first character
        // outside this set, so nothing after it is ever parsed (and "\0" means the end below).
        s = Array(text.unicodeScalars.prefix { c in
            let v = c.value
            return v == 0x09 || v == 0x0A || v == 0x0D || (0x20...0x7E).contains(v) || v == 0x85 || (0xA0...0xD7FF).contains(v)
                || (0xE000...0xFFFD).contains(v) || (0x10000...0x10FFFF).contains(v)
        })
        run(limit)
    }

    private var inFlow: Bool { !flows.isEmpty }
    private var atEnd: Bool { i >= s.count }
    /// libyaml sees "\0" past the end.
    private func at(_ k: Int) -> Unicode.Scalar { i + k < s.count ? s[i + k] : "\0" }

    private static func isBreak(_ c: Unicode.Scalar) -> Bool {
        c == "\n" || c == "\r" || c == "\u{85}" || c == "\u{2028}" || c == "\u{2029}"
    }
    private static func isBlank(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" }
    private static func isBreakZ(_ c: Unicode.Scalar) -> Bool { isBreak(c) || c == "\0" }
    private static func isBlankZ(_ c: Unicode.Scalar) -> Bool { isBlank(c) || isBreakZ(c) }
    /// libyaml's IS_ALPHA: anchor names and tag handles.
    private static func isAlpha(_ c: Unicode.Scalar) -> Bool {
        ("0"..."9").contains(c) || ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" || c == "-"
    }
    private static func isURI(_ c: Unicode.Scalar, verbatim: Bool) -> Bool {
        isAlpha(c) || ";/?:@&=+$.%!~*'()".unicodeScalars.contains(c) || (verbatim && (c == "," || c == "[" || c == "]"))
    }

    private mutating func skip() { i += 1; col += 1 }
    private mutating func skipLine() {
        if at(0) == "\r" && at(1) == "\n" { i += 2 } else if Self.isBreak(at(0)) { i += 1 } else { return }
        col = 0; ln += 1
    }
    private var atDocumentMarker: Bool {
        col == 0 && ((at(0) == "-" && at(1) == "-" && at(2) == "-") || (at(0) == "." && at(1) == "." && at(2) == "."))
            && Self.isBlankZ(at(3))
    }

    private var depth: Int { levels.count + indentless + flows.count + pairs }

    private mutating func record() { raise(depth) }

    /// A nesting level reached: the bound, and the peak of every pending key (it may still wrap it).
    private mutating func raise(_ d: Int) {
        if d > maxDepth { maxDepth = d; line = ln; column = col }
        for k in keys.indices where keys[k].possible && keys[k].peak < d { keys[k].peak = d }
    }

    private mutating func roll(_ column: Int, mapping: Bool) {
        if !inFlow && indent < column { levels.append((column, mapping, false)) }
    }
    private mutating func unroll(_ column: Int) {
        guard !inFlow else { return }
        while indent > column { if levels.removeLast().indentless { indentless -= 1 } }
    }
    /// libyaml's parser opens an indentless sequence for `-` at the column of the enclosing block
    /// mapping (no new indentation level) and closes it at the mapping's next key.
    private mutating func setIndentless(_ on: Bool, at column: Int) {
        guard !inFlow, let top = levels.last, top.mapping, top.column == column, top.indentless != on else { return }
        levels[levels.count - 1].indentless = on
        indentless += on ? 1 : -1
    }
    private mutating func saveKey() {
        if simpleKeyAllowed { keys[keys.count - 1] = Key(possible: true, column: col, line: ln, index: i, peak: depth) }
    }
    private mutating func removeKey() { keys[keys.count - 1].possible = false }
    /// A key or value indicator directly in a flow sequence makes libyaml's parser open a one-pair mapping.
    private mutating func markPair() {
        if let top = flows.last, top.sequence, !top.pair { flows[flows.count - 1].pair = true; pairs += 1 }
    }

    private mutating func run(_ limit: Int) {
        while true {
            let start = i
            defer { if i == start && !atEnd { skip() } }   // every token consumes something
            scanToNextToken()
            for k in keys.indices where keys[k].possible && (keys[k].line < ln || keys[k].index + 1024 < i) {
                keys[k].possible = false
            }
            unroll(col)
            if atEnd { break }
            let c = at(0)
            if col == 0 && c == "%" {
                unroll(-1); removeKey(); simpleKeyAllowed = false
                while !Self.isBreakZ(at(0)) { skip() }   // a directive line
            } else if atDocumentMarker {
                unroll(-1); removeKey(); simpleKeyAllowed = false
                skip(); skip(); skip()
            } else if c == "[" || c == "{" {
                saveKey()
                flows.append((c == "[", false)); keys.append(Key())
                simpleKeyAllowed = true; skip()
            } else if c == "]" || c == "}" {
                removeKey()
                if let top = flows.popLast() { keys.removeLast(); if top.pair { pairs -= 1 } }
                simpleKeyAllowed = false; skip()
            } else if c == "," {
                removeKey()
                if let top = flows.last, top.pair { flows[flows.count - 1].pair = false; pairs -= 1 }
                simpleKeyAllowed = true; skip()
            } else if c == "-" && Self.isBlankZ(at(1)) {
                setIndentless(true, at: col)
                roll(col, mapping: false); removeKey(); simpleKeyAllowed = true; skip()
            } else if c == "?" && (inFlow || Self.isBlankZ(at(1))) {
                setIndentless(false, at: col)
                roll(col, mapping: true); removeKey(); simpleKeyAllowed = !inFlow; markPair(); skip()
            } else if c == ":" && (inFlow || Self.isBlankZ(at(1))) {
                if keys[keys.count - 1].possible {
                    let key = keys[keys.count - 1]
                    keys[keys.count - 1].possible = false
                    let wraps = inFlow ? flows[flows.count - 1].sequence && !flows[flows.count - 1].pair : indent < key.column
                    setIndentless(false, at: key.column)
                    roll(key.column, mapping: true); simpleKeyAllowed = false
                    if wraps { raise(key.peak + 1) }
                } else {
                    setIndentless(false, at: col)
                    roll(col, mapping: true); simpleKeyAllowed = !inFlow
                }
                markPair(); skip()
            } else if c == "*" || c == "&" {
                saveKey(); simpleKeyAllowed = false
                if c == "*" { aliases += 1 }
                skip()
                while Self.isAlpha(at(0)) { skip() }
            } else if c == "!" {
                saveKey(); simpleKeyAllowed = false
                scanTag()
            } else if (c == "|" || c == ">") && !inFlow {
                removeKey(); simpleKeyAllowed = true
                scanBlockScalar()
            } else if c == "'" || c == "\"" {
                saveKey(); simpleKeyAllowed = false
                scanQuoted(single: c == "'")
            } else if startsPlain(c) {
                saveKey(); simpleKeyAllowed = false
                scanPlain()
            } else {
                skip()   // libyaml: "found character that cannot start any token"
            }
            record()
            if maxDepth > limit { break }
        }
    }

    private func startsPlain(_ c: Unicode.Scalar) -> Bool {
        let indicators = "-?:,[]{}#&*!|>'\"%@`".unicodeScalars
        return !(Self.isBlankZ(c) || indicators.contains(c)) || (c == "-" && !Self.isBlank(at(1)))
            || (!inFlow && (c == "?" || c == ":") && !Self.isBlankZ(at(1)))
    }

    private mutating func scanToNextToken() {
        while true {
            if col == 0 && at(0) == "\u{FEFF}" { skip() }
            while at(0) == " " || ((inFlow || !simpleKeyAllowed) && at(0) == "\t") { skip() }
            if at(0) == "#" { while !Self.isBreakZ(at(0)) { skip() } }
            guard Self.isBreak(at(0)) else { return }
            skipLine()
            if !inFlow { simpleKeyAllowed = true }
        }
    }

    private mutating func scanTag() {
        skip()
        if at(0) == "<" {
            skip()
            while Self.isURI(at(0), verbatim: true) { skip() }
            if at(0) == ">" { skip() }
        } else {
            while Self.isURI(at(0), verbatim: false) { skip() }
        }
    }

    private mutating func scanQuoted(single: Bool) {
        let quote: Unicode.Scalar = single ? "'" : "\""
        skip()
        while true {
            if atDocumentMarker || atEnd { return }   // libyaml: error inside a quoted scalar
            while !Self.isBlankZ(at(0)) {
                if single && at(0) == "'" && at(1) == "'" { skip(); skip(); continue }
                if at(0) == quote { break }
                if !single && at(0) == "\\" {
                    skip()
                    if Self.isBreak(at(0)) { skipLine(); break }
                }
                skip()
            }
            if at(0) == quote { skip(); return }
            while Self.isBlank(at(0)) || Self.isBreak(at(0)) {
                if Self.isBlank(at(0)) { skip() } else { skipLine() }
            }
        }
    }

    private mutating func scanPlain() {
        let minColumn = indent + 1
        var leadingBlanks = false
        while true {
            if atDocumentMarker || at(0) == "#" { break }
            while !Self.isBlankZ(at(0)) {
                if inFlow && at(0) == ":" && ",?[]{}".unicodeScalars.contains(at(1)) { return }   // libyaml: error
                if (at(0) == ":" && Self.isBlankZ(at(1))) || (inFlow && ",[]{}".unicodeScalars.contains(at(0))) { break }
                skip()
            }
            guard Self.isBlank(at(0)) || Self.isBreak(at(0)) else { break }
            while Self.isBlank(at(0)) || Self.isBreak(at(0)) {
                if Self.isBlank(at(0)) { skip() } else { skipLine(); leadingBlanks = true }
            }
            if !inFlow && col < minColumn { break }
        }
        if leadingBlanks { simpleKeyAllowed = true }
    }

    private mutating func scanBlockScalar() {
        skip()
        var increment = 0
        func digit(_ c: Unicode.Scalar) -> Int? { ("1"..."9").contains(c) ? Int(c.value) - 48 : nil }
        if at(0) == "+" || at(0) == "-" {
            skip()
            if let d = digit(at(0)) { increment = d; skip() }
        } else if let d = digit(at(0)) {
            increment = d; skip()
            if at(0) == "+" || at(0) == "-" { skip() }
        }
        while Self.isBlank(at(0)) { skip() }
        if at(0) == "#" { while !Self.isBreakZ(at(0)) { skip() } }
        skipLine()
        var blockIndent = increment > 0 ? (indent >= 0 ? indent + increment : increment) : 0
        blockBreaks(&blockIndent)
        while col == blockIndent && at(0) != "\0" {
            while !Self.isBreakZ(at(0)) { skip() }
            if atEnd { return }
            skipLine()
            blockBreaks(&blockIndent)
        }
    }

    /// libyaml's yaml_parser_scan_block_scalar_breaks: empty lines, and the indentation when it is
    /// detected from the first non-empty line.
    private mutating func blockBreaks(_ blockIndent: inout Int) {
        var maxIndent = 0
        while true {
            while (blockIndent == 0 || col < blockIndent) && at(0) == " " { skip() }
            maxIndent = max(maxIndent, col)
            guard Self.isBreak(at(0)) else { break }
            skipLine()
        }
        if blockIndent == 0 { blockIndent = max(maxIndent, indent + 1, 1) }
    }
}
