import Foundation
import Detection
import Kernels
import Autodiff
import NN

/// One value of the integer graph at run time: NHWC, either stored 8-bit codes on `grid` or floats
/// (the values the fake-quant model keeps in float between layers: a projection conv's output before
/// the residual add, pooled features, logits).
public final class Int8Tensor {
    public let n: Int, h: Int, w: Int, c: Int
    public let grid: Int8Grid?
    public var codes: [UInt8]
    public var floats: [Float]
    /// The program's input as given (NCHW floats, not copied), read by the quantize op that starts the graph.
    var nchwInput: Tensor?

    init(n: Int, h: Int, w: Int, c: Int, grid: Int8Grid?, allocate: Bool = true) {
        self.n = n; self.h = h; self.w = w; self.c = c; self.grid = grid
        let count = allocate ? n * h * w * c : 0
        if grid != nil {
            codes = [UInt8](unsafeUninitializedCapacity: count) { _, k in k = count }
            floats = []
        } else {
            floats = [Float](unsafeUninitializedCapacity: count) { _, k in k = count }
            codes = []
        }
    }

    public var count: Int { n * h * w * c }
    /// Storage size (0 for the uncopied program input).
    var stored: Int { grid == nil ? floats.count : codes.count }

    /// The values as the fake-quant model sees them (codes dequantized), NHWC.
    public func values() -> [Float] {
        guard let g = grid else { return floats }
        return codes.map { g.value($0) }
    }
}

/// An operation of the integer graph: reads its input values, returns its output value.
protocol Int8Op: AnyObject {
    var name: String { get }
    var inputs: [Int] { get }
    var output: Int { get }
    /// False for ops that move codes without computing them (upsampling): their outputs are not a
    /// quantizer's output of their own, so comparisons skip them.
    var computesCodes: Bool { get }
    func run(_ values: [Int8Tensor?]) -> Int8Tensor
}

extension Int8Op {
    var computesCodes: Bool { true }
}

/// A lowered model: integer convolutions and linears (int8 x int8 -> int32, exact), float epilogues
/// that requantize to the next quantizer's grid. Built by `Int8Engine.compile`.
public final class Int8Program {
    let ops: [Int8Op]
    let input: Int
    let output: Int
    let valueCount: Int
    /// The output is [N, C] (after global pooling) rather than a feature map.
    let outputIsVector: Bool
    /// The output is [N, rows, C] (a detector's dense outputs), stored as (n, 1, rows, C).
    let outputIsRows: Bool
    let lastUse: [Int]
    let inputReadOnlyByQuantize: Bool
    public let inputChannels: Int

    init(ops: [Int8Op], input: Int, output: Int, valueCount: Int, outputIsVector: Bool, outputIsRows: Bool, inputChannels: Int) {
        self.ops = ops; self.input = input; self.output = output; self.valueCount = valueCount
        self.outputIsVector = outputIsVector; self.outputIsRows = outputIsRows; self.inputChannels = inputChannels
        var last = [Int](repeating: -1, count: valueCount)
        for (i, op) in ops.enumerated() { for v in op.inputs { last[v] = i } }
        last[output] = ops.count
        lastUse = last
        inputReadOnlyByQuantize = ops.allSatisfy { !$0.inputs.contains(input) || $0 is Int8Quantize } && output != input
    }

    /// One rounding per requantization (default, faster) or the fake-quant op's two (multiply-add,
    /// then times 1 / scale). Both are exact integer engines that differ only in float rounding.
    public func setFoldedRequantization(_ on: Bool) {
        for op in ops { if let e = op as? Int8EpilogueOp { e.foldsRequantization = on } }
    }

    public var operationNames: [String] { ops.map { $0.name } }

    /// Runs the graph on a float NCHW batch; `observe` sees every coded value (its grid names the
    /// quantizer), and `substitute` may replace it before later ops read it (layerwise comparison).
    /// Returns [N, C] logits or an NCHW feature map, as the model's forward does.
    public func run(_ x: Tensor, observe: ((Int8Tensor) -> Void)? = nil, substitute: ((Int8Tensor) -> Int8Tensor?)? = nil,
                    timing: ((String, Double) -> Void)? = nil) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == inputChannels, "int8 engine: input \(x.shape) is not [N, \(inputChannels), H, W]")
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var values = [Int8Tensor?](repeating: nil, count: valueCount)
        let t = Int8Tensor(n: n, h: h, w: w, c: c, grid: nil, allocate: !inputReadOnlyByQuantize)
        if inputReadOnlyByQuantize {
            // The quantize op reads NCHW and writes NHWC codes in one pass.
            t.nchwInput = x
        } else {
            t.floats.withUnsafeMutableBufferPointer { d in
                let s = x.pointer
                for b in 0..<n { for ch in 0..<c { for i in 0..<(h * w) { d[(b * h * w + i) * c + ch] = s[(b * c + ch) * h * w + i] } } }
            }
        }
        values[input] = t
        for (i, op) in ops.enumerated() {
            let t0 = timing == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            var y = op.run(values)
            if let timing { timing(op.name, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6) }
            if y.grid != nil && op.computesCodes {
                observe?(y)
                if let s = substitute?(y) { y = s }
            }
            values[op.output] = y
            for v in op.inputs where lastUse[v] == i { values[v] = nil }
        }
        let y = values[output]!
        let v = y.values()
        if outputIsVector { return Tensor(shape: [y.n, y.c * y.h * y.w], scalars: v) }
        if outputIsRows { return Tensor(shape: [y.n, y.h * y.w, y.c], scalars: v) }
        let out = Tensor.zeros([y.n, y.c, y.h, y.w])
        let hw = y.h * y.w, oc = y.c
        v.withUnsafeBufferPointer { vp in
            let src = vp.baseAddress!, dst = out.pointer
            parallelChunks(y.n * oc, grain: 1) { r in
                for bc in r {
                    let b = bc / oc, ch = bc % oc
                    for i in 0..<hw { dst[bc * hw + i] = src[(b * hw + i) * oc + ch] }
                }
            }
        }
        return out
    }
}

