import Dispatch

/// Median of `reps` timings after `warmup` untimed runs, in milliseconds (the benchmarks of every layer).
public func timeMedian(reps: Int, warmup: Int = 3, _ body: () -> Void) -> Double {
    for _ in 0..<warmup { body() }
    var ts: [Double] = []
    for _ in 0..<max(1, reps) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        ts.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
    }
    ts.sort()
    return ts.count % 2 == 1 ? ts[ts.count / 2] : (ts[ts.count / 2 - 1] + ts[ts.count / 2]) / 2
}
