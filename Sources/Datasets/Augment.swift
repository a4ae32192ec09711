import Foundation
import Kernels

/// Geometric and photometric augmentations; every geometric one moves the boxes and the ignore regions
/// exactly with the pixels.
/// All randomness comes from the caller's `RNG`, so a (seed, epoch, index) reproduces an augmentation.
public enum Augment {
    public static func flipHorizontal(_ s: Sample) -> Sample {
        var out = s.image
        let w = s.image.width, c = s.image.channels
        for y in 0..<s.image.height { for x in 0..<w { for k in 0..<c {
            out.pixels[out.index(x: x, y: y, c: k)] = s.image.pixels[s.image.index(x: w - 1 - x, y: y, c: k)]
        }}}
        return s.with(image: out) { [Double(w) - $0[0] - $0[2], $0[1], $0[2], $0[3]] }
    }

    public static func flipVertical(_ s: Sample) -> Sample {
        var out = s.image
        let h = s.image.height, rowBytes = s.image.width * s.image.channels
        for y in 0..<h {
            out.pixels.replaceSubrange((y * rowBytes)..<((y + 1) * rowBytes), with: s.image.pixels[((h - 1 - y) * rowBytes)..<((h - y) * rowBytes)])
        }
        return s.with(image: out) { [$0[0], Double(h) - $0[1] - $0[3], $0[2], $0[3]] }
    }

    /// Rotates by 90 degrees clockwise `quarterTurns` times (aerial images have no "up").
    public static func rotate90(_ s: Sample, quarterTurns: Int) -> Sample {
        var cur = s
        for _ in 0..<(((quarterTurns % 4) + 4) % 4) {
            let w = cur.image.width, h = cur.image.height, c = cur.image.channels
            var out = Image(width: h, height: w, channels: c)
            // clockwise: new (x', y') = (h - 1 - y, x)
            for y in 0..<h { for x in 0..<w { for k in 0..<c {
                out.pixels[out.index(x: h - 1 - y, y: x, c: k)] = cur.image.pixels[cur.image.index(x: x, y: y, c: k)]
            }}}
            cur = cur.with(image: out) { [Double(h) - $0[1] - $0[3], $0[0], $0[3], $0[2]] }
        }
        return cur
    }

    /// Bilinear resize of the pixels, boxes scaled with them.
    public static func resize(_ s: Sample, width: Int, height: Int) -> Sample {
        precondition(width > 0 && height > 0, "Augment.resize: size must be positive, got \(width)x\(height)")
        if width == s.image.width && height == s.image.height { return s }
        let src = s.image, c = src.channels
        var out = Image(width: width, height: height, channels: c)
        let sx = Double(src.width) / Double(width), sy = Double(src.height) / Double(height)
        for y in 0..<height {
            let fy = max(0, (Double(y) + 0.5) * sy - 0.5)
            let y0 = min(Int(fy), src.height - 1), y1 = min(y0 + 1, src.height - 1), ty = fy - Double(y0)
            for x in 0..<width {
                let fx = max(0, (Double(x) + 0.5) * sx - 0.5)
                let x0 = min(Int(fx), src.width - 1), x1 = min(x0 + 1, src.width - 1), tx = fx - Double(x0)
                for k in 0..<c {
                    let a = Double(src.pixels[src.index(x: x0, y: y0, c: k)]), b = Double(src.pixels[src.index(x: x1, y: y0, c: k)])
                    let d = Double(src.pixels[src.index(x: x0, y: y1, c: k)]), e = Double(src.pixels[src.index(x: x1, y: y1, c: k)])
                    let v = (a * (1 - tx) + b * tx) * (1 - ty) + (d * (1 - tx) + e * tx) * ty
                    out.pixels[out.index(x: x, y: y, c: k)] = UInt8(max(0, min(255, v.rounded())))
                }
            }
        }
        let kx = Double(width) / Double(src.width), ky = Double(height) / Double(src.height)
        return s.with(image: out) { [$0[0] * kx, $0[1] * ky, $0[2] * kx, $0[3] * ky] }
    }

    /// Resizes keeping the aspect ratio to fit `size` x `size` and pads with `fill`; the returned
    /// `Letterbox` maps boxes back to the original image.
    public static func letterbox(_ s: Sample, size: Int, fill: UInt8 = 114) -> (sample: Sample, letterbox: Letterbox) {
        let m = Letterbox(originalWidth: s.image.width, originalHeight: s.image.height, size: size)
        if s.image.width == size && s.image.height == size { return (s, m) }
        let w = m.width, h = m.height, dx = m.dx, dy = m.dy
        let r = resize(s, width: w, height: h)
        var out = Image(width: size, height: size, channels: s.image.channels, fill: fill)
        let rowBytes = w * s.image.channels
        for y in 0..<h {
            let dst = out.index(x: dx, y: dy + y, c: 0)
            out.pixels.replaceSubrange(dst..<(dst + rowBytes), with: r.image.pixels[(y * rowBytes)..<((y + 1) * rowBytes)])
        }
        return (r.with(image: out) { [$0[0] + Double(dx), $0[1] + Double(dy), $0[2], $0[3]] }, m)
    }

