import Foundation
import Kernels
import Autodiff
import NN

/// Post-training transforms (shared/docs/ALGORITHMS.md section 4): BatchNorm folding into conv weights
/// for deployment, cross-layer equalization (Nagel et al. 2019) and empirical bias correction.
public enum PTQ {
    /// Folds every Conv2d + BatchNorm2d pair (inside Sequentials, and ResNet's named pairs) into the
    /// conv: w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta, using
    /// the running statistics. The BN then passes values through. Returns the folded BN paths.
    /// Eval-mode outputs are unchanged.
    @discardableResult
    public static func foldBatchNorms(_ model: Module) -> [String] {
        var folded: [String] = []
        for (conv, bn, p) in convBatchNormPairs(model.namedModules())
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

    /// Leaf modules of a Sequential in execution order (nested Sequentials flattened), with the
    /// Sequential and index that hold each, so activations can be replaced in place.
    static func flatten(_ s: Sequential) -> [(Module, Sequential, Int)] {
        var out: [(Module, Sequential, Int)] = []
        for (i, m) in s.layers.enumerated() {
            if let inner = m as? Sequential { out += flatten(inner) } else { out.append((m, s, i)) }
        }
        return out
    }

    /// Cross-layer equalization for every conv -> [folded BN] -> ReLU (or ReLU6) -> conv chain inside a
    /// Sequential where the second conv is not depthwise: per channel i, s_i = sqrt(r1_i * r2_i) / r2_i
    /// with r1_i the range (max |w|) of the first conv's output channel i and r2_i that of the second
    /// conv's input channel i; the first conv's channel (weights and bias) is divided by s_i and the
    /// second's input channel multiplied by it. ReLU is positively homogeneous, so outputs are unchanged;
    /// ReLU6 is not, so with `relu6ToRelu` (as Nagel et al. did for MobileNetV2) such ReLU6 become ReLU
    /// first, otherwise those chains are skipped. BatchNorms must be folded first (`foldBatchNorms`).
    /// Returns the equalized (first conv, second conv) paths.
    @discardableResult
    public static func equalizeCrossLayer(_ model: Module, relu6ToRelu: Bool = false) -> [(String, String)] {
        model.assignPaths()
        var pairs: [(String, String)] = []
        var seen = Set<ObjectIdentifier>()
        for (_, m) in model.namedModules() {
            guard let s = m as? Sequential, !seen.contains(ObjectIdentifier(s)) else { continue }
            let flat = flatten(s)
            for inner in flat { if let q = inner.0 as? Sequential { seen.insert(ObjectIdentifier(q)) } }
            var i = 0
            while i < flat.count {
                guard let c1 = flat[i].0 as? Conv2d else { i += 1; continue }
                var j = i + 1
                while j < flat.count, let bn = flat[j].0 as? BatchNorm2d, bn.isFolded { j += 1 }
                guard j < flat.count, let act = flat[j].0 as? Activation, act.kind == .relu || (act.kind == .relu6 && relu6ToRelu),
                      j + 1 < flat.count, let c2 = flat[j + 1].0 as? Conv2d,
                      c2.groups == 1, c2.inChannels == c1.outChannels,
                      !(0..<(j - i - 1)).contains(where: { !((flat[i + 1 + $0].0 as? BatchNorm2d)?.isFolded ?? false) }) else { i += 1; continue }
                if act.kind == .relu6 { flat[j].1.layers[flat[j].2] = Activation(.relu) }
                equalize(c1, c2)
                pairs.append((c1.path, c2.path))
                i = j + 1
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
    /// Empirical bias correction (Nagel et al. 2019): for every conv with a weight quantizer, the
    /// expected output error of quantizing the weights, (W_q - W) applied to the mean input of each
    /// channel over `batches`, is subtracted from the conv's bias (created if absent). Padding is
    /// ignored (the interior approximation of the paper). Returns the corrected conv paths.
    @discardableResult
    public func correctBias(_ model: Module, batches: [Tensor], forward: (Tensor) -> Tensor) -> [String] {
        let convs = model.namedModules().compactMap { p, m -> (String, Conv2d)? in
            guard let c = m as? Conv2d, c.weightQuantizer is FakeQuantize, c.foldedBN == nil else { return nil }
            return (p, c)
        }
        // Mean input per channel, gathered by a recording pass with quantization off (float inputs).
        var sums = [ObjectIdentifier: ([Double], Int)]()
        let recorders = convs.map { (_, c) -> (Conv2d, Module?) in
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
                let oc = c.outChannels, cg = c.inChannels / c.groups, kk = c.kernelSize.0 * c.kernelSize.1
                let bias = c.bias ?? Tensor.zeros([oc])
                for o in 0..<oc {
                    let g = o / (oc / c.groups)
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
