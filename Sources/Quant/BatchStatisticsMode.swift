import Autodiff
import NN

/// The mode BN re-estimation and QAT calibration run the model in: eval mode (dropout off, quantizers
/// not training), except every BatchNorm2d not in `excluding`, which normalises with each batch's own
/// statistics (its frozen flag cleared). Every module's mode and each of those BNs' momentum, frozen
/// flag and cross-process sum are restored when `body` returns. `body` gets the BNs with their paths.
enum BatchStatisticsMode {
    static func run<R>(_ model: Module, excluding: Set<ObjectIdentifier> = [], _ body: ([(String, BatchNorm2d)]) -> R) -> R {
        let modes = model.namedModules().map { ($0.1, $0.1.isTraining) }
        let norms = model.namedModules().compactMap { p, m -> (String, BatchNorm2d)? in
            guard let bn = m as? BatchNorm2d, !excluding.contains(ObjectIdentifier(bn)) else { return nil }
            return (p, bn)
        }
        let saved = norms.map { ($0.1.momentum, $0.1.frozenStatistics, $0.1.sync) }
        defer {
            for (m, t) in modes { m.train(t) }   // pre-order: each child set after its parent
            for ((_, bn), (m, f, s)) in zip(norms, saved) { bn.momentum = m; bn.frozenStatistics = f; bn.sync = s }
        }
        model.eval()
        for (_, bn) in norms { bn.train(); bn.frozenStatistics = false }
        return body(norms)
    }
}
