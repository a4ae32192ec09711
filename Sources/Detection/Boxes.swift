import Kernels

/// Axis-aligned boxes in pixels as corners `(x1, y1, x2, y2)` with `x1 <= x2`, `y1 <= y2`: the one box
/// convention of the Detection layer (torchvision's `boxes`). Other layouts exist only at the borders
/// (COCO's `[x, y, w, h]` in files, `cxcywh` inside the box coder) and convert through the named
/// initialisers and accessors below. Stored flat, four `Float`s a box, so hot loops (IoU of 20k
/// anchors against 100 boxes) read contiguous memory.
public struct XYXYBoxes: Sendable, Equatable {
    /// `4 * count` values: x1, y1, x2, y2 of box 0, then box 1, ...
    public var coords: [Float]

    public var count: Int { coords.count / 4 }
    public var isEmpty: Bool { coords.isEmpty }

    public init() { coords = [] }

    public init(coords: [Float]) {
        precondition(coords.count % 4 == 0, "XYXYBoxes: \(coords.count) values is not a whole number of boxes")
        self.coords = coords
    }

    /// From `[x1, y1, x2, y2]` rows.
    public init(_ rows: [[Float]]) {
        var c: [Float] = []
        c.reserveCapacity(rows.count * 4)
        for r in rows {
            precondition(r.count == 4, "XYXYBoxes: a box needs 4 values, got \(r)")
            c += r
        }
        coords = c
    }

    /// From COCO's `[x, y, w, h]` (top-left corner, width, height).
    public init(xywh rows: [[Double]]) {
        var c: [Float] = []
        c.reserveCapacity(rows.count * 4)
        for r in rows {
            precondition(r.count == 4, "XYXYBoxes: a box needs 4 values, got \(r)")
            c += [Float(r[0]), Float(r[1]), Float(r[0] + r[2]), Float(r[1] + r[3])]
        }
        coords = c
    }

    /// From centre and size `(cx, cy, w, h)` rows, flat.
    public init(cxcywh c: [Float]) {
        precondition(c.count % 4 == 0, "XYXYBoxes: \(c.count) values is not a whole number of boxes")
        var out = [Float](repeating: 0, count: c.count)
        for i in stride(from: 0, to: c.count, by: 4) {
            let hw = c[i + 2] / 2, hh = c[i + 3] / 2
            out[i] = c[i] - hw; out[i + 1] = c[i + 1] - hh; out[i + 2] = c[i] + hw; out[i + 3] = c[i + 1] + hh
        }
        coords = out
    }

    public subscript(i: Int) -> (x1: Float, y1: Float, x2: Float, y2: Float) {
        (coords[4 * i], coords[4 * i + 1], coords[4 * i + 2], coords[4 * i + 3])
    }

    /// Box `i` as COCO's `[x, y, w, h]`.
    public func xywh(_ i: Int) -> [Double] {
        let b = self[i]
        return [Double(b.x1), Double(b.y1), Double(b.x2 - b.x1), Double(b.y2 - b.y1)]
    }

    /// All boxes as `(cx, cy, w, h)`, flat.
    public func cxcywh() -> [Float] {
        var out = [Float](repeating: 0, count: coords.count)
        for i in stride(from: 0, to: coords.count, by: 4) {
            let w = coords[i + 2] - coords[i], h = coords[i + 3] - coords[i + 1]
            out[i] = coords[i] + w / 2; out[i + 1] = coords[i + 1] + h / 2; out[i + 2] = w; out[i + 3] = h
        }
        return out
    }

    /// `(x2 - x1) * (y2 - y1)` per box (torchvision's `box_area`; negative for inverted boxes).
    public func areas() -> [Float] {
        (0..<count).map { (coords[4 * $0 + 2] - coords[4 * $0]) * (coords[4 * $0 + 3] - coords[4 * $0 + 1]) }
    }

    /// Coordinates clamped to `[0, width] x [0, height]` (torchvision's `clip_boxes_to_image`).
    public func clipped(width: Float, height: Float) -> XYXYBoxes {
        var c = coords
        for i in stride(from: 0, to: c.count, by: 4) {
            c[i] = min(max(c[i], 0), width); c[i + 2] = min(max(c[i + 2], 0), width)
            c[i + 1] = min(max(c[i + 1], 0), height); c[i + 3] = min(max(c[i + 3], 0), height)
        }
        return XYXYBoxes(coords: c)
    }

    /// Indices of boxes whose width and height are both at least `minSize` (torchvision's `remove_small_boxes`).
    public func indicesWithMinSize(_ minSize: Float) -> [Int] {
        (0..<count).filter { coords[4 * $0 + 2] - coords[4 * $0] >= minSize && coords[4 * $0 + 3] - coords[4 * $0 + 1] >= minSize }
    }

    /// The boxes at `indices`, in that order.
    public func selecting(_ indices: [Int]) -> XYXYBoxes {
        var c: [Float] = []
        c.reserveCapacity(indices.count * 4)
        for i in indices { c += coords[(4 * i)..<(4 * i + 4)] }
        return XYXYBoxes(coords: c)
    }

    public static func + (a: XYXYBoxes, b: XYXYBoxes) -> XYXYBoxes { XYXYBoxes(coords: a.coords + b.coords) }

    /// The boxes as five contiguous columns x1, y1, x2, y2, area (torchvision's `box_area`), each
    /// `count` long: pair loops (IoU, NMS) then read unit-stride memory and vectorize.
    func columns() -> [Float] {
        let n = count
        var out = [Float](repeating: 0, count: 5 * n)
        coords.withUnsafeBufferPointer { c in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<n {
                    let x1 = c[4 * i], y1 = c[4 * i + 1], x2 = c[4 * i + 2], y2 = c[4 * i + 3]
                    o[i] = x1; o[n + i] = y1; o[2 * n + i] = x2; o[3 * n + i] = y2
                    o[4 * n + i] = (x2 - x1) * (y2 - y1)
                }
            }
        }
        return out
    }
}
