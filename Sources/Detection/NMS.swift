import Kernels

// Non-maximum suppression equal to torchvision's CPU kernels (csrc/ops/cpu/nms_kernel.cpp and
// ops/boxes.py batched_nms), index for index.
//
// - Order: boxes are visited by descending score; equal scores by ascending index. torchvision's
//   kernel sorts with a stable sort, which gives exactly that order.
// - A box is suppressed when IoU > threshold (strict), the IoU computed in Float32 and compared with
//   the threshold as a Double (the kernel's `float > double`): `iouThreshold` is a Double for that reason.
// - batched_nms has two paths in torchvision and we follow both, because they can disagree: up to 1000
//   boxes it offsets each class's boxes by `class * (max coordinate + 1)` and runs one NMS (the offset
//   changes Float32 rounding, and boxes with negative coordinates can reach into the next class's
//   range); above 1000 boxes it runs NMS per class and sorts the kept boxes by score. That final
//   sort in torchvision is `Tensor.sort` without `stable`, whose order among exactly equal scores
//   depends on the CPU's sort kernel (x86-simd-sort on AVX2/AVX-512 machines); we order such ties
//   by ascending index. The kept set is the same; only the order among equal scores can differ.
//
// Speed: candidates are sorted once as packed integer keys, their boxes copied into sorted columns;
// each kept box marks what it suppresses in one branch-free, vectorized pass, and the survivors are
// compacted whenever a quarter of them died, so the work shrinks as boxes are suppressed. Classes run
// in parallel.

/// Indices of the boxes kept by greedy NMS, by descending score (ties: lower index first):
/// torchvision's `ops.nms`.
public func nms(_ boxes: XYXYBoxes, scores: [Float], iouThreshold: Double) -> [Int] {
    precondition(scores.count == boxes.count, "nms: \(scores.count) scores for \(boxes.count) boxes")
    let order = sortedByScore(scores, indices: Array(0..<boxes.count))
    return boxes.coords.withUnsafeBufferPointer { greedySuppress($0.baseAddress!, order: order, bound: suppressionBound(iouThreshold)) }
}

/// NMS within each class (`classes[i]` of box i); boxes of different classes never suppress each
/// other. Kept indices by descending score: torchvision's `ops.batched_nms` (see the notes above
/// for its two paths, both reproduced).
public func batchedNMS(_ boxes: XYXYBoxes, scores: [Float], classes: [Int], iouThreshold: Double) -> [Int] {
    let n = boxes.count
    precondition(scores.count == n && classes.count == n, "batchedNMS: \(n) boxes, \(scores.count) scores, \(classes.count) classes")
    if n == 0 { return [] }
    if n <= 1000 { return batchedNMSByOffsets(boxes, scores: scores, classes: classes, iouThreshold: iouThreshold) }

    // Per class, in score order (one global sort, then a stable bucketing keeps each bucket sorted).
    let order = sortedByScore(scores, indices: Array(0..<n))
    var bucketOf: [Int: Int] = [:]
    var buckets: [[Int32]] = []
    for i in order {
        let c = classes[Int(i)]
        if let b = bucketOf[c] { buckets[b].append(i) } else { bucketOf[c] = buckets.count; buckets.append([i]) }
    }
    var kept = [Bool](repeating: false, count: n)
    let bound = suppressionBound(iouThreshold)
    boxes.coords.withUnsafeBufferPointer { cb in
        kept.withUnsafeMutableBufferPointer { kb in
            let c = cb.baseAddress!, k = kb.baseAddress!
            // Each class writes only its own boxes' flags.
            parallelFor(buckets.count) { b in
                for i in greedySuppress(c, order: buckets[b], bound: bound) { k[i] = true }
            }
        }
    }
    // torchvision: keep_indices[scores[keep_indices].sort(descending=True)] over ascending indices.
    let survivors = (0..<n).filter { kept[$0] }
    return sortedByScore(scores, indices: survivors).map { Int($0) }
}

/// torchvision's `_batched_nms_coordinate_trick`, in its Float32 arithmetic.
func batchedNMSByOffsets(_ boxes: XYXYBoxes, scores: [Float], classes: [Int], iouThreshold: Double) -> [Int] {
    var maxCoordinate = boxes.coords[0]
    for v in boxes.coords where v > maxCoordinate { maxCoordinate = v }
    let step = maxCoordinate + 1
    var shifted = boxes.coords
    for i in 0..<boxes.count {
        let offset = Float(classes[i]) * step
        for k in 0..<4 { shifted[4 * i + k] += offset }
    }
    return nms(XYXYBoxes(coords: shifted), scores: scores, iouThreshold: iouThreshold)
}

