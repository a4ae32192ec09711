import Foundation
import Kernels
import Autodiff
import NN

/// Post-training transforms (shared/docs/ALGORITHMS.md section 4): BatchNorm folding into conv weights
/// for deployment, cross-layer equalization (Nagel et al. 2019) and empirical bias correction.
public enum PTQ {
    /// Folds every Conv2d + BatchNorm2d pair that a module reports (`ConvBatchNormPairs`: adjacent in
    /// Sequentials, named in ResNet blocks) into the conv: w' = w * gamma / sqrt(var + eps),
    /// b' = (b - mean) * gamma / sqrt(var + eps) + beta, using the running statistics. The BN then
    /// passes values through. Returns the folded BN paths. Eval-mode outputs are unchanged.
    @discardableResult
    public static func foldBatchNorms(_ model: Module) -> [String] {
        var folded: [String] = []
        for (conv, bn, p) in foldablePairs(model.namedModules())
        where !bn.isFolded && conv.foldedBN == nil && bn.weight.count == conv.outChannels {
            noGrad {
                let c = conv.outChannels, per = conv.weight.count / c
                let bias = conv.bias ?? Tensor.zeros([c])
                for o in 0..<c {
                    let k = bn.weight.pointer[o] / (bn.runningVar.pointer[o] + bn.eps).squareRoot()
                    for j in 0..<per { conv.weight.pointer[o * per + j] *= k }
                    bias.pointer[o] = (bias.pointer[o] - bn.runningMean.pointer[o]) * k + bn.bias.pointer[o]
                }
                if conv.bias == nil { conv.bias = bias }
            }
            bn.isFolded = true
            folded.append(p)
        }
        return folded
    }

    /// Cross-layer equalization for every conv -> [folded BN] -> ReLU (or ReLU6) -> conv chain that a
    /// module reports (`EqualizableChains`: inside Sequentials, across nested ones) where the second
    /// conv is not depthwise: per channel i, s_i = sqrt(r1_i * r2_i) / r2_i with r1_i the range (max |w|) of the first conv's output channel i and r2_i that of the second
    /// conv's input channel i; the first conv's channel (weights and bias) is divided by s_i and the
    /// second's input channel multiplied by it. ReLU is positively homogeneous, so outputs are unchanged;
    /// ReLU6 is not, so with `relu6ToRelu` (as Nagel et al. did for MobileNetV2) such ReLU6 become ReLU
    /// first, otherwise those chains are skipped. BatchNorms must be folded first (`foldBatchNorms`).
    /// Returns the equalized (first conv, second conv) paths.
    @discardableResult
    public static func equalizeCrossLayer(_ model: Module, relu6ToRelu: Bool = false) -> [(String, String)] {
        model.assignPaths()
        var pairs: [(String, String)] = []
        var done = Set<[ObjectIdentifier]>()
        for (_, m) in model.namedModules() {
            guard let owner = m as? EqualizableChains else { continue }
            for chain in owner.equalizableChains {
                let (c1, c2) = (chain.first, chain.second)
                let relu6 = chain.activation == .relu6 && relu6ToRelu && chain.replaceActivationWithReLU != nil
                guard chain.activation == .relu || relu6, c2.groups == 1, c2.inChannels == c1.outChannels,
                      chain.batchNorms.allSatisfy(\.isFolded),
                      done.insert([ObjectIdentifier(c1), ObjectIdentifier(c2)]).inserted else { continue }
                if relu6 { chain.replaceActivationWithReLU?() }
                equalize(c1, c2)
                pairs.append((c1.path, c2.path))
            }
        }
        model.assignPaths()
        return pairs
    }

