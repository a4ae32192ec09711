import XCTest
import Foundation
@testable import Autodiff

/// Numerics corners against PyTorch 2.15 on random shapes (fixture: scripts/golden/numerics.py):
/// hardswish's backward at exactly -3 and +3 (PyTorch's boundaries: 0 at -3, g at +3), tanh's backward
/// where it saturates, BatchNorm training on (near) zero-variance channels far from zero. Where float32
/// results may differ in the last bits, ours must be at least as close to the float64 evaluation as
/// PyTorch's (twice its error plus a few ulps of the case's scale).
final class NumericsGoldenTests: XCTestCase {
    struct Case: Decodable {
        var op: String; var shape: [Int]; var x: [Float]; var g: [Float]; var y: [Float]; var gx: [Float]
        var kinds: [String]?; var gamma: [Float]?; var beta: [Float]?; var dgamma: [Float]?; var dbeta: [Float]?
        var y_exact: [Double]?; var gx_exact: [Double]?; var dgamma_exact: [Double]?; var dbeta_exact: [Double]?
    }
    struct Golden: Decodable { var torch: String; var cases: [Case] }

    func golden() throws -> Golden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/numerics_golden.json")
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    /// Every element: |ours - exact| <= 2 |torch - exact| + ulps * scale * 2^-23, scale = max |exact| of the case.
    func assertAsAccurate(_ ours: [Float], torch: [Float], exact: [Double], ulps: Double = 4, _ what: String) {
        XCTAssertEqual(ours.count, exact.count, what)
        let scale = max(exact.map(abs).max() ?? 0, 1e-30)
        for i in ours.indices {
            let eo = abs(Double(ours[i]) - exact[i]), et = abs(Double(torch[i]) - exact[i])
            if eo > 2 * et + ulps * scale * 0x1p-23 {
                XCTFail("\(what)[\(i)]: ours \(ours[i]), PyTorch \(torch[i]), exact \(exact[i])"); return
            }
        }
    }

    func testHardswishBoundariesMatchPyTorch() throws {
        let cases = try golden().cases.filter { $0.op == "hardswish" }
        XCTAssertEqual(cases.count, 8)
        var boundaries = 0
        for c in cases {
            let x = Tensor(shape: c.shape, scalars: c.x, requiresGrad: true)
            let y = x.hardswish()
            y.backward(Tensor(shape: c.shape, scalars: c.g))
            assertAsAccurate(y.scalars, torch: c.y, exact: c.y_exact!, "hardswish y \(c.shape)")
            let gx = x.grad!.scalars
            for i in gx.indices {
                if abs(c.x[i]) == 3 {
                    boundaries += 1
                    XCTAssertEqual(gx[i], c.gx[i], "hardswish gx at x = \(c.x[i])")   // exactly PyTorch's: 0 or g
                } else {
                    XCTAssertEqual(gx[i], c.gx[i], accuracy: 2e-7 * max(1, abs(c.gx[i])), "hardswish gx at x = \(c.x[i])")
                }
            }
        }
        XCTAssertGreaterThan(boundaries, 20)
    }

    func testTanhBackwardDoesNotCancelWhenSaturated() throws {
        let cases = try golden().cases.filter { $0.op == "tanh" }
        XCTAssertEqual(cases.count, 8)
        for c in cases {
            let x = Tensor(shape: c.shape, scalars: c.x, requiresGrad: true)
            let y = x.tanh()
            y.backward(Tensor(shape: c.shape, scalars: c.g))
            let ys = y.scalars, gx = x.grad!.scalars
            for i in ys.indices {
                XCTAssertEqual(ys[i], c.y[i], accuracy: 2.5e-7 * max(1, abs(c.y[i])), "tanh y at \(c.x[i])")
                // Against g (1 - y)(1 + y) in float64 at our own y: within 2 ulps of it (1 - y*y in float32
                // loses everything but the last bits of y when |y| is near 1).
                let yd = Double(ys[i]), exact = Double(c.g[i]) * (1 - yd) * (1 + yd)
                XCTAssertEqual(Double(gx[i]), exact, accuracy: 2 * max(abs(exact), 1e-45) * 0x1p-23 + 1e-45, "tanh gx at x = \(c.x[i]), y = \(ys[i])")
                if ys[i] == c.y[i] { XCTAssertEqual(gx[i], c.gx[i], accuracy: 2 * abs(c.gx[i]) * 0x1p-23 + 1e-45) }
            }
        }
    }

    func testBatchNormTrainingOnZeroVarianceChannels() throws {
        let cases = try golden().cases.filter { $0.op == "batch_norm_train" }
        XCTAssertEqual(cases.count, 8)
        for c in cases {
            let (n, ch, hw) = (c.shape[0], c.shape[1], c.shape[2] * c.shape[3])
            let x = Tensor(shape: c.shape, scalars: c.x, requiresGrad: true)
            let gamma = Tensor(shape: [ch], scalars: c.gamma!, requiresGrad: true)
            let beta = Tensor(shape: [ch], scalars: c.beta!, requiresGrad: true)
            let y = x.batchNorm(weight: gamma, bias: beta, runningMean: nil, runningVar: nil, training: true)
            y.backward(Tensor(shape: c.shape, scalars: c.g))
            let what = "batch_norm \(c.shape) \(c.kinds!)"
            // Checked per channel: each channel's scale is its own (a constant channel's dx is ~316 g).
            func channel<T>(_ v: [T], _ k: Int) -> [T] {
                var out: [T] = []
                for b in 0..<n {
                    let start = (b * ch + k) * hw
                    out.append(contentsOf: v[start..<(start + hw)])
                }
                return out
            }
            for k in 0..<ch {
                assertAsAccurate(channel(y.scalars, k), torch: channel(c.y, k), exact: channel(c.y_exact!, k), "\(what) y, channel \(k) (\(c.kinds![k]))")
                assertAsAccurate(channel(x.grad!.scalars, k), torch: channel(c.gx, k), exact: channel(c.gx_exact!, k), ulps: 16, "\(what) dx, channel \(k) (\(c.kinds![k]))")
                assertAsAccurate([gamma.grad!.scalars[k]], torch: [c.dgamma![k]], exact: [c.dgamma_exact![k]], ulps: 64, "\(what) dgamma, channel \(k) (\(c.kinds![k]))")
                assertAsAccurate([beta.grad!.scalars[k]], torch: [c.dbeta![k]], exact: [c.dbeta_exact![k]], ulps: 64, "\(what) dbeta, channel \(k)")
                if c.kinds![k] == "constant" {
                    // x - mean is exactly 0: y is beta and dgamma 0, as in PyTorch.
                    XCTAssertEqual(gamma.grad!.scalars[k], 0, "\(what) dgamma of constant channel \(k)")
                    XCTAssertTrue(channel(y.scalars, k).allSatisfy { $0 == c.beta![k] }, "\(what) y of constant channel \(k)")
                }
            }
        }
    }
}
