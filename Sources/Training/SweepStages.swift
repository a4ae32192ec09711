import Foundation

/// A sweep's cells by dependency depth, for schedulers that order jobs themselves (Slurm): stage 0
/// holds the cells that start from no other cell's checkpoint, stage k + 1 those whose `init_from`
/// (model or quant) names a cell of stage k at most. Cells of one stage never depend on each other,
/// so a stage can run as one job array of any width once the stage before it has ended.
extension Sweep {
    /// Stage of each cell, by `Cell.index`. Throws a recipe error of a cell (as running it would).
    public func stages() throws -> [Int] {
        let all = cells()
        var stage = [Int?](repeating: nil, count: all.count)
        var producers: [[Int]] = []
        for cell in all {
            let r = try recipe(for: cell)
            producers.append([r.model.initFrom, r.quant.initFrom, r.train.distill.teacher].compactMap { $0 }.compactMap { dep in
                all.first(where: { dep.hasPrefix($0.dir + "/") })?.index
            }.filter { $0 != cell.index })
        }
        func depth(_ i: Int, _ visiting: Set<Int>) throws -> Int {
            if let s = stage[i] { return s }
            guard !visiting.contains(i) else {
                throw TrainingError("sweep \(name): cells \(visiting.sorted().map { all[$0].label }.joined(separator: ", ")) start from each other's checkpoints (a cycle)")
            }
            let d = try producers[i].map { try depth($0, visiting.union([i])) + 1 }.max() ?? 0
            stage[i] = d
            return d
        }
        return try all.indices.map { try depth($0, []) }
    }

    /// The cells of `stage` (nil: all), then shard I of N among them (cells I, I+N, ... of that list).
    public func cells(stage: Int?, shard: (Int, Int)?) throws -> [Cell] {
        guard let stage else { return cells(shard: shard) }
        let s = try stages()
        let inStage = cells().filter { s[$0.index] == stage }
        guard let (i, n) = shard else { return inStage }
        return inStage.enumerated().filter { $0.offset % n == i - 1 }.map(\.element)
    }
}
