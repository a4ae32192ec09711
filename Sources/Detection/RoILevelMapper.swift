import Foundation

/// Which FPN level a box is pooled from: equation 1 of the FPN paper (Lin et al. 2017) as
/// torchvision's `LevelMapper` (`torchvision/ops/poolers.py`) computes it,
/// `k = floor(canonicalLevel + log2(sqrt(area) / canonicalScale) + eps)` clamped to `[kMin, kMax]`,
/// in Float32 like torchvision. The eps (1e-6) is added after the logarithm, so a box whose side is
/// exactly `canonicalScale * 2^j` lands on level `canonicalLevel + j` even when log2 rounds a hair low.
///
/// A box of `canonicalScale` pixels (square root of its area) goes to `canonicalLevel`; each doubling
/// moves one level coarser. torchvision's 224 / 4 suit ImageNet-sized objects and send every box under
/// 224 px to P3 at best; for aircraft of 16-64 px on P3-P5, 16 / 3 gives 16-31 px boxes P3, 32-63 px P4
/// and 64 px P5, while 32 / 3 keeps everything under 64 px on P3.
public struct RoILevelMapper: Sendable, Equatable {
    /// Returned for a box with negative area (x2 < x1 or y2 < y1 but not both): torchvision's level is
    /// NaN there and the box matches no level, so `MultiScaleRoIAlign` leaves its row zero.
    public static let noLevel = -1

    public let kMin: Int, kMax: Int
    public let canonicalScale: Float
    public let canonicalLevel: Int
    public let eps: Float

    /// - Throws: `DetectionConfigError` for `kMin > kMax`, a canonical scale that is not a positive
    ///   finite size, or an eps that is negative or not finite.
    public init(kMin: Int, kMax: Int, canonicalScale: Float = 224, canonicalLevel: Int = 4, eps: Float = 1e-6) throws {
        guard kMin <= kMax else {
            throw DetectionConfigError(key: "levels", "lowest level \(kMin) is above highest level \(kMax); list pyramid levels finest first")
        }
        guard canonicalScale.isFinite && canonicalScale > 0 else {
            throw DetectionConfigError(key: "canonical_scale", "\(canonicalScale) must be a positive box size in pixels (torchvision: 224)")
        }
        guard eps.isFinite && eps >= 0 else { throw DetectionConfigError(key: "eps", "\(eps) must be a small non-negative number (torchvision: 1e-6)") }
        self.kMin = kMin; self.kMax = kMax
        self.canonicalScale = canonicalScale; self.canonicalLevel = canonicalLevel; self.eps = eps
    }

    /// The level of box `(x1, y1, x2, y2)` counted from `kMin` (0 is the finest level given), or
    /// `noLevel`. Zero area maps to `kMin` (log2(0) = -inf); NaN corners give `noLevel`.
    public func levelIndex(x1: Float, y1: Float, x2: Float, y2: Float) -> Int {
        let s = ((x2 - x1) * (y2 - y1)).squareRoot()
        let k = ((Float(canonicalLevel) + log2(s / canonicalScale)) + eps).rounded(.down)
        if k.isNaN { return Self.noLevel }
        return Int(Swift.min(Swift.max(k, Float(kMin)), Float(kMax))) - kMin
    }

    /// `levelIndex` of every box, in order.
    public func levelIndices(_ boxes: XYXYBoxes) -> [Int] {
        (0..<boxes.count).map { i in
            let b = boxes[i]
            return levelIndex(x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2)
        }
    }
}
