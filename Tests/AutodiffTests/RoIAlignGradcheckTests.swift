import XCTest
import Kernels
import Autodiff

/// RoIAlign's feature gradient against finite differences. The op is linear in the features, so the
/// check is exact up to rounding wherever the samples fall; the RoIs still keep their samples off
/// integer coordinates (where bilinear weights switch pixels) and cover the border rules: samples
/// clamped at 0, at H - 1, and outside [-1, H] (counted, reading nothing).
final class RoIAlignGradcheckTests: XCTestCase {
    func testFeatureGradientMatchesFiniteDifferences() {
        var rng = RNG(seed: 17)
        let x = Tensor.uniform([2, 2, 6, 7], low: -1, high: 1, rng: &rng, requiresGrad: true)
        let rois: [Float] = [
            0, 1.3, 0.7, 9.1, 8.6,       // inside
            1, -3.1, -2.2, 5.3, 4.9,     // over the top-left corner
            1, 7.7, 6.3, 16.9, 14.2,     // over the bottom-right corner
            0, 20.3, 1.1, 25.7, 6.2,     // right of the map (samples beyond W)
            0, 2.2, 3.4, 2.45, 3.6,      // tiny
        ]
        for aligned in [true, false] {
            for sampling in [0, 2, 3] {
                let r = gradcheck([x]) {
                    $0[0].roiAlign(rois: rois, outputSize: (2, 3), spatialScale: 0.55, samplingRatio: sampling, aligned: aligned)
                }
                XCTAssertTrue(r.passed, "aligned \(aligned), sampling \(sampling): \(r)")
                XCTAssertEqual(r.checked, x.count)
                XCTAssertTrue(x.grad!.scalars.contains { $0 != 0 })
            }
        }
    }

    /// A RoI pooled twice from the same map and summed: both scatters add into one gradient plane.
    func testOverlappingRoIsAccumulate() {
        var rng = RNG(seed: 3)
        let x = Tensor.uniform([1, 3, 5, 5], low: -1, high: 1, rng: &rng, requiresGrad: true)
        let rois: [Float] = [0, 0.3, 0.6, 3.7, 4.1, 0, 0.3, 0.6, 3.7, 4.1, 0, 1.4, 0.2, 4.6, 2.3]
        let r = gradcheck([x]) { $0[0].roiAlign(rois: rois, outputSize: (7, 7), spatialScale: 1, samplingRatio: 0, aligned: true) }
        XCTAssertTrue(r.passed, "\(r)")
    }
}
