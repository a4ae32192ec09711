import Foundation

/// `qat quant report`: per quantizer of a checkpoint, its bits and scheme, the range of its scales and
/// zero points, and for weight quantizers the share of weights outside the representable range
/// (clipped). Activation quantizers need data to measure clipping; the report says so.
public struct QuantReport {
    public struct Row {
        public var path: String
        public var bits: String
        public var scheme: String
        public var mode: String
        public var scaleMin: Float, scaleMax: Float
        public var zeroPointMin: Float, zeroPointMax: Float
        /// Fraction of clipped values: for weight quantizers computed from the checkpoint's weights,
        /// for activation quantizers the share recorded at their last calibration batch.
        public var clipped: Double?
        public var clippedFromCalibration = false
        /// Why `clipped` is missing when it is not for the usual reason (an uncalibrated quantizer).
        public var note: String?
    }
    public var rows: [Row]

    public init(_ c: Checkpoint) {
        rows = c.quant.keys.sorted().map { path in
            let q = c.quant[path]!, a = c.quantAttributes[path] ?? [:]
            let s = q["scale"]?.values ?? [], z = q["zeroPoint"]?.values ?? []
            var row = Row(path: path, bits: a["bits"] ?? "?", scheme: a["scheme"] ?? "?", mode: a["mode"] ?? "?",
                          scaleMin: s.min() ?? .nan, scaleMax: s.max() ?? .nan, zeroPointMin: z.min() ?? .nan, zeroPointMax: z.max() ?? .nan)
            if path.hasSuffix(".weightQuantizer"), let w = c.params[String(path.dropLast(".weightQuantizer".count)) + ".weight"],
               let qmin = Float(a["qmin"] ?? ""), let qmax = Float(a["qmax"] ?? ""), !s.isEmpty, s.count == z.count {
                let perChannel = s.count > 1
                // Per-channel scales run along axis 0; a file whose scales do not match the weight (or an
                // empty or 0-d weight) has no clipped share to report, and must not divide by zero.
                guard !w.values.isEmpty, perChannel ? w.shape.first == s.count : true else {
                    row.note = w.values.isEmpty ? "n/a (empty weight)" : "n/a (\(s.count) scales for weight \(w.shape))"
                    return row
                }
                let inner = perChannel ? w.values.count / s.count : w.values.count
                var clipped = 0
                for (i, v) in w.values.enumerated() {
                    let c = perChannel ? i / inner : 0
                    let zr = min(max(z[c].rounded(.toNearestOrEven), qmin), qmax)
                    let lo = (qmin - zr) * s[c], hi = (qmax - zr) * s[c]
                    // Values beyond the grid by more than half a step are clipped (not just rounded).
                    if v < lo - s[c] / 2 || v > hi + s[c] / 2 { clipped += 1 }
                }
                row.clipped = Double(clipped) / Double(w.values.count)
            } else if let cf = q["clippedFraction"]?.values.first, (q["initialized"]?.values.first ?? 0) != 0 {
                row.clipped = Double(cf); row.clippedFromCalibration = true
            }
            return row
        }
    }

    public func format() -> String {
        guard !rows.isEmpty else { return "no quantizers in this checkpoint (an FP32 run?)" }
        let pw = max(9, rows.map(\.path.count).max()!)
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
        var out = [pad("quantizer", pw) + "  bits  " + pad("scheme", 44) + pad("scale min..max", 26) + pad("zero point", 16) + "clipped"]
        for r in rows {
            out.append(pad(r.path, pw) + "  " + pad(r.bits, 4) + "  " + pad(r.scheme, 44)
                       + pad(String(format: "%.3g..%.3g", r.scaleMin, r.scaleMax), 26)
                       + pad(String(format: "%.1f..%.1f", r.zeroPointMin, r.zeroPointMax), 16)
                       + (r.clipped.map { String(format: "%.3f%%", $0 * 100) + (r.clippedFromCalibration ? " (calibration)" : "") } ?? r.note ?? "n/a (not calibrated)"))
        }
        return out.joined(separator: "\n")
    }
}