/// The smallest Float above `threshold`: `iou >= bound` exactly when `Double(iou) > threshold`.
func suppressionBound(_ threshold: Double) -> Float {
    let f = Float(threshold)
    return Double(f) > threshold ? f : f.nextUp
}

/// `indices` ordered by descending score, equal scores by ascending index, NaN first (torch's
/// descending comparator treats NaN as largest); -0 and +0 tie. Sorted as packed UInt64 keys
/// (order key above, index below), so the sort needs no comparison closure.
func sortedByScore(_ scores: [Float], indices: [Int]) -> [Int32] {
    precondition(scores.count <= Int(Int32.max), "nms: too many boxes")
    var keys = [UInt64](repeating: 0, count: indices.count)
    scores.withUnsafeBufferPointer { s in
        for (k, i) in indices.enumerated() {
            let v = s[i]
            let descending: UInt32
            if v.isNaN { descending = 0 }
            else {
                let bits = (v == 0 ? Float(0) : v).bitPattern
                let ascending = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
                descending = ~ascending
            }
            keys[k] = UInt64(descending) << 32 | UInt64(UInt32(i))
        }
    }
    keys.sort()
    return keys.map { Int32(truncatingIfNeeded: $0 & 0xFFFF_FFFF) }
}

/// Greedy suppression over `order` (box indices into `coords`, already in visiting order). Returns
/// the kept indices in visiting order. The candidates live in sorted columns; each kept box marks the
/// boxes it suppresses in a byte mask in one vectorized pass over the live tail (marking an already
/// suppressed box again is harmless, so the pass needs no branch), and once a quarter of the tail is
/// dead the survivors are compacted, so later passes only see live boxes.
func greedySuppress(_ coords: UnsafePointer<Float>, order: [Int32], bound: Float) -> [Int] {
    let n = order.count
    if n == 0 { return [] }
    var keep: [Int] = []
    let x1 = UnsafeMutablePointer<Float>.allocate(capacity: 5 * n)
    let id = UnsafeMutablePointer<Int32>.allocate(capacity: n)
    let dead = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
    defer { x1.deallocate(); id.deallocate(); dead.deallocate() }
    let y1 = x1 + n, x2 = x1 + 2 * n, y2 = x1 + 3 * n, area = x1 + 4 * n
    dead.initialize(repeating: 0, count: n)
    for k in 0..<n {
        let i = Int(order[k])
        let bx1 = coords[4 * i], by1 = coords[4 * i + 1], bx2 = coords[4 * i + 2], by2 = coords[4 * i + 3]
        x1[k] = bx1; y1[k] = by1; x2[k] = bx2; y2[k] = by2
        area[k] = (bx2 - bx1) * (by2 - by1)
        id[k] = order[k]
    }
    var live = n
    var head = 0
    var newlyDead = 0
    while head < live {
        if dead[head] != 0 { head += 1; continue }
        keep.append(Int(id[head]))
        let ix1 = x1[head], iy1 = y1[head], ix2 = x2[head], iy2 = y2[head], iArea = area[head]
        var marked: Int32 = 0
        for j in (head + 1)..<live {
            let iw = larger(smaller(ix2, x2[j]) - larger(ix1, x1[j]), 0)
            let ih = larger(smaller(iy2, y2[j]) - larger(iy1, y1[j]), 0)
            let inter = iw * ih
            let iou = inter / (iArea + area[j] - inter)
            let hit: UInt8 = iou >= bound ? 1 : 0
            marked &+= Int32(hit & ~dead[j])
            dead[j] |= hit
        }
        head += 1
        newlyDead += Int(marked)
        if newlyDead * 4 > live - head {
            var w = head
            for j in head..<live where dead[j] == 0 {
                x1[w] = x1[j]; y1[w] = y1[j]; x2[w] = x2[j]; y2[w] = y2[j]; area[w] = area[j]; id[w] = id[j]; dead[w] = 0
                w += 1
            }
            live = w
            newlyDead = 0
        }
    }
    return keep
}
