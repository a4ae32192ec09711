/// How `Augment.letterbox` placed an `originalWidth` x `originalHeight` image into a square input:
/// resized by `scale` (the longer side fills the input; each side rounded to whole pixels, so the exact
/// per-axis factors are `scaleX`, `scaleY`), then shifted by (`dx`, `dy`) to the centre. A detector's
/// boxes come out in input pixels; `toOriginal` takes them back to the image the source delivered, so
/// predictions can be written in COCO results format against the source's image id.
public struct Letterbox: Sendable, Equatable {
    public var scale: Double
    public var dx: Int, dy: Int
    public var originalWidth: Int, originalHeight: Int

    public init(scale: Double, dx: Int, dy: Int, originalWidth: Int, originalHeight: Int) {
        self.scale = scale; self.dx = dx; self.dy = dy; self.originalWidth = originalWidth; self.originalHeight = originalHeight
    }

    /// The placement of an `originalWidth` x `originalHeight` image in a `size` x `size` input.
    public init(originalWidth w: Int, originalHeight h: Int, size: Int) {
        precondition(w > 0 && h > 0 && size > 0, "Letterbox: sizes must be positive, got \(w)x\(h) into \(size)")
        let k = Double(size) / Double(max(w, h))
        let rw = max(1, Int((Double(w) * k).rounded())), rh = max(1, Int((Double(h) * k).rounded()))
        self.init(scale: k, dx: (size - rw) / 2, dy: (size - rh) / 2, originalWidth: w, originalHeight: h)
    }

    /// Size of the resized image inside the input (the rest is padding).
    public var width: Int { max(1, Int((Double(originalWidth) * scale).rounded())) }
    public var height: Int { max(1, Int((Double(originalHeight) * scale).rounded())) }
    public var scaleX: Double { Double(width) / Double(originalWidth) }
    public var scaleY: Double { Double(height) / Double(originalHeight) }

    /// A box [x, y, w, h] in original pixels to input pixels.
    public func toInput(_ b: [Double]) -> [Double] {
        let kx = scaleX, ky = scaleY
        return [b[0] * kx + Double(dx), b[1] * ky + Double(dy), b[2] * kx, b[3] * ky]
    }

    /// A box [x, y, w, h] in input pixels back to original pixels, clipped to the original image (a
    /// prediction reaching into the padding ends at the image border; one lying wholly in the padding
    /// gets zero width or height, which COCO evaluation matches with nothing).
    public func toOriginal(_ b: [Double]) -> [Double] {
        let kx = scaleX, ky = scaleY, w = Double(originalWidth), h = Double(originalHeight)
        let x0 = min(max((b[0] - Double(dx)) / kx, 0), w), x1 = min(max((b[0] + b[2] - Double(dx)) / kx, 0), w)
        let y0 = min(max((b[1] - Double(dy)) / ky, 0), h), y1 = min(max((b[1] + b[3] - Double(dy)) / ky, 0), h)
        return [x0, y0, max(0, x1 - x0), max(0, y1 - y0)]
    }
}
