import XCTest
import Foundation
@testable import DataParallel
import NN
import Autodiff
import Kernels

/// Two threads standing in for two ranks: each `sumInPlace` waits for the other's values and both get
/// the sum (an allreduce over two processes, in memory).
final class PairSum: CrossProcessSum, @unchecked Sendable {
    let lock = NSCondition()
    var pending: [Double]? = nil
    var result: [Double]? = nil
    var generation = 0
    var taken = 0

    func sumInPlace(_ values: UnsafeMutablePointer<Double>, count: Int) {
        lock.lock(); defer { lock.unlock() }
        while result != nil { lock.wait() }          // the previous round is still being read
        if let p = pending {
            result = (0..<count).map { p[$0] + values[$0] }
            pending = nil
            taken = 0
            lock.broadcast()
        } else {
            pending = Array(UnsafeBufferPointer(start: values, count: count))
            let g = generation
            while result == nil || generation != g { lock.wait() }
        }
        let r = result!
        for i in 0..<count { values[i] = r[i] }
        taken += 1
        if taken == 2 { result = nil; generation += 1; lock.broadcast() }
    }
}

final class DataParallelTests: XCTestCase {
    func testFingerprintIsFNV1a() {
        // FNV-1a 64 reference values.
        XCTAssertEqual(Fingerprint.of(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(Fingerprint.of("a"), 0xaf63_dc4c_8601_ec8c)
        XCTAssertNotEqual(Fingerprint.of("train:\n  batch: 32\n"), Fingerprint.of("train:\n  batch: 16\n"))
        XCTAssertNotEqual(Fingerprint.executable(), 0)
    }

    func testLauncherDetection() {
        XCTAssertNil(MPIWorld.launcher([:]))
        XCTAssertNil(MPIWorld.launcher(["PATH": "/usr/bin"]))
        XCTAssertEqual(MPIWorld.launcher(["OMPI_COMM_WORLD_SIZE": "2"])?.0, "OMPI_COMM_WORLD_SIZE")
        XCTAssertEqual(MPIWorld.launcher(["PMIX_RANK": "0"])?.1, "0")
    }

    /// Synchronised BatchNorm over two "ranks" (threads) holding the two halves of a batch gives the
    /// outputs, input gradients and running statistics of plain BatchNorm over the whole batch; its
    /// weight and bias gradients are per-rank parts whose sum is the whole batch's.
    func testSyncBatchNormOverTwoHalvesEqualsWholeBatch() {
        var rng = RNG(seed: 7)
        let n = 6, c = 3, h = 2, w = 3
        let count = n * c * h * w
        let x = Tensor.zeros([n, c, h, w]), dy = Tensor.zeros([n, c, h, w])
        rng.fillNormal(x.pointer, count: count, mean: 1, std: 2)
        rng.fillNormal(dy.pointer, count: count)
        let gamma0 = (0..<c).map { Float($0) * 0.3 + 0.7 }, beta0 = (0..<c).map { Float($0) * 0.1 - 0.1 }

        @Sendable func bn() -> BatchNorm2d {
            let b = BatchNorm2d(c)
            gamma0.withUnsafeBufferPointer { b.weight.pointer.update(from: $0.baseAddress!, count: c) }
            beta0.withUnsafeBufferPointer { b.bias.pointer.update(from: $0.baseAddress!, count: c) }
            b.train()
            return b
        }
        // The whole batch, local statistics.
        let whole = bn()
        let xw = x.copy(); xw.requiresGrad = true
        let yw = whole(xw)
        yw.backward(dy)

        // Two halves on two threads, synchronised.
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var outs = [[Float]](repeating: [], count: 2), dxs = [[Float]](repeating: [], count: 2)
            var dgs = [[Float]](repeating: [], count: 2), dbs = [[Float]](repeating: [], count: 2), stats = [[Float]](repeating: [], count: 2)
        }
        let res = Results()
        let pair = PairSum()
        let half = n / 2, per = c * h * w
        let xv = x.scalars, dyv = dy.scalars
        DispatchQueue.concurrentPerform(iterations: 2) { r in
            let b = bn(); b.sync = pair
            let xs = Tensor(shape: [half, c, h, w], scalars: Array(xv[(r * half * per)..<((r + 1) * half * per)]))
            xs.requiresGrad = true
            let ys = b(xs)
            ys.backward(Tensor(shape: [half, c, h, w], scalars: Array(dyv[(r * half * per)..<((r + 1) * half * per)])))
            res.lock.lock()
            res.outs[r] = ys.scalars; res.dxs[r] = xs.grad!.scalars; res.dgs[r] = b.weight.grad!.scalars; res.dbs[r] = b.bias.grad!.scalars
            res.stats[r] = b.runningMean.scalars + b.runningVar.scalars
            res.lock.unlock()
        }
        let (outs, dxs, dgs, dbs, stats) = (res.outs, res.dxs, res.dgs, res.dbs, res.stats)
        func close(_ a: [Float], _ b: [Float], _ what: String, tol: Float = 2e-5) {
            XCTAssertEqual(a.count, b.count, what)
            for (u, v) in zip(a, b) { XCTAssertEqual(u, v, accuracy: tol * max(1, abs(v)), what) }
        }
        close(outs[0] + outs[1], yw.scalars, "output")
        close(dxs[0] + dxs[1], xw.grad!.scalars, "input gradient")
        close(zip(dgs[0], dgs[1]).map { $0 + $1 }, whole.weight.grad!.scalars, "weight gradient (sum over ranks)")
        close(zip(dbs[0], dbs[1]).map { $0 + $1 }, whole.bias.grad!.scalars, "bias gradient (sum over ranks)")
        close(stats[0], whole.runningMean.scalars + whole.runningVar.scalars, "running statistics (rank 0)")
        close(stats[1], stats[0], "running statistics (rank 1 = rank 0)", tol: 0)
    }

    /// The synchronised op's own backward (sync_batch_norm) against finite differences, in one process.
    func testSyncBatchNormGradcheck() {
        var rng = RNG(seed: 11)
        let x = Tensor.uniform([4, 3, 2, 3], low: -2, high: 2, rng: &rng, requiresGrad: true)
        let g = Tensor.uniform([3], low: 0.5, high: 1.5, rng: &rng, requiresGrad: true)
        let b = Tensor.uniform([3], low: -0.5, high: 0.5, rng: &rng, requiresGrad: true)
        let r = gradcheck([x, g, b]) { t in
            t[0].batchNorm(weight: t[1], bias: t[2], runningMean: nil, runningVar: nil, training: true, sync: SyncBatchNorm.local)
        }
        XCTAssertTrue(r.passed, "sync_batch_norm: \(r)")
        XCTAssertGreaterThan(r.checked, 0)
    }

    func testConvertSetsEveryBatchNorm() {
        var rng = RNG(seed: 1)
        let m = Sequential([try! Conv2d(3, 4, kernel: 3, padding: 1, rng: &rng), BatchNorm2d(4), Activation(.relu), try! Conv2d(4, 4, kernel: 1, rng: &rng), BatchNorm2d(4)])
        let pair = PairSum()
        let n = model(m) { $0.sync = pair }
        XCTAssertEqual(n, 2)
        XCTAssertEqual(SyncBatchNorm.convert(m, reducer: nil), 2)
        XCTAssertEqual(m.namedModules().compactMap { ($0.1 as? BatchNorm2d)?.sync }.count, 0)
    }

    func model(_ m: Module, _ set: (BatchNorm2d) -> Void) -> Int {
        var n = 0
        for (_, x) in m.namedModules() { if let b = x as? BatchNorm2d { set(b); n += 1 } }
        return n
    }
}
