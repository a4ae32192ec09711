import Kernels

/// Result of comparing analytic and finite-difference gradients.
public struct GradcheckResult: CustomStringConvertible {
    public var maxAbsError: Double = 0
    public var maxRelError: Double = 0
    public var worst: String = ""
    public var passed: Bool = true
    public var checked = 0
    public var description: String {
        "gradcheck \(passed ? "passed" : "FAILED"): \(checked) entries, max abs err \(maxAbsError), max rel err \(maxRelError) \(worst)"
    }
}

/// Checks the gradients of `f` at `inputs` against central finite differences.
/// The scalar L = sum(f(x) * r) (r a fixed random projection) is accumulated in Double, so each
/// numeric derivative (L(x+eps) - L(x-eps)) / 2eps sees only Float32 rounding of f itself. An entry
/// passes when |analytic - numeric| <= atol + rtol * |numeric|.
public func gradcheck(_ inputs: [Tensor], eps: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2,
                      seed: UInt64 = 7, _ f: ([Tensor]) -> Tensor) -> GradcheckResult {
    for x in inputs { x.grad = nil }
    let y0 = f(inputs)
    var rng = RNG(seed: seed)
    let r = Tensor.uniform(y0.shape, low: -1, high: 1, rng: &rng)
    func loss() -> Double {
        let y = noGrad { f(inputs) }
        var s: Double = 0
        for i in 0..<y.count { s += Double(y.pointer[i]) * Double(r.pointer[i]) }
        return s
    }
    y0.backward(r)
    var res = GradcheckResult()
    for (k, x) in inputs.enumerated() where x.requiresGrad {
        let analytic = x.grad?.scalars ?? [Float](repeating: 0, count: x.count)
        for i in 0..<x.count {
            let orig = x.pointer[i]
            x.pointer[i] = orig + eps
            let lp = loss()
            x.pointer[i] = orig - eps
            let lm = loss()
            x.pointer[i] = orig
            let numeric = (lp - lm) / (2 * Double(eps))
            let a = Double(analytic[i])
            let err = Swift.abs(a - numeric)
            res.checked += 1
            let rel = err / Swift.max(Swift.abs(numeric), 1e-8)
            if err > res.maxAbsError { res.maxAbsError = err; res.worst = "(input \(k), index \(i): analytic \(a), numeric \(numeric))" }
            if err > atol { res.maxRelError = Swift.max(res.maxRelError, rel) }
            if err > atol + rtol * Swift.abs(numeric) { res.passed = false }
        }
    }
    return res
}
