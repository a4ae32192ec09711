/// Pooling and resampling kernels over NCHW planes, parallel over planes.
public struct PoolGeometry: Equatable, Sendable {
    public let batch: Int, channels: Int, height: Int, width: Int
    public let kernelH: Int, kernelW: Int, strideH: Int, strideW: Int, padH: Int, padW: Int
    public let outHeight: Int, outWidth: Int

    /// Validates like PyTorch's pool2d (padding at most half the kernel, non-empty output).
    public init(input: [Int], kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int) = (0, 0), op: String) throws {
        guard input.count == 4 else { throw ShapeError(op: op, "input must be 4-D NCHW, got shape \(input)") }
        guard kernel.0 >= 1, kernel.1 >= 1 else { throw ShapeError(op: op, "kernel must be >= 1, got \(kernel)") }
        guard stride.0 >= 1, stride.1 >= 1 else { throw ShapeError(op: op, "stride must be >= 1, got \(stride)") }
        guard padding.0 >= 0, padding.1 >= 0, padding.0 * 2 <= kernel.0, padding.1 * 2 <= kernel.1 else {
            throw ShapeError(op: op, "padding \(padding) must be >= 0 and at most half the kernel \(kernel)")
        }
        let oh = (input[2] + 2 * padding.0 - kernel.0) / stride.0 + 1
        let ow = (input[3] + 2 * padding.1 - kernel.1) / stride.1 + 1
        guard input[2] + 2 * padding.0 >= kernel.0, input[3] + 2 * padding.1 >= kernel.1, oh >= 1, ow >= 1 else {
            throw ShapeError(op: op, "kernel \(kernel) is larger than padded input of shape \(input) with padding \(padding)")
        }
        batch = input[0]; channels = input[1]; height = input[2]; width = input[3]
        kernelH = kernel.0; kernelW = kernel.1; strideH = stride.0; strideW = stride.1
        padH = padding.0; padW = padding.1; outHeight = oh; outWidth = ow
    }
    public var outputShape: [Int] { [batch, channels, outHeight, outWidth] }
    var planes: Int { batch * channels }
}

public enum Pool {
    /// Max pooling; `arg` gets the index of the max inside its input plane (first max on ties, like PyTorch).
    public static func maxForward(_ g: PoolGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, arg: UnsafeMutablePointer<Int32>) {
        let hw = g.height * g.width, ohw = g.outHeight * g.outWidth
        parallelChunks(g.planes, grain: 1) { r in
            for p in r {
                let xp = x + p * hw
                for oy in 0..<g.outHeight {
                    let h0 = oy * g.strideH - g.padH
                    let hs = max(h0, 0), he = min(h0 + g.kernelH, g.height)
                    for ox in 0..<g.outWidth {
                        let w0 = ox * g.strideW - g.padW
                        let ws = max(w0, 0), we = min(w0 + g.kernelW, g.width)
                        var best = -Float.infinity, bi = hs * g.width + ws
                        for ih in hs..<he {
                            for iw in ws..<we {
                                let v = xp[ih * g.width + iw]
                                if v > best || v.isNaN { best = v; bi = ih * g.width + iw; if v.isNaN { break } }
                            }
                        }
                        y[p * ohw + oy * g.outWidth + ox] = best
                        arg[p * ohw + oy * g.outWidth + ox] = Int32(bi)
                    }
                }
            }
        }
    }

    public static func maxBackward(_ g: PoolGeometry, dy: UnsafePointer<Float>, arg: UnsafePointer<Int32>, dx: UnsafeMutablePointer<Float>) {
        let hw = g.height * g.width, ohw = g.outHeight * g.outWidth
        parallelChunks(g.planes, grain: 1) { r in
            for p in r {
                let d = dx + p * hw
                d.initialize(repeating: 0, count: hw)
                for o in 0..<ohw { d[Int(arg[p * ohw + o])] += dy[p * ohw + o] }
            }
        }
    }

