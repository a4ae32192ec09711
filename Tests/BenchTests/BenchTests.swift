import XCTest
@testable import Bench

final class BenchTests: XCTestCase {
    func testQuickKernelBenchReportsEveryWorkload() {
        let r = KernelBench.run(.init(reps: 1, batchDivisor: 8))
        let names = r.results.map(\.name)
        for n in ["sgemm", "conv3x3", "dwconv3x3", "conv1x1", "add", "relu"] { XCTAssertTrue(names.contains(n), "missing \(n) in \(names)") }
        for b in r.results {
            XCTAssertGreaterThan(b.ms, 0, b.name)
            XCTAssertTrue(b.flops > 0 || b.bytes > 0, "\(b.name) reports neither FLOPs nor bytes")
        }
        // conv3x3 at batch 1: 3 passes x 2 FLOPs x (64*64*64*64*9) MACs.
        XCTAssertEqual(r.results.first { $0.name == "conv3x3" }!.flops, 6 * Double(64 * 64 * 64 * 64 * 9))
        XCTAssertTrue(KernelBench.format(r).contains("x sgemm"))
    }

}

final class QuantDemoTests: XCTestCase {
    /// A few steps of every variant run end to end and give accuracies in [0, 1].
    func testDemoRunsEveryVariant() throws {
        var cfg = QuantDemo.Config()
        cfg.fp32Steps = 3; cfg.qatSteps = 2; cfg.batch = 8; cfg.testImages = 128; cfg.calibrationBatches = 1
        let rows = try QuantDemo.run(cfg)
        XCTAssertEqual(rows.map(\.variant).count, 8)
        XCTAssertTrue(rows.allSatisfy { $0.accuracy >= 0 && $0.accuracy <= 1 })
        XCTAssertTrue(QuantDemo.format(rows, cfg: cfg).contains("PTQ W4A4"))
        XCTAssertEqual(try QuantDemo.run(cfg).map(\.accuracy), rows.map(\.accuracy), "same seed, same numbers")
    }
}

final class DataBenchTests: XCTestCase {
    func testDataBenchMeasuresSomething() throws {
        let r = try DataBench.run(images: 4, size: 32)
        XCTAssertGreaterThan(r.imagesPerSecond, 0)
        XCTAssertGreaterThan(r.pngKiB, 0)
    }
}
