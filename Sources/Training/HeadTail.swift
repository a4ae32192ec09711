/// Head and tail of a long-tailed class distribution, for reporting how a detector does on its rare
/// classes: the classes are ranked by their ground-truth objects in the evaluated split (most first,
/// ties by class order); the head is the first third of that ranking and the tail the last third
/// (rounded up: 4 and 4 of 12 classes). `<name>_head` / `<name>_tail` are the means of a per-class
/// metric over them, skipping classes without a value (-1). Using the evaluated split's counts keeps the
/// split the same whatever label noise the training set has; the synthetic benchmark draws every split
/// from the same long-tailed distribution, so its ranking is the training frequencies' ranking too.
public enum HeadTail {
    /// (head, tail) class indices for these counts.
    public static func groups(counts: [Int]) -> (head: [Int], tail: [Int]) {
        let k = counts.count
        guard k >= 3 else { return ([], []) }
        let ranked = counts.indices.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }
        let third = (k + 2) / 3
        return (Array(ranked.prefix(third)), Array(ranked.suffix(third)))
    }

    /// Adds `<name>_head` and `<name>_tail` for each per-class metric in `names` the metrics carry (kept
    /// when already present). Nothing for fewer than 3 classes or without per-class counts.
    public static func add(to m: inout TaskMetrics, perClass names: [String]) {
        let (head, tail) = groups(counts: m.perClassCount)
        guard !head.isEmpty else { return }
        for name in names {
            guard let v = m.perClass[name], v.count == m.perClassCount.count else { continue }
            for (suffix, group) in [("head", head), ("tail", tail)] where m.values[name + "_" + suffix] == nil {
                let xs = group.map { v[$0] }.filter { $0 >= 0 }
                m.values[name + "_" + suffix] = xs.isEmpty ? -1 : xs.reduce(0, +) / Double(xs.count)
            }
        }
    }
}
