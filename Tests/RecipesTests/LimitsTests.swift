import XCTest
import Yams
@testable import Recipes

/// Parser exhaustion: what `Tree.parse` refuses before (or while) building a tree, and that the text
/// scan's nesting bound never falls below what Yams builds.
final class YAMLLimitsTests: XCTestCase {
    func refusal(_ text: String, limits: YAMLLimits = .standard) -> RecipeError? {
        do { _ = try Tree.parse(text, file: "evil.yaml", limits: limits); return nil } catch let e as RecipeError { return e } catch {
            XCTFail("\(error)"); return nil
        }
    }

    /// "Billion laughs": each level aliases the previous one ten times.
    func laughs(levels: Int, fanout: Int) -> String {
        var text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for i in 1...levels {
            text += "l\(i): &l\(i) [" + Array(repeating: "*l\(i - 1)", count: fanout).joined(separator: ", ") + "]\n"
        }
        return text
    }

    func testBillionLaughsIsRefused() {
        let start = Date()
        let e = refusal(laughs(levels: 9, fanout: 10))   // 10^10 nodes once expanded
        XCTAssertTrue(e?.description.hasPrefix("evil.yaml") == true && e?.description.contains("limit: aliases") == true, "\(String(describing: e))")
        // Within the alias count, the expansion is what stops it: 8^6 = 262144 nodes.
        let e2 = refusal(laughs(levels: 6, fanout: 8))
        XCTAssertTrue(e2?.description.contains("limit: nodes") == true, "\(String(describing: e2))")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "refusing must not expand the aliases")
        // A few honest aliases still work.
        XCTAssertNil(refusal(laughs(levels: 2, fanout: 3)))
    }

    func testDeepNestingIsRefusedBeforeYamsRecurses() {
        // 10k levels overflowed the stack inside Yams' composer.
        let deep = "a: " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + "\n"
        let e = refusal(deep)
        XCTAssertTrue(e?.description.hasPrefix("evil.yaml:1:") == true && e?.description.contains("limit: depth") == true, "\(String(describing: e))")
        XCTAssertNotNil(refusal(String(repeating: "{a: ", count: 5000) + String(repeating: "}", count: 5000)))
        XCTAssertNotNil(refusal(String(repeating: "- ", count: 5000) + "x\n"))
        var block = ""
        for i in 0..<100 { block += String(repeating: " ", count: i) + "k\(i):\n" }
        XCTAssertTrue(refusal(block)?.description.contains("limit: depth") == true)
        // Exactly at the limit is fine; one more is not.
        XCTAssertNil(refusal(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)))
        XCTAssertNotNil(refusal(String(repeating: "[", count: 65) + String(repeating: "]", count: 65)))
    }

    func testBracketsInsideScalarsAreNotNesting() throws {
        let brackets = String(repeating: "[", count: 200)
        let text = """
        a: "\(brackets)"
        b: '\(brackets)'
        c: |
          \(brackets)
        d: x\(brackets)
        e: !tag' "\(brackets)"
        # \(brackets)
        f: [ok]
        """
        let t = try Tree.parse(text, file: "ok.yaml")
        XCTAssertEqual(t["a"], .scalar(brackets, quoted: true, Origin(file: "")))
        XCTAssertEqual(t["d"], .scalar("x" + brackets, quoted: false, Origin(file: "")))
    }

    /// Found by fuzz/recipe: a NUL inside a quoted scalar kept the scan looping. libyaml stops reading at
    /// the first control character, and so does the scan.
    func testControlCharacterEndsTheScan() {
        XCTAssertEqual(YAMLNestingScan("a: 'x\u{0}y", stopAbove: 64).maxDepth, 1)
        XCTAssertEqual(YAMLNestingScan("a: [[\u{1}[[[", stopAbove: 64).maxDepth, 3)
        XCTAssertNotNil(refusal("a: \"x\u{0}]]\"\n"))
    }

    func testAliasesCannotStackDepthPastTheLimit() {
        // The text nests 40 levels at most; with the alias the tree nests 70.
        let text = "a: &x " + String(repeating: "[", count: 30) + String(repeating: "]", count: 30)
            + "\nb: " + String(repeating: "[", count: 40) + "*x" + String(repeating: "]", count: 40) + "\n"
        let e = refusal(text)
        XCTAssertTrue(e?.description.contains("limit: depth") == true, "\(String(describing: e))")
    }

    func testBigTextIsRefused() {
        let big = "a: " + String(repeating: "x", count: 1 << 20) + "\n"
        let e = refusal(big)
        XCTAssertTrue(e?.description.contains("evil.yaml") == true && e?.description.contains("limit: size") == true, "\(String(describing: e))")
        XCTAssertNil(refusal("a: 1\n", limits: YAMLLimits(maxBytes: 5)))
        XCTAssertNotNil(refusal("a: 12\n", limits: YAMLLimits(maxBytes: 5)))
    }

    func testStoredRecipeAndFilesGetTheLimits() throws {
        XCTAssertThrowsError(try Recipe.parse(laughs(levels: 9, fanout: 10), file: "run/last.h5 (stored recipe)")) {
            XCTAssertTrue("\($0)".contains("run/last.h5 (stored recipe)") && "\($0)".contains("limit: aliases"), "\($0)")
        }
    }

    /// Nesting of sequences and mappings as Yams builds it. (An alias of a collection nests it again
    /// without Yams recursing: that depth is the conversion's to check, not the scan's; see above.)
    static func depth(_ n: Node) -> Int {
        switch n {
        case .scalar: return 0
        case .sequence(let s): return 1 + (s.map(depth).max() ?? 0)
        case .mapping(let m): return 1 + (m.map { max(depth($0.key), depth($0.value)) }.max() ?? 0)
        }
    }

    /// The scan's bound is never below the real depth, and for ordinary YAML it is at most one above.
    func testScanBoundsTheRealDepth() throws {
        let cases = [
            "a: 1", "[a, [b, [c]]]", "{a: {b: {c: d}}}", "a:\n  b:\n    c: d", "- - - x", "- a: 1\n  b: [1, 2]",
            // indentless sequences at every level
            "a:\n- b:\n  - c:\n    - d: 1",
            // keys that are collections open their mapping first
            "[[a]]: b", "a:\n- [[x]]: y", "- [[x]]: y", "[[[a]]: b]", "[? [a]: b]", "{[a]: [b]}",
            // implicit single-pair mappings in flow sequences
            "[a: [b: [c: d]]]", "[a: b, c: [d: e]]",
            // scalars that hide brackets and quotes
            "a: \"]]]\"\nb: [[[x]]]", "a: 'it''s ]]'\nb: [[y]]", "a: |\n  ]]]\n  \"\nb: [[z]]",
            "a: x'\n  [[y\nb: [[c]]", "k: a #]]\nm: [[n]]", "t: !x'y [[a]]", "- >2\n   ]]\n- [[q]]",
            "a: &r [[1]]\nb: [&s x, *s]", "? - a\n  - [b]\n: c", "%YAML 1.1\n---\n[[a]]\n...\n",
            "a: \"x\\\"]]\"\nb: [[[c]]]", "a:\n  - b\n  -\n    - c\n    - [d, [e]]",
        ]
        for text in cases {
            let node = try XCTUnwrap(try Yams.compose(yaml: text), text)
            let real = Self.depth(node)
            let bound = YAMLNestingScan(text, stopAbove: 1000).maxDepth
            XCTAssertGreaterThanOrEqual(bound, real, "scan undercounts: \(text.debugDescription)")
            XCTAssertLessThanOrEqual(bound, real + 1, "scan is needlessly loose: \(text.debugDescription)")
        }
    }
}
