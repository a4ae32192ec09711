import Foundation
import Kernels
import Autodiff

// The decoupled detector's losses, one function per component switch of `DecoupledConfig`.
extension DecoupledRetinaNet {
    /// Foreground/background loss over every anchor (`objectness` `[N, A, 1]`), normalised like
    /// RetinaNet's classification loss (per image by max(1, its foreground count), mean over images),
    /// except GHM-C, which normalises by the valid anchors as mmdetection's does. `quality` is the IoU of
    /// each foreground anchor's predicted box with its ground truth (the QFL / VFL target).
    func objectnessLoss(_ objectness: Tensor, _ t: AnchorTargets, quality: [Float]) -> Tensor {
        let total = t.images * t.anchorsPerImage
        let logits = objectness.reshaped([total, 1])
        let weights = Tensor(shape: [total, 1], scalars: t.anchorWeights)
        var binary = [Float](repeating: 0, count: total)
        for r in t.rows { binary[r] = 1 }
        switch config.objectness {
        case .focal:
            let focal = sigmoidFocalLoss(logits, targets: Tensor(shape: [total, 1], scalars: binary),
                                         alpha: config.base.focalAlpha, gamma: config.base.focalGamma)
            return (focal * weights).sum()
        case .qfl:
            var labels = [Int](repeating: -1, count: total), q = [Float](repeating: 0, count: total)
            for (i, r) in t.rows.enumerated() { labels[r] = 0; q[r] = quality[i] }
            return (qualityFocalLoss(logits, labels: labels, quality: q, beta: config.qflBeta) * weights).sum()
        case .vfl:
            var soft = [Float](repeating: 0, count: total)
            for (i, r) in t.rows.enumerated() { soft[r] = quality[i] }
            let vfl = varifocalLoss(logits, targets: Tensor(shape: [total, 1], scalars: soft), alpha: config.vflAlpha, gamma: config.vflGamma)
            return (vfl * weights).sum()
        case .ohem:
            let targets = Tensor(shape: [total, 1], scalars: binary)
            let bce = Loss.bceWithLogits(logits, targets: targets, reduction: .none)
            var keep = [Float](repeating: 0, count: total)
            let values = bce.scalars
            // Per image, as SSD's hard negative mining: every positive and the hardest negatives.
            for i in 0..<t.images {
                let range = (i * t.anchorsPerImage)..<((i + 1) * t.anchorsPerImage)
                let labels = t.matches[i].map { $0 >= 0 ? 0 : $0 }
                let w = ohemWeights(losses: Array(values[range]), labels: labels, negativesPerPositive: Int(config.ohemRatio.rounded()))
                for (j, x) in w.enumerated() { keep[range.lowerBound + j] = x * t.anchorWeights[range.lowerBound + j] }
            }
            return (bce * Tensor(shape: [total, 1], scalars: keep)).sum()
        case .ghmc:
            let valid = Tensor(shape: [total, 1], scalars: t.anchorWeights.map { $0 > 0 ? 1 : 0 })
            return lossState.withGHMC { $0.loss(logits, targets: Tensor(shape: [total, 1], scalars: binary), labelWeights: valid) }
        }
    }

    /// The RoIs whose type label trains the module this step: all of them, or with `small_loss` all
    /// but the ground-truth boxes (with their predicted boxes) of largest mean cross-entropy, a share
    /// ramped linearly from 0 to `smallLossRate` over `noiseWarmupSteps` (co-teaching's schedule).
    func keptRoIs(_ logits: Tensor, _ rois: TypeRoIs, step: Int) -> [Int] {
        let all = Array(0..<rois.count)
        guard config.labelNoise == .smallLoss else { return all }
        let ramp = config.noiseWarmupSteps == 0 ? 1 : min(1, Float(step) / Float(config.noiseWarmupSteps))
        let owners = (rois.owner.max() ?? -1) + 1
        let drop = Int((Float(owners) * config.smallLossRate * ramp).rounded(.down))
        guard drop > 0 else { return all }
        let ce = noGrad { Loss.crossEntropy(logits.detached(), targets: rois.labels, reduction: .none) }.scalars
        var sum = [Float](repeating: 0, count: owners), count = sum
        for (i, o) in rois.owner.enumerated() { sum[o] += ce[i]; count[o] += 1 }
        let mean = (0..<owners).map { count[$0] > 0 ? sum[$0] / count[$0] : 0 }
        let dropped = Set((0..<owners).sorted { mean[$0] != mean[$1] ? mean[$0] > mean[$1] : $0 < $1 }.prefix(drop))
        return all.filter { !dropped.contains(rois.owner[$0]) }
    }

