import Foundation
import Autodiff
import NN

/// Channel importance criteria (shared/docs/ALGORITHMS.md section 10). Higher is more important; a
/// group's channel scores are the sums over its scored layers (the filters that produce the channels:
/// every producer of a residual stream adds its share).
public enum PruneCriterion: String, CaseIterable, Sendable {
    /// sum |F_i|
    case l1
    /// ||F_i||_2
    case l2
    /// Count of |w| in F_i above `l0Threshold` x the layer's largest |w|.
    case l0
    /// FPGM (He et al. 2019): sum_j ||F_i - F_j||_2 over the layer's filters; the filters nearest the
    /// geometric median (smallest sum) are the most replaceable.
    case fpgm
    /// BN slimming (Liu et al. 2017): |gamma| of the group's BatchNorms.
    case bn
}

public struct PruneError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum Importance {
    /// Default relative magnitude threshold of the L0 criterion.
    public static let defaultL0Threshold: Float = 0.05

    /// Per-channel importance of a group under `criterion`.
    public static func scores(_ group: ChannelGroup, _ criterion: PruneCriterion, l0Threshold: Float = defaultL0Threshold) throws -> [Double] {
        var total = [Double](repeating: 0, count: group.channels)
        if criterion == .bn {
            let scales = group.slices.compactMap(\.layer.channelScale)
            guard !scales.isEmpty else { throw PruneError("group \(group.name) has no BatchNorm, so the bn criterion cannot score it; use l1, l2, l0 or fpgm") }
            for g in scales { for i in 0..<group.channels { total[i] += Double(abs(g.pointer[i])) } }
            return total
        }
        let filters = group.scoredSlices.compactMap(\.layer.filterWeights)
        guard !filters.isEmpty else { throw PruneError("group \(group.name) has no producing layer to score") }
        for w in filters {
            let s = layerScores(w, criterion, l0Threshold: l0Threshold)
            for i in 0..<group.channels { total[i] += s[i] }
        }
        return total
    }

    /// Scores of each output filter (row) of a weight tensor [out, ...].
    public static func layerScores(_ w: Tensor, _ criterion: PruneCriterion, l0Threshold: Float = defaultL0Threshold) -> [Double] {
        let n = w.shape[0], len = w.count / n, p = w.pointer
        func row(_ i: Int) -> UnsafePointer<Float> { UnsafePointer(p + i * len) }
        switch criterion {
        case .l1:
            return (0..<n).map { i in (0..<len).reduce(0.0) { $0 + Double(abs(row(i)[$1])) } }
        case .l2:
            return (0..<n).map { i in (0..<len).reduce(0.0) { $0 + Double(row(i)[$1]) * Double(row(i)[$1]) }.squareRoot() }
        case .l0:
            var m: Float = 0
            for j in 0..<w.count { m = max(m, abs(p[j])) }
            let t = l0Threshold * m
            return (0..<n).map { i in Double((0..<len).filter { abs(row(i)[$0]) > t }.count) }
        case .fpgm:
            var d = [Double](repeating: 0, count: n)
            for i in 0..<n {
                for j in (i + 1)..<max(i + 1, n) {
                    var s = 0.0
                    for k in 0..<len { let e = Double(row(i)[k]) - Double(row(j)[k]); s += e * e }
                    let dist = s.squareRoot()
                    d[i] += dist; d[j] += dist
                }
            }
            return d
        case .bn:
            preconditionFailure("the bn criterion scores BatchNorm scales, not filters")
        }
    }
}
