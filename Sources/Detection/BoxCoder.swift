import Foundation
import Autodiff

/// torchvision's `BoxCoder` (models/detection/_utils.py): a box relative to an anchor as
/// `(wx (xg - xa) / wa, wy (yg - ya) / ha, ww log(wg / wa), wh log(hg / ha))` over centres and sizes
/// (Girshick et al., R-CNN). Encoding and decoding sit side by side and follow torchvision's Float32
/// operation order; decoding clamps the size deltas at `bboxXformClip` (log(1000 / 16)) so `exp`
/// cannot overflow on a wild regression output.
public struct BoxCoder: Sendable, Equatable {
    /// (wx, wy, ww, wh); RetinaNet uses (1, 1, 1, 1), Faster R-CNN's box head (10, 10, 5, 5).
    public let weights: [Float]
    /// Upper clamp of the decoded dw, dh (before `exp`).
    public let bboxXformClip: Float

    public init(weights: [Float] = [1, 1, 1, 1], bboxXformClip: Double = Foundation.log(1000.0 / 16)) throws {
        guard weights.count == 4, weights.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw DetectionConfigError(key: "box_coder_weights", "\(weights) must be four positive numbers (wx, wy, ww, wh)")
        }
        self.weights = weights
        self.bboxXformClip = Float(bboxXformClip)
    }

    /// Regression targets of `boxes` (matched ground truth) relative to `anchors`, pairwise:
    /// `4 * n` values, row i = (dx, dy, dw, dh) of box i against anchor i. torchvision's `encode_single`.
    public func encode(_ boxes: XYXYBoxes, anchors: XYXYBoxes) -> [Float] {
        precondition(boxes.count == anchors.count, "BoxCoder.encode: \(boxes.count) boxes for \(anchors.count) anchors")
        let wx = weights[0], wy = weights[1], ww = weights[2], wh = weights[3]
        var out = [Float](repeating: 0, count: boxes.coords.count)
        boxes.coords.withUnsafeBufferPointer { g in
            anchors.coords.withUnsafeBufferPointer { a in
                for i in 0..<boxes.count {
                    let k = 4 * i
                    let aw = a[k + 2] - a[k], ah = a[k + 3] - a[k + 1]
                    let acx = a[k] + 0.5 * aw, acy = a[k + 1] + 0.5 * ah
                    let gw = g[k + 2] - g[k], gh = g[k + 3] - g[k + 1]
                    let gcx = g[k] + 0.5 * gw, gcy = g[k + 1] + 0.5 * gh
                    out[k] = wx * (gcx - acx) / aw
                    out[k + 1] = wy * (gcy - acy) / ah
                    out[k + 2] = ww * Foundation.log(gw / aw)
                    out[k + 3] = wh * Foundation.log(gh / ah)
                }
            }
        }
        return out
    }

    /// Boxes from regression outputs `codes` (`4 * n` values, row i for anchor i). torchvision's
    /// `decode_single`.
    public func decode(_ codes: [Float], anchors: XYXYBoxes) -> XYXYBoxes {
        precondition(codes.count == anchors.coords.count, "BoxCoder.decode: \(codes.count / 4) code rows for \(anchors.count) anchors")
        let wx = weights[0], wy = weights[1], ww = weights[2], wh = weights[3], clip = bboxXformClip
        var out = [Float](repeating: 0, count: codes.count)
        codes.withUnsafeBufferPointer { c in
            anchors.coords.withUnsafeBufferPointer { a in
                for i in 0..<anchors.count {
                    let k = 4 * i
                    let aw = a[k + 2] - a[k], ah = a[k + 3] - a[k + 1]
                    let acx = a[k] + 0.5 * aw, acy = a[k + 1] + 0.5 * ah
                    let dx = c[k] / wx, dy = c[k + 1] / wy
                    var dw = c[k + 2] / ww, dh = c[k + 3] / wh
                    dw = dw > clip ? clip : dw      // torch.clamp(max:): NaN stays NaN
                    dh = dh > clip ? clip : dh
                    let cx = dx * aw + acx, cy = dy * ah + acy
                    let halfW = 0.5 * (Foundation.exp(dw) * aw), halfH = 0.5 * (Foundation.exp(dh) * ah)
                    out[k] = cx - halfW; out[k + 1] = cy - halfH
                    out[k + 2] = cx + halfW; out[k + 3] = cy + halfH
                }
            }
        }
        return XYXYBoxes(coords: out)
    }

    /// Differentiable `decode` for losses on decoded boxes (GIoU in torchvision's RetinaNet v2 decodes the
    /// regression output, then compares boxes): `codes` is `[n, 4]`, the result `[n, 4]` xyxy; the
    /// anchors are constants. Composed of tape primitives; the clamp passes no gradient above the clip,
    /// like `torch.clamp`.
    public func decode(_ codes: Tensor, anchors: XYXYBoxes) -> Tensor {
        let n = anchors.count
        precondition(codes.shape == [n, 4], "BoxCoder.decode: codes of shape \(codes.shape) for \(n) anchors (need [\(n), 4])")
        var aw = [Float](repeating: 0, count: n), ah = aw, acx = aw, acy = aw
        for i in 0..<n {
            let b = anchors[i]
            aw[i] = b.x2 - b.x1; ah[i] = b.y2 - b.y1
            acx[i] = b.x1 + 0.5 * aw[i]; acy[i] = b.y1 + 0.5 * ah[i]
        }
        func column(_ v: [Float]) -> Tensor { Tensor(shape: [n, 1], scalars: v) }
        // Division by a one-element tensor rather than `* (1 / w)`: the same rounding as torchvision's
        // `rel_codes / wx` for weights that are not powers of two.
        func unweighted(_ k: Int) -> Tensor {
            let d = codes.slice(axis: 1, start: k, end: k + 1)
            return weights[k] == 1 ? d : d / Tensor(shape: [1], scalars: [weights[k]])
        }
        let width = column(aw), height = column(ah)
        let cx = unweighted(0) * width + column(acx)
        let cy = unweighted(1) * height + column(acy)
        let halfW = (unweighted(2).clamp(-.infinity, bboxXformClip).exp() * width) * 0.5
        let halfH = (unweighted(3).clamp(-.infinity, bboxXformClip).exp() * height) * 0.5
        return Tensor.concat([cx - halfW, cy - halfH, cx + halfW, cy + halfH], axis: 1)
    }
}
