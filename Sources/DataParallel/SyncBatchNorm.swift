import NN
import Autodiff

/// PyTorch's `SyncBatchNorm.convert_sync_batchnorm`: every BatchNorm2d of `model` normalises with the
/// statistics of the global batch over all ranks while training.
public enum SyncBatchNorm {
    /// `reducer`: the job's `MPIWorld`; `SyncBatchNorm.local` in a single process (the same operation,
    /// Double accumulation included, over one process's batch: what a run compares with N ranks); nil:
    /// back to each BatchNorm's own statistics. Returns the number of BatchNorms changed.
    @discardableResult
    public static func convert(_ model: Module, reducer: CrossProcessSum?) -> Int {
        var n = 0
        for (_, m) in model.namedModules() {
            guard let bn = m as? BatchNorm2d else { continue }
            bn.sync = reducer; n += 1
        }
        return n
    }

    /// The reducer of a one-process job: the sums are already complete.
    public static var local: CrossProcessSum { LocalSum() }

    final class LocalSum: CrossProcessSum, @unchecked Sendable {
        func sumInPlace(_ values: UnsafeMutablePointer<Double>, count: Int) {}
    }
}
