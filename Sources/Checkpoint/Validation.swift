import HDF5

/// What values a checkpoint may hold. A training run skips non-finite steps and quantizers clamp their
/// scales at eps, so NaN/inf anywhere, or a scale or zero point no quantizer can use, means a damaged
/// file or a diverged run that must not be resumed or deployed silently.
extension Checkpoint {
    /// Usable quantizer scales: 1/scale must be a finite normal float, and (q - zero point) * scale
    /// stays finite for every |q - zero point| <= 2^25.
    public static let scaleRange: ClosedRange<Float> = Float.leastNormalMagnitude...0x1p100
    /// Zero points beyond 2^24 are not integers in Float32; every grid of up to 16 bits lies far inside.
    public static let maxZeroPointMagnitude: Float = 0x1p24

    /// Throws, naming the entry, for the first non-finite value (params, buffers, optimizer and
    /// quantizer state) and for the first quantizer scale or zero point outside the ranges above.
    public func validate(file: String) throws {
        for k in params.keys.sorted() { try Checkpoint.checkFinite(params[k]!, at: "/params/\(k)", file: file) }
        for k in buffers.keys.sorted() { try Checkpoint.checkFinite(buffers[k]!, at: "/buffers/\(k)", file: file) }
        for k in optimizer.keys.sorted() {
            for s in optimizer[k]!.keys.sorted() { try Checkpoint.checkFinite(optimizer[k]![s]!, at: "/optimizer/\(k)/\(s)", file: file) }
        }
        for k in quant.keys.sorted() {
            for s in quant[k]!.keys.sorted() { try Checkpoint.checkQuantizer(quant[k]![s]!, at: "/quant/\(k)/\(s)", file: file) }
        }
    }

    static func checkFinite(_ e: Entry, at location: String, file: String) throws {
        guard let i = e.values.firstIndex(where: { !$0.isFinite }) else { return }
        throw CheckpointError(.nonFinite, file: file, "\(location) holds \(e.values[i]) at index \(i); parameters and state must be finite (a diverged run? use an earlier checkpoint)")
    }

    /// The rule for one quantizer tensor (`/quant/<path>/<name>`), shared by `load` and `apply`.
    static func checkQuantizer(_ e: Entry, at location: String, file: String) throws {
        try checkFinite(e, at: location, file: file)
        if location.hasSuffix("/scale"), let i = e.values.firstIndex(where: { !scaleRange.contains($0) }) {
            throw CheckpointError(.invalid, file: file, "quantizer scale \(location) holds \(e.values[i]) at index \(i); scales must be positive and within \(scaleRange.lowerBound)...\(scaleRange.upperBound) (a diverged run? use an earlier checkpoint)")
        }
        if location.hasSuffix("/zeroPoint"), let i = e.values.firstIndex(where: { abs($0) > maxZeroPointMagnitude }) {
            throw CheckpointError(.invalid, file: file, "quantizer zero point \(location) holds \(e.values[i]) at index \(i); zero points lie within +-\(maxZeroPointMagnitude)")
        }
    }
}