    static func equalize(_ c1: Conv2d, _ c2: Conv2d) {
        let ch = c1.outChannels
        let per1 = c1.weight.count / ch
        let kk2 = c2.kernelSize.0 * c2.kernelSize.1, in2 = c2.inChannels
        noGrad {
            let w1 = c1.weight.pointer, w2 = c2.weight.pointer
            for i in 0..<ch {
                var r1: Float = 0, r2: Float = 0
                for j in 0..<per1 { r1 = max(r1, abs(w1[i * per1 + j])) }
                for o in 0..<c2.outChannels { for k in 0..<kk2 { r2 = max(r2, abs(w2[(o * in2 + i) * kk2 + k])) } }
                guard r1 > 0, r2 > 0 else { continue }
                let s = (r1 * r2).squareRoot() / r2
                for j in 0..<per1 { w1[i * per1 + j] /= s }
                if let b = c1.bias { b.pointer[i] /= s }
                for o in 0..<c2.outChannels { for k in 0..<kk2 { w2[(o * in2 + i) * kk2 + k] *= s } }
            }
        }
    }
}

extension QATHandle {
    /// Empirical bias correction (Nagel et al. 2019): for every `BiasCorrectable` layer (conv) with a
    /// weight quantizer, the expected output error of quantizing the weights, (W_q - W) applied to the
    /// mean input of each channel over `batches`, is subtracted from the layer's bias (created if
    /// absent). Padding is ignored (the interior approximation of the paper). Returns the corrected
    /// layer paths.
    @discardableResult
    public func correctBias(_ model: Module, batches: [Tensor], forward: (Tensor) -> Tensor) -> [String] {
        let convs = model.namedModules().compactMap { p, m -> (String, BiasCorrectable)? in
            guard let c = m as? BiasCorrectable, c.weightQuantizer is FakeQuantize, c.acceptsBiasCorrection else { return nil }
            return (p, c)
        }
        // Mean input per channel, gathered by a recording pass with quantization off (float inputs).
        var sums = [ObjectIdentifier: ([Double], Int)]()
        let recorders = convs.map { (_, c) -> (BiasCorrectable, Module?) in
            let r = InputMeanRecorder { x in
                let n = x.shape[0], ch = x.shape[1], hw = x.count / (n * ch)
                var (acc, cnt) = sums[ObjectIdentifier(c)] ?? ([Double](repeating: 0, count: ch), 0)
                for b in 0..<n { for k in 0..<ch { acc[k] += Double(Reduce.sum(x.pointer + (b * ch + k) * hw, count: hw)) } }
                cnt += n * hw
                sums[ObjectIdentifier(c)] = (acc, cnt)
            }
            let old = c.inputQuantizer
            c.inputQuantizer = r
            return (c, old)
        }
        let wasTraining = model.isTraining
        model.eval()
        setEnabled(false)
        noGrad { for b in batches { _ = forward(b) } }
        setEnabled(true)
        for (c, old) in recorders { c.inputQuantizer = old }
        var corrected: [String] = []
        noGrad {
            for (p, c) in convs {
                guard let (acc, cnt) = sums[ObjectIdentifier(c)], cnt > 0, let wq = c.weightQuantizer else { continue }
                let mean = acc.map { Float($0 / Double(cnt)) }
                let q = wq(c.weight)
                let (oc, ic) = c.quantizationChannels
                let cg = ic / c.weightGroups, kk = c.weight.count / (oc * cg)
                let bias = c.bias ?? Tensor.zeros([oc])
                for o in 0..<oc {
                    let g = o / (oc / c.weightGroups)
                    var e: Double = 0
                    for ci in 0..<cg {
                        let m = Double(mean[g * cg + ci])
                        for k in 0..<kk {
                            let idx = (o * cg + ci) * kk + k
                            e += Double(q.pointer[idx] - c.weight.pointer[idx]) * m
                        }
                    }
                    bias.pointer[o] -= Float(e)
                }
                if c.bias == nil { c.bias = bias }
                corrected.append(p)
            }
        }
        model.train(wasTraining)
        return corrected
    }
}

/// Stands in for a conv's input quantizer during bias correction and records the inputs it sees.
final class InputMeanRecorder: Module {
    let record: (Tensor) -> Void
    init(_ record: @escaping (Tensor) -> Void) { self.record = record; super.init() }
    override func forward(_ x: Tensor) -> Tensor { record(x); return x }
}
