// libFuzzer harness: recipe YAML through Tree.parse (with its limits) and Recipe(tree:), compiled into
// the Recipes module by scripts/fuzz.sh. Beyond "no crash", it checks three properties and traps when
// one fails (libFuzzer then saves the input):
// - YAMLNestingScan's bound is never below the nesting Yams builds (alias-free texts; aliases nest
//   again without Yams recursing, which Tree.convert counts itself);
// - only RecipeError escapes;
// - a recipe's resolved YAML loads back to the same recipe (what --resume compares).
import Foundation
import Yams

private func depth(_ n: Node) -> Int {
    switch n {
    case .scalar: return 0
    case .sequence(let s): return 1 + (s.map(depth).max() ?? 0)
    case .mapping(let m): return 1 + (m.map { max(depth($0.key), depth($0.value)) }.max() ?? 0)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecipe(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let limits = YAMLLimits.standard
    let scan = YAMLNestingScan(text, stopAbove: limits.maxDepth)
    if scan.maxDepth <= limits.maxDepth, scan.aliases == 0, let node = try? Yams.compose(yaml: text) {
        let d = depth(node)
        if d > scan.maxDepth { fatalError("YAMLNestingScan bound \(scan.maxDepth) is below Yams' depth \(d)") }
    }
    do {
        let tree = try Tree.parse(text, file: "fuzz.yaml")
        guard case .map = tree else { return 0 }
        // `base:` names another file; resolution from disk is not what this target exercises.
        let recipe = try Recipe(tree: tree.removing("base"))
        let resolved = recipe.tree().yaml()
        let back = try Recipe(tree: try Tree.parse(resolved, file: "resolved.yaml"))
        if back != recipe { fatalError("resolved recipe does not load back:\n\(resolved)") }
    } catch is RecipeError {
    } catch {
        fatalError("Tree.parse/Recipe threw \(type(of: error)), not RecipeError: \(error)")
    }
    return 0
}
