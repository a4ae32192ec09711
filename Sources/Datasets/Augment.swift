import Foundation
import Kernels

/// An image with its axis-aligned boxes ([x, y, w, h] in pixels) and one label per box.
public struct Sample: Sendable, Equatable {
    public var image: Image
    public var boxes: [[Double]]
    public var labels: [Int]
    public init(image: Image, boxes: [[Double]] = [], labels: [Int] = []) {
        precondition(boxes.count == labels.count, "Sample: \(boxes.count) boxes but \(labels.count) labels")
        self.image = image; self.boxes = boxes; self.labels = labels
    }
}

/// Geometric and photometric augmentations; every geometric one moves the boxes exactly with the pixels.
/// All randomness comes from the caller's `RNG`, so a (seed, epoch, index) reproduces an augmentation.
public enum Augment {
    public static func flipHorizontal(_ s: Sample) -> Sample {
        var out = s.image
        let w = s.image.width, c = s.image.channels
        for y in 0..<s.image.height { for x in 0..<w { for k in 0..<c {
            out.pixels[out.index(x: x, y: y, c: k)] = s.image.pixels[s.image.index(x: w - 1 - x, y: y, c: k)]
        }}}
        return Sample(image: out, boxes: s.boxes.map { [Double(w) - $0[0] - $0[2], $0[1], $0[2], $0[3]] }, labels: s.labels)
    }

    public static func flipVertical(_ s: Sample) -> Sample {
        var out = s.image
        let h = s.image.height, rowBytes = s.image.width * s.image.channels
        for y in 0..<h {
            out.pixels.replaceSubrange((y * rowBytes)..<((y + 1) * rowBytes), with: s.image.pixels[((h - 1 - y) * rowBytes)..<((h - y) * rowBytes)])
        }
        return Sample(image: out, boxes: s.boxes.map { [$0[0], Double(h) - $0[1] - $0[3], $0[2], $0[3]] }, labels: s.labels)
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
            cur = Sample(image: out, boxes: cur.boxes.map { [Double(h) - $0[1] - $0[3], $0[0], $0[3], $0[2]] }, labels: cur.labels)
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
        return Sample(image: out, boxes: s.boxes.map { [$0[0] * kx, $0[1] * ky, $0[2] * kx, $0[3] * ky] }, labels: s.labels)
    }

    /// Resizes keeping the aspect ratio to fit `size` x `size`, pads with `fill`; returns the scale and
    /// offsets so predictions map back to the original image.
    public static func letterbox(_ s: Sample, size: Int, fill: UInt8 = 114) -> (Sample, scale: Double, dx: Int, dy: Int) {
        if s.image.width == size && s.image.height == size { return (s, 1, 0, 0) }
        let k = Double(size) / Double(max(s.image.width, s.image.height))
        let w = max(1, Int((Double(s.image.width) * k).rounded())), h = max(1, Int((Double(s.image.height) * k).rounded()))
        let r = resize(s, width: w, height: h)
        let dx = (size - w) / 2, dy = (size - h) / 2
        var out = Image(width: size, height: size, channels: s.image.channels, fill: fill)
        let rowBytes = w * s.image.channels
        for y in 0..<h {
            let dst = out.index(x: dx, y: dy + y, c: 0)
            out.pixels.replaceSubrange(dst..<(dst + rowBytes), with: r.image.pixels[(y * rowBytes)..<((y + 1) * rowBytes)])
        }
        return (Sample(image: out, boxes: r.boxes.map { [$0[0] + Double(dx), $0[1] + Double(dy), $0[2], $0[3]] }, labels: r.labels), k, dx, dy)
    }

    /// Crops a window; boxes are clipped to it and dropped when less than `minVisible` of their area
    /// remains (or when they become thinner than one pixel).
    public static func crop(_ s: Sample, x: Int, y: Int, width: Int, height: Int, minVisible: Double = 0.5) -> Sample {
        precondition(x >= 0 && y >= 0 && width > 0 && height > 0 && x + width <= s.image.width && y + height <= s.image.height,
                     "Augment.crop: window \(x),\(y) \(width)x\(height) outside image \(s.image.width)x\(s.image.height)")
        let t = Tiling.Tile(x: x, y: y, width: width, height: height, objects: [])
        let img = Tiling.crop(s.image, t)
        var boxes: [[Double]] = [], labels: [Int] = []
        for (b, l) in zip(s.boxes, s.labels) {
            let x0 = max(b[0], Double(x)), y0 = max(b[1], Double(y))
            let x1 = min(b[0] + b[2], Double(x + width)), y1 = min(b[1] + b[3], Double(y + height))
            guard x1 - x0 >= 1, y1 - y0 >= 1, (x1 - x0) * (y1 - y0) >= minVisible * b[2] * b[3] else { continue }
            boxes.append([x0 - Double(x), y0 - Double(y), x1 - x0, y1 - y0]); labels.append(l)
        }
        return Sample(image: img, boxes: boxes, labels: labels)
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
            r = Sample(image: canvas, boxes: r.boxes, labels: r.labels)
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
        return Sample(image: img, boxes: s.boxes, labels: s.labels)
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