/// Builds an `Int8Program`: modules append operations through `Int8Lowerable`. Values are ids; a
/// value is codes (with its grid) or float. The builder fuses what deployment fuses: a BatchNorm and
/// an activation into the conv before them, and a quantizer into the epilogue of the op that produced
/// its input, unless that value has another consumer (`pin`).
public struct Int8Builder {
    var ops: [Int8Op] = []
    var grids: [Int8Grid?] = []
    var pinned: Set<Int> = []
    var producer: [Int: Int8EpilogueOp] = [:]
    var vector: Set<Int> = []
    /// Values holding a detector's dense rows.
    var rows: Set<Int> = []
    /// Channels of the graph's input (value 0), recorded by the first layer that reads it.
    var inputChannels: Int?

    init() {}

    mutating func newValue(_ grid: Int8Grid?) -> Int { grids.append(grid); return grids.count - 1 }
    func grid(_ v: Int) -> Int8Grid? { grids[v] }

    /// Marks a value that more than one op reads: its producer's epilogue stays as it is.
    public mutating func pin(_ v: Int) { pinned.insert(v) }

    mutating func append(_ op: Int8Op) { ops.append(op) }

    mutating func appendEpilogueOp(_ op: Int8EpilogueOp) {
        ops.append(op)
        producer[op.output] = op
    }

    /// The op whose epilogue still decides value `v` (float, unpinned).
    func openEpilogue(_ v: Int) -> Int8EpilogueOp? {
        guard grids[v] == nil, !pinned.contains(v), let op = producer[v], op.outGrid == nil else { return nil }
        return op
    }

    /// `v` on `grid`: itself when it already has those codes, the producer's epilogue quantizing when
    /// it can, else a quantize op.
    mutating func quantized(_ v: Int, to grid: Int8Grid) -> Int {
        if let g = grids[v], g.sameCodes(as: grid) { return v }
        if let op = openEpilogue(v) {
            op.outGrid = grid
            grids[v] = grid
            return v
        }
        let out = newValue(grid)
        ops.append(Int8Quantize(name: grid.path, input: v, output: out, grid: grid))
        if vector.contains(v) { vector.insert(out) }
        return out
    }
}

/// A module the int8 engine can run: appends its eval-mode forward to the builder and returns its output
/// value. A new block lowers by conforming; the engine never casts to concrete types.
public protocol Int8Lowerable {
    func lowerInt8(_ x: Int, _ b: inout Int8Builder) throws -> Int
}

/// Lowers any module: an error naming its path and type when it does not conform.
public func lowerChild(_ m: Module, _ x: Int, _ b: inout Int8Builder) throws -> Int {
    guard let l = m as? Int8Lowerable else {
        throw Int8Error(path: m.path, "\(type(of: m)) has no int8 lowering (conform it to Int8Lowerable); supported: Conv2d (dense and depthwise), Linear, BatchNorm2d, GroupNorm, relu/relu6/hardswish/hardsigmoid, Dropout, Identity, Sequential, squeeze-excitation, MobileNetV1/V2/V3 and ResNet classifiers and backbones, FPN, RetinaNet")
    }
    return try l.lowerInt8(x, &b)
}

/// Compiles a quantized model (QAT or PTQ checkpoint, eval mode) into an integer program.
public enum Int8Engine {
    /// The engine as a module the tasks evaluate: `Int8Detector` for a detector whose detections follow
    /// from its dense outputs, else `Int8Model`. `compare`: also run `model` (the fake-quant model) and
    /// compare codes on every forward.
    public static func module(for model: Module, compare: Bool = false) throws -> any Int8EngineModule {
        let program = try compile(model)
        if let d = model as? any DenseDetector { return Int8Detector(program, base: d, compare: compare) }
        return Int8Model(program, reference: compare ? model : nil)
    }

    /// A detector on the engine (its dense part compiled from `model`).
    public static func detector(for model: any DenseDetector, compare: Bool = false) throws -> Int8Detector {
        Int8Detector(try compile(model), base: model, compare: compare)
    }

    /// The kernel path this CPU runs ("avx512-vnni" or "portable").
    public static var kernelPath: String { Int8Kernels.name(Int8Kernels.path) }

    public static func compile(_ model: Module) throws -> Int8Program {
        model.assignPaths()
        var b = Int8Builder()
        let x = b.newValue(nil)
        let y = try lowerChild(model, x, &b)
        guard let c = b.inputChannels else { throw Int8Error(path: model.path, "no layer reads the input; nothing to run") }
        return Int8Program(ops: b.ops, input: x, output: y, valueCount: b.grids.count, outputIsVector: b.vector.contains(y),
                           outputIsRows: b.rows.contains(y), inputChannels: c)
    }
}
