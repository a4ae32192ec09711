/// A user-facing geometry error: thrown by the checked constructors so layers built from recipes can
/// report bad configurations instead of crashing.
public struct ShapeError: Error, CustomStringConvertible, Equatable {
    public let op: String
    public let message: String
    public init(op: String, _ message: String) { self.op = op; self.message = message }
    public var description: String { "\(op): \(message)" }
}

/// Shape and hyper-parameters of one 2-D convolution over NCHW input and OIHW (grouped: O x C/groups x KH x KW) weights.
public struct ConvGeometry: Equatable, Sendable, CustomStringConvertible {
    public let batch: Int, inChannels: Int, height: Int, width: Int
    public let outChannels: Int, kernelH: Int, kernelW: Int
    public let strideH: Int, strideW: Int, padH: Int, padW: Int, dilationH: Int, dilationW: Int
    public let groups: Int
    public let outHeight: Int, outWidth: Int

    /// Validates every constraint PyTorch's conv2d checks and throws a `ShapeError` naming the bad value.
    public init(input: [Int], weight: [Int], stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                dilation: (Int, Int) = (1, 1), groups: Int = 1) throws {
        let op = "conv2d"
        guard input.count == 4 else { throw ShapeError(op: op, "input must be 4-D NCHW, got shape \(input)") }
        guard weight.count == 4 else { throw ShapeError(op: op, "weight must be 4-D OIHW, got shape \(weight)") }
        guard groups >= 1 else { throw ShapeError(op: op, "groups must be >= 1, got \(groups)") }
        guard stride.0 >= 1, stride.1 >= 1 else { throw ShapeError(op: op, "stride must be >= 1, got \(stride)") }
        guard dilation.0 >= 1, dilation.1 >= 1 else { throw ShapeError(op: op, "dilation must be >= 1, got \(dilation)") }
        guard padding.0 >= 0, padding.1 >= 0 else { throw ShapeError(op: op, "padding must be >= 0, got \(padding)") }
        guard input.allSatisfy({ $0 >= 1 }), weight.allSatisfy({ $0 >= 1 }) else {
            throw ShapeError(op: op, "empty dimension in input \(input) or weight \(weight)")
        }
        guard input[1] % groups == 0, weight[0] % groups == 0 else {
            throw ShapeError(op: op, "in channels \(input[1]) and out channels \(weight[0]) must both be divisible by groups \(groups)")
        }
        guard weight[1] * groups == input[1] else {
            throw ShapeError(op: op, "weight \(weight) expects \(weight[1] * groups) input channels with groups \(groups), input \(input) has \(input[1])")
        }
        let oh = (input[2] + 2 * padding.0 - dilation.0 * (weight[2] - 1) - 1) / stride.0 + 1
        let ow = (input[3] + 2 * padding.1 - dilation.1 * (weight[3] - 1) - 1) / stride.1 + 1
        guard input[2] + 2 * padding.0 >= dilation.0 * (weight[2] - 1) + 1,
              input[3] + 2 * padding.1 >= dilation.1 * (weight[3] - 1) + 1, oh >= 1, ow >= 1 else {
            throw ShapeError(op: op, "kernel \(weight[2])x\(weight[3]) (dilation \(dilation)) is larger than padded input \(input[2] + 2 * padding.0)x\(input[3] + 2 * padding.1)")
        }
        batch = input[0]; inChannels = input[1]; height = input[2]; width = input[3]
        outChannels = weight[0]; kernelH = weight[2]; kernelW = weight[3]
        strideH = stride.0; strideW = stride.1; padH = padding.0; padW = padding.1
        dilationH = dilation.0; dilationW = dilation.1
        self.groups = groups
        outHeight = oh; outWidth = ow
    }

    public var inputShape: [Int] { [batch, inChannels, height, width] }
    public var weightShape: [Int] { [outChannels, inChannels / groups, kernelH, kernelW] }
    public var outputShape: [Int] { [batch, outChannels, outHeight, outWidth] }
    /// Multiply-accumulates of the forward pass.
    public var macs: Int { batch * outChannels * outHeight * outWidth * (inChannels / groups) * kernelH * kernelW }
    public var isDepthwise: Bool { groups == inChannels && outChannels == inChannels && groups > 1 }
    public var isPointwise: Bool {
        kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padH == 0 && padW == 0
    }
    public var description: String {
        "conv2d(input \(inputShape), weight \(weightShape), stride (\(strideH),\(strideW)), padding (\(padH),\(padW)), dilation (\(dilationH),\(dilationW)), groups \(groups))"
    }
}
