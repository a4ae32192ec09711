import Autodiff

// How quantization reaches layers and blocks without naming them (mlx-swift's `Quantizable` idea):
// `quantize(model, plan)`, BN folding and PTQ walk `namedModules()` and act on whatever conforms to
// these protocols, so a new block (an FPN merge, a detection head) is quantized by conforming here,
// with no code in Quant that knows its type.

/// A layer with a weight and an input that quantization wraps (Conv2d, Linear).
/// The weight quantizer quantizes the layer's `weight` parameter (`qat quant report` reads
/// `<layer path>.weight` to measure clipping).
public protocol QuantizableLayer: Module {
    var weightQuantizer: Module? { get set }
    var inputQuantizer: Module? { get set }
    /// Output channels (per-channel weight quantization axis 0) and input channels (activation axis 1).
    var quantizationChannels: (output: Int, input: Int) { get }
}

/// A block that adds two branches (residual add, FPN top-down merge): quantization requantizes the sum.
public protocol AddQuantizable: Module {
    var addQuantizer: Module? { get set }
    /// False when the block has no add (an inverted residual without a skip connection).
    var hasQuantizableAdd: Bool { get }
}

/// Modules that own Conv2d -> BatchNorm2d pairs directly (Sequential: adjacent pairs; ResNet blocks: named pairs).
public protocol ConvBatchNormPairs: Module {
    /// The pairs, with the BN's path relative to this module ("1", "bn1").
    var convBatchNormPairs: [(conv: Conv2d, bn: BatchNorm2d, bnPath: String)] { get }
}

/// conv -> BatchNorm* -> activation -> conv, the chain cross-layer equalization (Nagel et al. 2019)
/// rescales: channel i of `first`'s output is divided by s_i and `second`'s input channel i
/// multiplied by it, which leaves outputs unchanged when the BNs are folded and the activation is
/// positively homogeneous (relu; relu6 only once replaced by relu).
public struct EqualizableChain {
    public let first: Conv2d
    /// BatchNorms between `first` and the activation; equalization needs them folded into `first`.
    public let batchNorms: [BatchNorm2d]
    public let activation: Activation.Kind
    public let second: Conv2d
    /// Replaces the activation by relu where it is stored (nil when the block cannot).
    public let replaceActivationWithReLU: (() -> Void)?

    public init(first: Conv2d, batchNorms: [BatchNorm2d], activation: Activation.Kind, second: Conv2d,
                replaceActivationWithReLU: (() -> Void)?) {
        self.first = first; self.batchNorms = batchNorms; self.activation = activation; self.second = second
        self.replaceActivationWithReLU = replaceActivationWithReLU
    }
}

/// Modules whose layers form conv -> activation -> conv chains (Sequential, nested Sequentials
/// included). A chain may be reported by more than one module (a Sequential and one nested in it);
/// equalization applies each once.
public protocol EqualizableChains: Module {
    /// The chains in execution order, whatever their activation (equalization picks the ones it can use).
    var equalizableChains: [EqualizableChain] { get }
}

/// A QuantizableLayer whose expected weight-quantization error empirical bias correction (Nagel et
/// al. 2019) can move into its bias: `weight` is [output, input / weightGroups, spatial...] and the
/// layer's output is linear in it plus `bias` per output channel. Conv2d conforms (Linear does not:
/// the classifier's bias has never been corrected, and opting in would change PTQ results).
public protocol BiasCorrectable: QuantizableLayer {
    var weight: Tensor { get }
    var bias: Tensor? { get set }
    /// Groups of the weight (1 for dense layers; a grouped conv's `groups`).
    var weightGroups: Int { get }
    /// False while a bias cannot absorb the error (a conv folding a BN in QAT style divides its output
    /// by the BN scale before the bias).
    var acceptsBiasCorrection: Bool { get }
}