    /// Average pooling. `countIncludePad` (PyTorch's default true) divides by the full window.
    public static func avgForward(_ g: PoolGeometry, countIncludePad: Bool, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let hw = g.height * g.width, ohw = g.outHeight * g.outWidth
        parallelChunks(g.planes, grain: 1) { r in
            for p in r {
                let xp = x + p * hw
                for oy in 0..<g.outHeight {
                    let h0 = oy * g.strideH - g.padH
                    let hs = max(h0, 0), he = min(h0 + g.kernelH, g.height)
                    for ox in 0..<g.outWidth {
                        let w0 = ox * g.strideW - g.padW
                        let ws = max(w0, 0), we = min(w0 + g.kernelW, g.width)
                        var s: Float = 0
                        for ih in hs..<he { for iw in ws..<we { s += xp[ih * g.width + iw] } }
                        let div = countIncludePad ? divisorWithPad(g, h0, w0) : (he - hs) * (we - ws)
                        y[p * ohw + oy * g.outWidth + ox] = s / Float(div)
                    }
                }
            }
        }
    }

    /// PyTorch's count_include_pad divisor: the window clipped to the padded image (not the raw image).
    @inline(__always)
    static func divisorWithPad(_ g: PoolGeometry, _ h0: Int, _ w0: Int) -> Int {
        let he = min(h0 + g.kernelH, g.height + g.padH), we = min(w0 + g.kernelW, g.width + g.padW)
        return (he - h0) * (we - w0)
    }

    public static func avgBackward(_ g: PoolGeometry, countIncludePad: Bool, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let hw = g.height * g.width, ohw = g.outHeight * g.outWidth
        parallelChunks(g.planes, grain: 1) { r in
            for p in r {
                let d = dx + p * hw
                d.initialize(repeating: 0, count: hw)
                for oy in 0..<g.outHeight {
                    let h0 = oy * g.strideH - g.padH
                    let hs = max(h0, 0), he = min(h0 + g.kernelH, g.height)
                    for ox in 0..<g.outWidth {
                        let w0 = ox * g.strideW - g.padW
                        let ws = max(w0, 0), we = min(w0 + g.kernelW, g.width)
                        let div = countIncludePad ? divisorWithPad(g, h0, w0) : (he - hs) * (we - ws)
                        let v = dy[p * ohw + oy * g.outWidth + ox] / Float(div)
                        for ih in hs..<he { for iw in ws..<we { d[ih * g.width + iw] += v } }
                    }
                }
            }
        }
    }

    /// Mean over each HxW plane: `planes` outputs.
    public static func globalAvgForward(planes: Int, hw: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        parallelChunks(planes, grain: max(1, 65_536 / max(1, hw))) { r in
            for p in r { y[p] = Reduce.sum(x + p * hw, count: hw) / Float(hw) }
        }
    }

    public static func globalAvgBackward(planes: Int, hw: Int, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        parallelChunks(planes, grain: max(1, 65_536 / max(1, hw))) { r in
            for p in r { (dx + p * hw).initialize(repeating: dy[p] / Float(hw), count: hw) }
        }
    }

    /// Nearest-neighbour upsampling by integer factors (the FPN top-down path uses 2).
    public static func upsampleNearestForward(planes: Int, height: Int, width: Int, factorH: Int, factorW: Int,
                                              x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let ow = width * factorW, ohw = height * factorH * ow
        parallelChunks(planes, grain: 1) { r in
            for p in r {
                let xp = x + p * height * width, yp = y + p * ohw
                for ih in 0..<height {
                    let row = yp + ih * factorH * ow
                    let src = xp + ih * width
                    if factorW == 2 {
                        for iw in 0..<width { let v = src[iw]; row[2 * iw] = v; row[2 * iw + 1] = v }
                    } else {
                        for iw in 0..<width { let v = src[iw]; for f in 0..<factorW { row[iw * factorW + f] = v } }
                    }
                    for f in 1..<max(factorH, 1) { (row + f * ow).update(from: row, count: ow) }
                }
            }
        }
    }

    public static func upsampleNearestBackward(planes: Int, height: Int, width: Int, factorH: Int, factorW: Int,
                                               dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let ow = width * factorW, ohw = height * factorH * ow
        parallelChunks(planes, grain: 1) { r in
            for p in r {
                let dxp = dx + p * height * width, dyp = dy + p * ohw
                for ih in 0..<height {
                    for iw in 0..<width {
                        var s: Float = 0
                        for fh in 0..<factorH {
                            let row = dyp + (ih * factorH + fh) * ow + iw * factorW
                            for fw in 0..<factorW { s += row[fw] }
                        }
                        dxp[ih * width + iw] = s
                    }
                }
            }
        }
    }
}