    /// Crops a window. A box is clipped to it and stays an object when at least `minVisible` of its area
    /// and at least one pixel of width and height remain; otherwise, if any part of it (positive area)
    /// remains, that part becomes an ignore region: a half-visible aircraft is not an aircraft to learn,
    /// but not background either. Ignore regions are clipped and kept when any part remains visible.
    /// Boxes wholly outside the window are gone (they are not in the picture).
    public static func crop(_ s: Sample, x: Int, y: Int, width: Int, height: Int, minVisible: Double = 0.5) -> Sample {
        precondition(x >= 0 && y >= 0 && width > 0 && height > 0 && x + width <= s.image.width && y + height <= s.image.height,
                     "Augment.crop: window \(x),\(y) \(width)x\(height) outside image \(s.image.width)x\(s.image.height)")
        let t = Tiling.Tile(x: x, y: y, width: width, height: height, objects: [])
        var out = s
        out.image = Tiling.crop(s.image, t)
        out.boxes = []; out.labels = []; out.ignoreBoxes = []; out.cleanLabels = s.cleanLabels == nil ? nil : []
        let X = Double(x), Y = Double(y), X1 = Double(x + width), Y1 = Double(y + height)
        func clipped(_ b: [Double]) -> [Double]? {
            let x0 = max(b[0], X), y0 = max(b[1], Y), x1 = min(b[0] + b[2], X1), y1 = min(b[1] + b[3], Y1)
            return x1 > x0 && y1 > y0 ? [x0 - X, y0 - Y, x1 - x0, y1 - y0] : nil
        }
        for (k, (b, l)) in zip(s.boxes, s.labels).enumerated() {
            guard let c = clipped(b) else { continue }
            if c[2] >= 1, c[3] >= 1, c[2] * c[3] >= minVisible * b[2] * b[3] {
                out.boxes.append(c); out.labels.append(l); out.cleanLabels?.append(s.cleanLabels![k])
            } else {
                out.ignoreBoxes.append(c)
            }
        }
        for b in s.ignoreBoxes { if let c = clipped(b) { out.ignoreBoxes.append(c) } }
        return out
    }

    /// Clips boxes and ignore regions to the window (`x`, `y`, `width`, `height`). A box narrower or
    /// lower than `minSize` pixels afterwards is dropped (with its label) and counted: a detector cannot
    /// place an anchor on it, and a sub-pixel box makes the box coder's log(w) blow up. Ignore regions
    /// are dropped, uncounted, only when nothing of them is left inside.
    public static func clip(_ s: Sample, x: Int, y: Int, width: Int, height: Int, minSize: Double = 1) -> (sample: Sample, dropped: Int) {
        var out = s
        out.boxes = []; out.labels = []; out.ignoreBoxes = []; out.cleanLabels = s.cleanLabels == nil ? nil : []
        out.boxes.reserveCapacity(s.boxes.count); out.labels.reserveCapacity(s.labels.count)
        let X = Double(x), Y = Double(y), X1 = Double(x + width), Y1 = Double(y + height)
        var dropped = 0
        for (k, (b, l)) in zip(s.boxes, s.labels).enumerated() {
            let x0 = max(b[0], X), y0 = max(b[1], Y), x1 = min(b[0] + b[2], X1), y1 = min(b[1] + b[3], Y1)
            if x1 - x0 >= minSize, y1 - y0 >= minSize {
                out.boxes.append([x0, y0, x1 - x0, y1 - y0]); out.labels.append(l); out.cleanLabels?.append(s.cleanLabels![k])
            } else { dropped += 1 }
        }
        for b in s.ignoreBoxes {
            let x0 = max(b[0], X), y0 = max(b[1], Y), x1 = min(b[0] + b[2], X1), y1 = min(b[1] + b[3], Y1)
            if x1 > x0, y1 > y0 { out.ignoreBoxes.append([x0, y0, x1 - x0, y1 - y0]) }
        }
        return (out, dropped)
    }

