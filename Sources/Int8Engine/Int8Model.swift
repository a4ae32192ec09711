import Kernels
import Autodiff
import NN

/// The int8 engine as a module: a task evaluates it through `forward` exactly as it evaluates the
/// fake-quant model (eval only; no gradients). With a `reference` (the fake-quant model it was compiled
/// from) every forward also runs the reference and compares (`comparison`).
/// A module that runs on the int8 engine (what `Int8Engine.module(for:)` returns).
public protocol Int8EngineModule: Module {
    var program: Int8Program { get }
    /// The comparison with the fake-quant model so far (empty unless built with `compare`).
    var comparison: Int8Comparison { get }
}

public final class Int8Model: Module, Int8EngineModule {
    public let program: Int8Program
    let reference: Module?
    public private(set) var comparison = Int8Comparison()

    public init(_ program: Int8Program, reference: Module? = nil) {
        self.program = program; self.reference = reference
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        guard let reference else { return program.run(x) }
        let (y, c) = Int8Comparison.measure(program, reference: reference, input: x)
        comparison.merge(c)
        return y
    }
}

/// The engine against the fake-quant model on the same inputs, two ways:
/// - `layerwise`: every op is fed the fake-quant model's own input codes, so each quantized activation
///   measures one op's arithmetic (integer accumulation and float epilogue against the fake model's
///   float convolution): the engine's agreement contract.
/// - `endToEnd`: the engine runs on its own codes, so a code that differs early (a float rounding at a
///   half-step boundary in the fake model) travels and grows through later layers.
/// `predictions`: samples whose top-1 class (argmax over the output's second axis) is the same.
public struct Int8Comparison: Sendable {
    public var layerwise = Int8Agreement()
    public var endToEnd = Int8Agreement()
    /// The engine against itself with the fake-quant op's two-rounding requantization instead of its
    /// folded one: two exact integer engines that differ only in float rounding, end to end. How far
    /// such differences travel in this model: the yardstick for `endToEnd`.
    public var twoRounding = Int8Agreement()
    public var samples = 0
    public var samePrediction = 0
    public var maxOutputDifference: Float = 0
    public init() {}

    public var predictionAgreement: Double { samples == 0 ? 1 : Double(samePrediction) / Double(samples) }

    mutating func merge(_ o: Int8Comparison) {
        layerwise.merge(o.layerwise); endToEnd.merge(o.endToEnd); twoRounding.merge(o.twoRounding)
        samples += o.samples; samePrediction += o.samePrediction
        maxOutputDifference = max(maxOutputDifference, o.maxOutputDifference)
    }

    /// Runs the fake-quant model once and the engine twice (layerwise, end to end) on `input`; returns
    /// the engine's end-to-end output.
    public static func measure(_ program: Int8Program, reference: Module, input: Tensor) -> (Tensor, Int8Comparison) {
        let (captured, fake) = CapturedCodes.run(reference, input: input)
        var c = Int8Comparison()
        var calls: [String: Int] = [:]
        _ = program.run(input, observe: { c.layerwise.compare($0, captured, calls: &calls) }, substitute: { t in
            guard let g = t.grid, let list = captured[g.path], let k = calls[g.path], k - 1 < list.count, list[k - 1].count == t.count else { return nil }
            let ref = list[k - 1]
            let r = Int8Tensor(n: t.n, h: t.h, w: t.w, c: t.c, grid: g)
            let inv = g.inverse, hw = t.h * t.w
            for b in 0..<t.n { for i in 0..<hw { for ch in 0..<t.c {
                r.codes[(b * hw + i) * t.c + ch] = g.code(ref[(b * t.c + ch) * hw + i], inverse: inv)
            }}}
            return r
        })
        var calls2: [String: Int] = [:]
        var own: [String: [[Float]]] = [:]
        let y = program.run(input, observe: { t in
            c.endToEnd.compare(t, captured, calls: &calls2)
            // The engine's own values in the fake model's layout (NCHW), for the two-rounding run.
            let v = t.values(), hw = t.h * t.w
            var nchw = [Float](repeating: 0, count: v.count)
            for b in 0..<t.n { for i in 0..<hw { for ch in 0..<t.c { nchw[(b * t.c + ch) * hw + i] = v[(b * hw + i) * t.c + ch] } } }
            own[t.grid!.path, default: []].append(nchw)
        })
        var calls3: [String: Int] = [:]
        program.setFoldedRequantization(false)
        _ = program.run(input, observe: { c.twoRounding.compare($0, own, calls: &calls3) })
        program.setFoldedRequantization(true)
        if y.shape == fake.shape {
            let ys = y.scalars, fs = fake.scalars
            c.maxOutputDifference = zip(ys, fs).map { abs($0 - $1) }.max() ?? 0
            if y.rank == 2 {
                let n = y.shape[0], k = y.shape[1]
                for b in 0..<n {
                    let a = (0..<k).max { ys[b * k + $0] < ys[b * k + $1] }!, f = (0..<k).max { fs[b * k + $0] < fs[b * k + $1] }!
                    c.samples += 1
                    if a == f { c.samePrediction += 1 }
                }
            }
        }
        return (y, c)
    }
}

