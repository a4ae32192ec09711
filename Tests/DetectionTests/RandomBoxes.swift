import Kernels
@testable import Detection

/// Seeded random boxes for tests: corners in `[0, span)`, sides in `[minSide, maxSide)`.
func randomBoxes(_ n: Int, rng: inout RNG, span: Float = 200, minSide: Float = 1, maxSide: Float = 60) -> XYXYBoxes {
    var u = [Float](repeating: 0, count: 4 * n)
    rng.fillUniform(&u, count: u.count)
    var c = [Float](repeating: 0, count: 4 * n)
    for i in 0..<n {
        let x = u[4 * i] * span, y = u[4 * i + 1] * span
        c[4 * i] = x; c[4 * i + 1] = y
        c[4 * i + 2] = x + minSide + u[4 * i + 2] * (maxSide - minSide)
        c[4 * i + 3] = y + minSide + u[4 * i + 3] * (maxSide - minSide)
    }
    return XYXYBoxes(coords: c)
}