    /// Random scale in [minScale, maxScale], then a random crop back to the original size (zero padding
    /// when the scaled image is smaller), with box clipping and the visibility filter.
    public static func randomScaleCrop(_ s: Sample, minScale: Double, maxScale: Double, minVisible: Double = 0.5, rng: inout RNG) -> Sample {
        let u = uniform(&rng)
        let k = minScale + (maxScale - minScale) * u
        let w = max(1, Int((Double(s.image.width) * k).rounded())), h = max(1, Int((Double(s.image.height) * k).rounded()))
        var r = resize(s, width: w, height: h)
        let W = s.image.width, H = s.image.height
        if w < W || h < H {
            var canvas = Image(width: max(w, W), height: max(h, H), channels: s.image.channels)
            let rowBytes = w * s.image.channels
            for y in 0..<h {
                let dst = canvas.index(x: 0, y: y, c: 0)
                canvas.pixels.replaceSubrange(dst..<(dst + rowBytes), with: r.image.pixels[(y * rowBytes)..<((y + 1) * rowBytes)])
            }
            r.image = canvas
        }
        let ox = rng.nextInt(below: r.image.width - W + 1), oy = rng.nextInt(below: r.image.height - H + 1)
        return crop(r, x: ox, y: oy, width: W, height: H, minVisible: minVisible)
    }

    /// Brightness (additive, fraction of 255), contrast (multiplicative around the mean) and HSV-style
    /// saturation jitter, each drawn uniformly in [-amount, amount].
    public static func colorJitter(_ s: Sample, brightness: Double, contrast: Double, saturation: Double, rng: inout RNG) -> Sample {
        let b = (uniform(&rng) * 2 - 1) * brightness * 255
        let c = 1 + (uniform(&rng) * 2 - 1) * contrast
        let sat = 1 + (uniform(&rng) * 2 - 1) * saturation
        var img = s.image
        let n = img.width * img.height, ch = img.channels
        let mean = img.pixels.reduce(0.0) { $0 + Double($1) } / Double(max(1, img.pixels.count))
        for p in 0..<n {
            let base = p * ch
            let gray = ch >= 3 ? 0.299 * Double(img.pixels[base]) + 0.587 * Double(img.pixels[base + 1]) + 0.114 * Double(img.pixels[base + 2]) : 0
            for k in 0..<min(ch, 3) {
                var v = Double(img.pixels[base + k])
                if ch >= 3 { v = gray + (v - gray) * sat }
                v = (v - mean) * c + mean + b
                img.pixels[base + k] = UInt8(max(0, min(255, v.rounded())))
            }
        }
        var out = s
        out.image = img
        return out
    }

    static func uniform(_ rng: inout RNG) -> Double { Double(rng.nextUInt64() >> 11) * 0x1p-53 }

    /// Probabilities of the random augmentations (recipe keys of the same names).
    public struct Policy: Sendable, Equatable {
        public var flipHorizontal: Double = 0.5
        public var flipVertical: Double = 0.5
        public var rotate90: Double = 0.5
        public var scaleCrop: Double = 0
        public var scaleRange: (Double, Double) = (0.8, 1.2)
        public var minVisible: Double = 0.5
        public var colorJitter: Double = 0
        public var brightness = 0.1, contrast = 0.1, saturation = 0.2
        public init() {}
        public static func == (a: Policy, b: Policy) -> Bool {
            a.flipHorizontal == b.flipHorizontal && a.flipVertical == b.flipVertical && a.rotate90 == b.rotate90 && a.scaleCrop == b.scaleCrop
                && a.scaleRange == b.scaleRange && a.minVisible == b.minVisible && a.colorJitter == b.colorJitter
                && a.brightness == b.brightness && a.contrast == b.contrast && a.saturation == b.saturation
        }
    }

    /// Applies `policy` with draws from `rng` (each step draws whether or not it fires, so the stream
    /// position does not depend on earlier outcomes).
    public static func apply(_ policy: Policy, to s: Sample, rng: inout RNG) -> Sample {
        var out = s
        let draws = (0..<6).map { _ in uniform(&rng) }
        var child = rng.split()
        if draws[0] < policy.flipHorizontal { out = flipHorizontal(out) }
        if draws[1] < policy.flipVertical { out = flipVertical(out) }
        if draws[2] < policy.rotate90 { out = rotate90(out, quarterTurns: 1 + Int(draws[3] * 3)) }
        if draws[4] < policy.scaleCrop { out = randomScaleCrop(out, minScale: policy.scaleRange.0, maxScale: policy.scaleRange.1, minVisible: policy.minVisible, rng: &child) }
        if draws[5] < policy.colorJitter { out = colorJitter(out, brightness: policy.brightness, contrast: policy.contrast, saturation: policy.saturation, rng: &child) }
        return out
    }
}