/// How the engine's activation codes compare with the fake-quant model's, over every quantized
/// activation both compute (matched by quantizer path).
public struct Int8Agreement: Sendable {
    public var elements = 0
    public var equal = 0
    /// Largest code difference seen.
    public var maxDifference = 0
    /// Elements per code difference (1, 2, ...).
    public var perDifference: [Int: Int] = [:]
    /// Per quantizer path: elements compared and elements equal, and the order the engine computes them.
    public var perPath: [String: (elements: Int, equal: Int)] = [:]
    public var order: [String] = []
    /// Engine values with no captured fake-quant counterpart (a quantizer the fake model did not run).
    public var unmatched: [String] = []

    public init() {}
    public var fraction: Double { elements == 0 ? 1 : Double(equal) / Double(elements) }

    mutating func merge(_ o: Int8Agreement) {
        elements += o.elements; equal += o.equal; maxDifference = max(maxDifference, o.maxDifference)
        for (k, v) in o.perDifference { perDifference[k, default: 0] += v }
        for (k, v) in o.perPath { let c = perPath[k] ?? (0, 0); perPath[k] = (c.elements + v.elements, c.equal + v.equal) }
        for p in o.order where !order.contains(p) { order.append(p) }
        for p in o.unmatched where !unmatched.contains(p) { unmatched.append(p) }
    }

    /// Compares one coded engine value with the fake-quant model's value at the same quantizer (the
    /// same call of it: `calls` counts the engine's values per path).
    mutating func compare(_ t: Int8Tensor, _ captured: [String: [[Float]]], calls: inout [String: Int]) {
        guard let g = t.grid else { return }
        let k = calls[g.path, default: 0]
        calls[g.path] = k + 1
        guard let list = captured[g.path], k < list.count, list[k].count == t.count else {
            if !unmatched.contains(g.path) { unmatched.append(g.path) }
            return
        }
        let ref = list[k]
        let inv = g.inverse, hw = t.h * t.w
        var equalHere = 0
        for b in 0..<t.n { for i in 0..<hw { for c in 0..<t.c {
            let d = abs(Int(t.codes[(b * hw + i) * t.c + c]) - Int(g.code(ref[(b * t.c + c) * hw + i], inverse: inv)))
            if d == 0 { equalHere += 1 } else { perDifference[d, default: 0] += 1; maxDifference = max(maxDifference, d) }
        }}}
        elements += t.count; equal += equalHere
        let p = perPath[g.path] ?? (0, 0)
        perPath[g.path] = (p.elements + t.count, p.equal + equalHere)
        if !order.contains(g.path) { order.append(g.path) }
    }
}

/// The fake-quant model's quantized activations of one forward, by quantizer path (NCHW or [N, C]),
/// and its output.
enum CapturedCodes {
    final class Capture: Module {
        let inner: Module
        let sink: (String, [Float]) -> Void
        init(_ inner: Module, sink: @escaping (String, [Float]) -> Void) { self.inner = inner; self.sink = sink; super.init() }
        override func forward(_ x: Tensor) -> Tensor {
            let y = inner(x)
            sink(inner.path, y.scalars)
            return y
        }
    }

    /// Per quantizer path, its outputs in call order (a head's quantizers run once per pyramid level).
    static func run(_ model: Module, input: Tensor) -> ([String: [[Float]]], Tensor) {
        model.assignPaths()
        let wasTraining = model.isTraining
        model.eval()
        var out: [String: [[Float]]] = [:]
        let sink: (String, [Float]) -> Void = { out[$0, default: []].append($1) }
        var restoreInputs: [(QuantizableLayer, Module?)] = []
        var restoreAdds: [(AddQuantizable, Module?)] = []
        for (_, m) in model.namedModules() {
            if let l = m as? QuantizableLayer, let q = l.inputQuantizer {
                restoreInputs.append((l, q)); l.inputQuantizer = Capture(q, sink: sink)
            }
            if let a = m as? AddQuantizable, let q = a.addQuantizer {
                restoreAdds.append((a, q)); a.addQuantizer = Capture(q, sink: sink)
            }
        }
        let y = noGrad { model(input) }
        for (l, q) in restoreInputs { l.inputQuantizer = q }
        for (a, q) in restoreAdds { a.addQuantizer = q }
        model.train(wasTraining)
        return (out, y)
    }
}
