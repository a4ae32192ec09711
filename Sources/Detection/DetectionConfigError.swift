/// A detector setting that cannot work (anchor sizes, matcher thresholds, post-processing limits):
/// names the setting by its field name, the bad value and the fix. The recipe layer prefixes the
/// recipe path (`model.anchors.` ...) when it reports it.
public struct DetectionConfigError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let message: String
    public init(key: String, _ message: String) { self.key = key; self.message = message }
    public var description: String { "detection setting '\(key)': \(message)" }
}
