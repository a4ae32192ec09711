import XCTest
import Foundation
import Kernels
import Autodiff
@testable import Quant

/// Parity with PyTorch 2.15's learnable fake-quant kernels on committed golden values
/// (scripts/golden/fake_quant.py -> Fixtures/fake_quant_golden.json).
final class ParityTests: XCTestCase {
    struct Case: Decodable {
        let name: String; let shape: [Int]; let axis: Int?; let qmin: Int; let qmax: Int; let grad_factor: Float
        let x: [Float]; let scale: [Float]; let zero_point: [Float]; let dy: [Float]
        let y: [Float]; let dx: [Float]; let dscale: [Float]; let dzero_point: [Float]
    }
    struct File: Decodable { let torch: String; let cases: [Case] }

    static func load() throws -> File {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fake_quant_golden.json")
        return try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
    }

    /// max |a - b| relative to the value scale: the largest magnitude of the reference, or for the
    /// summed scale/zero-point gradients at least grad_factor * sum|dy| (the size of what is summed:
    /// those sums cancel, and PyTorch's float32 sum is itself off by ~1e-7 of that).
    func relErr(_ a: [Float], _ b: [Float], floor: Float = 1e-12) -> Float {
        let scale = max(b.map(abs).max() ?? 0, floor)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }

    func testForwardAndAllThreeGradientsMatchPyTorch() throws {
        let f = try ParityTests.load()
        XCTAssertGreaterThanOrEqual(f.cases.count, 90)
        for c in f.cases {
            let x = Tensor(shape: c.shape, scalars: c.x, requiresGrad: true)
            let s = Tensor(shape: [c.scale.count], scalars: c.scale, requiresGrad: true)
            let z = Tensor(shape: [c.zero_point.count], scalars: c.zero_point, requiresGrad: true)
            let y = x.fakeQuantize(scale: s, zeroPoint: z, qmin: c.qmin, qmax: c.qmax, axis: c.axis, gradFactor: c.grad_factor)
            y.backward(Tensor(shape: c.shape, scalars: c.dy))
            XCTAssertLessThanOrEqual(relErr(y.scalars, c.y), 1e-6, "\(c.name): forward")
            XCTAssertLessThanOrEqual(relErr(x.grad!.scalars, c.dx), 1e-6, "\(c.name): dx")
            let summed = c.grad_factor * c.dy.map(abs).reduce(0, +)
            XCTAssertLessThanOrEqual(relErr(s.grad!.scalars, c.dscale, floor: summed), 1e-6, "\(c.name): dscale \(s.grad!.scalars) vs \(c.dscale)")
            XCTAssertLessThanOrEqual(relErr(z.grad!.scalars, c.dzero_point, floor: summed * c.scale.max()!), 1e-6, "\(c.name): dzero_point \(z.grad!.scalars) vs \(c.dzero_point)")
        }
    }
}