    /// The type loss of the kept RoIs (mean over them).
    func typeLoss(_ logits: Tensor, labels: [Int], step: Int) -> Tensor {
        guard !labels.isEmpty else { return logits.sum() * 0 }
        switch config.typeLoss {
        case .ce:
            guard config.labelNoise == .bootstrap else { return Loss.crossEntropy(logits, targets: labels) }
            // Soft bootstrapping (Reed et al. 2015): the target mixes the given label with the module's
            // own (constant) prediction, so a confident disagreement pulls less towards a wrong label.
            let k = config.numTypes, m = labels.count
            let own = noGrad { logits.detached().softmax(axis: 1) }.scalars
            let b = config.bootstrapBeta
            var target = own.map { (1 - b) * $0 }
            for (i, y) in labels.enumerated() { target[i * k + y] += b }
            return (logits.logSoftmax(axis: 1) * Tensor(shape: [m, k], scalars: target)).sum().neg() / Float(m)
        case .classWeighted:
            guard let w = typeClassWeights else { preconditionFailure("DecoupledRetinaNet: class_weighted needs the training type counts (DecoupledConfig.typeCounts)") }
            return classWeightedCrossEntropy(logits, labels: labels, classWeights: w)
        case .eql:
            var rng = RNG(seed: 0xE015_0000 ^ UInt64(step))
            return softmaxEqualizationLoss(logits, labels: labels, frequencies: typeFrequencies, lambda: config.eqlLambda,
                                           gamma: config.eqlGamma, rng: &rng)
        case .eqlv2:
            return lossState.withEQLv2 { $0.loss(logits, labels: labels) }
        case .seesaw:
            return lossState.withSeesaw { $0.loss(logits, labels: labels) }
        }
    }

    /// Each type's share of the training boxes.
    var typeFrequencies: [Float] {
        let total = config.typeCounts.reduce(0, +)
        precondition(total > 0, "DecoupledRetinaNet: eql needs the training type counts (DecoupledConfig.typeCounts)")
        return config.typeCounts.map { Float($0) / Float(total) }
    }

    /// Type probabilities from the module's logits `[R, K]`: sigmoid when the types were trained as
    /// independent binary classifiers (EQLv2), softmax otherwise.
    func typeProbabilities(logits: Tensor) -> Tensor {
        config.typeLoss == .eqlv2 ? logits.sigmoid() : logits.softmax(axis: 1)
    }

    /// Support-sample focusing: the hinge on type margins (kept RoIs) plus the hinge on the
    /// foreground margins of the non-ignored anchors.
    func supportLoss(typeLogits: Tensor?, labels: [Int], objectness: Tensor, anchorTargets t: AnchorTargets) -> Tensor {
        let total = t.images * t.anchorsPerImage
        var y = [Float](repeating: -1, count: total)
        for r in t.rows { y[r] = 1 }
        let valid = t.anchorWeights.map { $0 > 0 ? Float(1) : 0 }
        var loss = binaryMarginFocusingLoss(objectness.reshaped([total]), targets: y, margin: config.supportMargin, weights: valid).loss
        if let typeLogits, !labels.isEmpty, config.numTypes >= 2 {
            loss = loss + marginFocusingLoss(typeLogits, labels: labels, margin: config.supportMargin).loss
        }
        return loss
    }
}
