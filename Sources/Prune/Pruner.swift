import Foundation
import Autodiff
import NN

/// Structured pruning: channels are removed (the model gets smaller), never masked. Groups come from
/// the modules' `ChannelFlow` (`ChannelGraph.groups`), so coupled channels (a residual stream, a
/// depthwise conv and its producer) go together.
public enum Pruner {
    /// A group and the channels it keeps.
    public struct Decision: Equatable, Sendable {
        public let group: String
        public let before: Int
        /// Kept channel indices, ascending.
        public let kept: [Int]
    }

    /// The channels kept when `ratio` of them go: the floor(ratio * n) lowest-scoring channels are
    /// removed (ties: the later channel goes first), so a ratio below 1 always keeps one.
    /// With `roundTo` > 1 the kept count is rounded to the nearest multiple of it (at least one
    /// multiple, at most every channel), as Torch-Pruning's `round_to`: widths that fill SIMD tiles.
    public static func kept(scores: [Double], ratio: Double, roundTo: Int = 1) -> [Int] {
        let n = scores.count, removed = n - keptCount(n, ratio: ratio, roundTo: roundTo)
        let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 > $1 }
        return Array(order[removed...]).sorted()
    }

    /// How many of `n` channels `kept` keeps at `ratio`.
    public static func keptCount(_ n: Int, ratio: Double, roundTo: Int = 1) -> Int {
        let k = n - min(n - 1, Int((Double(n) * ratio).rounded(.down)))
        guard roundTo > 1 else { return k }
        return min(n, max(roundTo, Int((Double(k) / Double(roundTo)).rounded()) * roundTo))
    }

    /// The prunable group named `name` (errors name the closest group when there is none).
    public static func group(_ name: String, in groups: [ChannelGroup], key: String) throws -> ChannelGroup {
        guard let g = groups.first(where: { $0.name == name }) else {
            let names = groups.filter(\.isPrunable).map(\.name)
            let hint = closestName(name, names).map { " (closest: '\($0)')" } ?? ""
            throw PruneError("\(key): no channel group '\(name)'\(hint); the prunable groups are named by their first producing layer: \(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? ", ..." : "")")
        }
        if let why = g.protectedBecause { throw PruneError("\(key): group '\(name)' carries \(why) and cannot be pruned") }
        return g
    }

    /// Decisions for per-group ratios in [0, 1) (`ratios` keyed by group name), scored by `criterion`
    /// on the model as it is.
    public static func decide(_ groups: [ChannelGroup], ratios: [(String, Double)], criterion: PruneCriterion,
                              l0Threshold: Float = Importance.defaultL0Threshold, roundTo: Int = 1) throws -> [Decision] {
        guard roundTo >= 1 else { throw PruneError("round-to \(roundTo) must be at least 1") }
        var seen = Set<String>()
        return try ratios.map { name, r in
            guard r >= 0 && r < 1 else { throw PruneError("ratio \(r) for group '\(name)' is outside [0, 1)") }
            guard seen.insert(name).inserted else { throw PruneError("group '\(name)' is given twice") }
            let g = try group(name, in: groups, key: "plan")
            let s = try Importance.scores(g, criterion, l0Threshold: l0Threshold)
            return Decision(group: name, before: g.channels, kept: kept(scores: s, ratio: r, roundTo: roundTo))
        }
    }

    /// One ratio for every prunable group (a uniform plan).
    public static func uniform(_ groups: [ChannelGroup], ratio: Double) -> [(String, Double)] {
        groups.filter(\.isPrunable).map { ($0.name, ratio) }
    }

    /// Removes the channels the decisions drop from every slice of their groups.
    public static func apply(_ decisions: [Decision], to groups: [ChannelGroup]) throws {
        for d in decisions {
            let g = try group(d.group, in: groups, key: "plan")
            guard g.channels == d.before else { throw PruneError("group '\(d.group)' has \(g.channels) channels, the decision was made for \(d.before)") }
            guard !d.kept.isEmpty else { throw PruneError("group '\(d.group)' would lose every one of its \(g.channels) channels") }
            guard d.kept.count < g.channels else { continue }
            for s in g.slices {
                do { try s.layer.keepChannels(d.kept, s.role) } catch { throw PruneError("\(error)") }
            }
        }
    }

    /// The masked form of `apply`: the channels the decisions drop stay, carrying zeros (their producers'
    /// filters and biases and their BatchNorms' gamma and beta zeroed). With activations that map 0 to 0
    /// (relu, relu6, hardswish) a model gives the same outputs either way, which is how removal is tested.
    public static func mask(_ decisions: [Decision], in groups: [ChannelGroup]) throws {
        for d in decisions {
            let g = try group(d.group, in: groups, key: "plan")
            let removed = Array(Set(0..<g.channels).subtracting(d.kept)).sorted()
            for s in g.slices where s.role != .input { s.layer.zeroOutputChannels(removed) }
        }
    }

    /// Shrinks groups to the given channel counts (their first channels kept): rebuilds a pruned
    /// model's shapes from its recipe before its weights load.
    public static func resize(_ model: Module, channels: [(group: String, keep: Int)], key: String = "model.channels") throws {
        let groups: [ChannelGroup]
        do { groups = try ChannelGraph.groups(of: model) } catch { throw PruneError("\(key): \(error)") }
        let decisions = try channels.map { name, k in
            let g = try group(name, in: groups, key: key)
            guard k >= 1 && k <= g.channels else {
                throw PruneError("\(key): group '\(name)' has \(g.channels) channels; keep \(k) must be in 1...\(g.channels)")
            }
            return Decision(group: name, before: g.channels, kept: Array(0..<k))
        }
        try apply(decisions, to: groups)
    }

    static func closestName(_ s: String, _ candidates: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var prev = Array(0...b.count)
            for (i, x) in a.enumerated() {
                var cur = [i + 1]
                for (j, y) in b.enumerated() { cur.append(min(prev[j + 1] + 1, cur[j] + 1, prev[j] + (x == y ? 0 : 1))) }
                prev = cur
            }
            return prev[b.count]
        }
        let a = Array(s)
        return candidates.map { ($0, distance(a, Array($0))) }.filter { $0.1 <= max(3, s.count / 3) }.min { $0.1 < $1.1 }?.0
    }
}
