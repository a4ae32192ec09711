import Kernels
import Autodiff

/// Per-layer table of a model: path, kind, parameter shapes and counts, and multiply-accumulates for
/// one image of the given size (counted during a real forward pass in eval mode).
public struct ModelSummary {
    public struct Row { public var path: String; public var kind: String; public var shapes: [[Int]]; public var params: Int; public var macs: Int }
    public var rows: [Row]
    public var totalParams: Int
    public var totalMACs: Int
    public var outputShapes: [[Int]]

    public init(_ model: Module, inputShape: [Int]) {
        model.assignPaths()
        let wasTraining = model.isTraining
        model.eval()
        let counter = MACCounter()
        let x = Tensor.zeros(inputShape)
        let out: [Tensor] = MACCounter.$current.withValue(counter) { noGrad { [model(x)] } }
        model.train(wasTraining)
        var macsByPath: [String: Int] = [:]
        for e in counter.entries { macsByPath[e.path, default: 0] += e.macs }
        rows = model.namedModules().compactMap { p, m in
            let ps = m.localParameters()
            guard !ps.isEmpty else { return nil }
            return Row(path: p, kind: String(describing: type(of: m)), shapes: ps.map(\.1.shape),
                       params: ps.reduce(0) { $0 + $1.1.count }, macs: macsByPath[p] ?? 0)
        }
        totalParams = model.parameterCount
        totalMACs = counter.total
        outputShapes = out.map(\.shape)
    }

    public func format() -> String {
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            s.count >= w ? s : (left ? s + String(repeating: " ", count: w - s.count) : String(repeating: " ", count: w - s.count) + s)
        }
        let pw = max(8, rows.map(\.path.count).max() ?? 8)
        var lines = [pad("path", pw, left: true) + "  " + pad("kind", 12, left: true) + pad("shape", 22) + pad("params", 12) + pad("MACs", 14)]
        for r in rows {
            let shape = r.shapes.map { "\($0)" }.joined(separator: " ")
            lines.append(pad(r.path, pw, left: true) + "  " + pad(r.kind, 12, left: true) + pad(shape, 22) + pad("\(r.params)", 12) + pad("\(r.macs)", 14))
        }
        lines.append("total: \(totalParams) parameters, \(totalMACs) MACs per image (\(String(format: "%.3f", Double(totalMACs) / 1e9)) GMACs), output \(outputShapes.map { "\($0)" }.joined(separator: " "))")
        return lines.joined(separator: "\n")
    }
}
