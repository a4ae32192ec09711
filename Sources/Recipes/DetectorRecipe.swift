import Foundation

extension Recipe {
    /// The `detector` section of a detection recipe: a RetinaNet-style detector (Lin et al. 2017,
    /// torchvision's `retinanet_resnet50_fpn` defaults unless noted) on the recipe's backbone.
    public struct Detector: RecipeSection {
        public var fpn = FPN()
        public var head = Head()
        public var anchors = Anchors()
        public var matcher = Matcher()
        public var loss = Loss()
        public var test = Test()
        /// `retinanet`: one sigmoid per type at every anchor (the baseline); `decoupled`: the thesis'
        /// design, a class-agnostic foreground head plus a fine-grained type module on RoI features.
        public var design = "retinanet"
        public var objectness = Objectness()
        public var assigner = Assigner()
        public var fineGrained = FineGrained()
        public var typeLoss = TypeLoss()
        public var support = Support()
        public var labelNoise = LabelNoise()
        public init() {}
        public static var fields: [Field<Detector>] {
            [.section("fpn", \.fpn), .section("head", \.head), .section("anchors", \.anchors), .section("matcher", \.matcher),
             .section("loss", \.loss), .section("test", \.test), .choice("design", \.design, ["retinanet", "decoupled"]),
             .section("objectness", \.objectness), .section("assigner", \.assigner), .section("fine_grained", \.fineGrained),
             .section("type_loss", \.typeLoss), .section("support", \.support), .section("label_noise", \.labelNoise)]
        }
        public func check(_ r: Reader, _ context: RecipeContext) throws {
            // The thesis' components act on the decoupled design's heads; a baseline recipe that sets one
            // would silently train without it.
            if design == "retinanet" {
                let thesisOnly: [(String, String, Bool)] = [
                    ("objectness", "loss", objectness.loss != "focal"), ("assigner", "name", assigner.name != "iou"),
                    ("type_loss", "name", typeLoss.name != "ce"), ("support", "weight", support.weight != 0),
                    ("label_noise", "method", labelNoise.method != "none")]
                for (section, key, set) in thesisOnly where set {
                    let node = try r.sub(section).value(key)
                    throw RecipeError(origin: node?.origin ?? r.tree?.origin, key: r.full(section + "." + key),
                                      "acts on the decoupled design's heads; set detector.design: decoupled, or remove it for the RetinaNet baseline")
                }
            }
            // Soft bootstrapping mixes the softmax prediction into a cross-entropy target.
            if labelNoise.method == "bootstrap" && typeLoss.name != "ce" {
                let node = try r.sub("label_noise").value("method")
                throw RecipeError(origin: node?.origin ?? r.tree?.origin, key: r.full("label_noise.method"),
                                  "bootstrap rewrites the cross-entropy target and works with type_loss.name: ce only (got \(typeLoss.name)); use small_loss with the other type losses")
            }
            // One anchor size per pyramid level (torchvision's AnchorGenerator asserts the same).
            if anchors.sizes.count != fpn.levels.count {
                let node = try r.sub("anchors").value("sizes")
                throw RecipeError(origin: node?.origin ?? r.tree?.origin, key: r.full("anchors.sizes"),
                                  "needs one size per FPN level: \(fpn.levels.count) levels \(fpn.levels), \(anchors.sizes.count) sizes \(anchors.sizes)")
            }
        }

        /// Feature pyramid: `levels` are the pyramid levels P_l (stride 2^l) the head runs on.
        public struct FPN: RecipeSection {
            public var channels = 64
            public var levels = [3, 4, 5, 6, 7]
            public init() {}
            public static var fields: [Field<FPN>] {
                [.int("channels", \.channels, min: 1, cap: .fpnChannels),
                 .intList("levels", \.levels) { v in
                     // P3-P5 come from the backbone's strides 8-32 and P6, P7 from extra stride-2 convs, so the
                     // levels must run without gaps from 3 (RetinaNet stops at 7).
                     v.first == 3 && v.count <= 5 && v.enumerated().allSatisfy { $0.element == 3 + $0.offset }
                         ? nil : "expected contiguous levels starting at 3 and ending at 7 at most, e.g. [3, 4, 5, 6, 7] or [3, 4, 5]; got \(v)"
                 }]
            }
        }

        /// Classification and box-regression subnets: `convs` 3x3 conv + ReLU layers each (GroupNorm
        /// after each conv when `group_norm`, as torchvision's RetinaNet v2), and the classification
        /// bias set so every anchor starts at foreground probability `prior_prob`.
        public struct Head: RecipeSection {
            public var convs = 4
            public var groupNorm = false
            public var priorProb = 0.01
            public init() {}
            public static var fields: [Field<Head>] {
                [.int("convs", \.convs, min: 0, max: 8), .bool("group_norm", \.groupNorm), .double("prior_prob", \.priorProb, min: 0, max: 1)]
            }
            public func check(_ r: Reader, _ context: RecipeContext) throws {
                // log((1 - p) / p) is the bias: p must be strictly inside (0, 1).
                if priorProb <= 0 || priorProb >= 1 {
                    throw RecipeError(origin: r.value("prior_prob")?.origin ?? r.tree?.origin, key: r.full("prior_prob"), "must be strictly between 0 and 1, got \(priorProb)")
                }
            }
        }

        /// Anchors per level: `sizes[i]` (pixels) at level `levels[i]`, times each scale, at each
        /// height/width ratio. `integer_sizes` rounds the anchors' corners as torchvision does.
        public struct Anchors: RecipeSection {
            public var sizes = [16, 32, 64, 128, 256]
            public var scales = [1.0, 1.2599210498948732, 1.5874010519681994]
            public var ratios = [0.5, 1.0, 2.0]
            public var integerSizes = true
            public init() {}
            public static var fields: [Field<Anchors>] {
                [.intList("sizes", \.sizes) { v in !v.isEmpty && v.allSatisfy { $0 > 0 } ? nil : "expected positive sizes in pixels, one per FPN level, e.g. [32, 64, 128]; got \(v)" },
                 .doubleList("scales", \.scales) { v in !v.isEmpty && v.allSatisfy { $0 > 0 } ? nil : "expected positive scale factors, e.g. [1.0, 1.26, 1.587]; got \(v)" },
                 .doubleList("ratios", \.ratios) { v in !v.isEmpty && v.allSatisfy { $0 > 0 } ? nil : "expected positive height/width ratios, e.g. [0.5, 1.0, 2.0]; got \(v)" },
                 .bool("integer_sizes", \.integerSizes)]
            }
        }

        /// Anchor assignment (torchvision's `Matcher`): IoU >= `fg_iou` is foreground, < `bg_iou`
        /// background, in between ignored; `low_quality` also gives each box its best anchors. Anchors
        /// whose intersection over their own area with an ignore region is >= `ignore_iof` are ignored.
        public struct Matcher: RecipeSection {
            public var fgIoU = 0.5
            public var bgIoU = 0.4
            public var lowQuality = true
            public var ignoreIoF = 0.5
            public init() {}
            public static var fields: [Field<Matcher>] {
                [.double("fg_iou", \.fgIoU, min: 0, max: 1), .double("bg_iou", \.bgIoU, min: 0, max: 1), .bool("low_quality", \.lowQuality),
                 .double("ignore_iof", \.ignoreIoF, min: 0, max: 1)]
            }
            public func check(_ r: Reader, _ context: RecipeContext) throws {
                if bgIoU > fgIoU {
                    throw RecipeError(origin: r.value("bg_iou")?.origin ?? r.tree?.origin, key: r.full("bg_iou"), "must not exceed fg_iou (\(fgIoU)), got \(bgIoU)")
                }
            }
        }

        /// Sigmoid focal loss for classification; box regression by `regression` (l1 or smooth_l1 on the
        /// encoded deltas, weighted by `box_weights` as torchvision's BoxCoder, or giou on decoded boxes),
        /// scaled by `regression_weight`.
        public struct Loss: RecipeSection {
            public var focalAlpha = 0.25
            public var focalGamma = 2.0
            public var regression = "l1"
            public var smoothL1Beta = 0.11
            public var boxWeights = [1.0, 1.0, 1.0, 1.0]
            public var regressionWeight = 1.0
            public init() {}
            public static var fields: [Field<Loss>] {
                [.double("focal_alpha", \.focalAlpha, min: 0, max: 1), .double("focal_gamma", \.focalGamma, min: 0),
                 .choice("regression", \.regression, ["l1", "smooth_l1", "giou"]), .double("smooth_l1_beta", \.smoothL1Beta, min: 0),
                 .doubleList("box_weights", \.boxWeights) { v in
                     v.count == 4 && v.allSatisfy { $0 > 0 } ? nil : "expected four positive weights (x, y, w, h), e.g. [1.0, 1.0, 1.0, 1.0]; got \(v)"
                 },
                 .double("regression_weight", \.regressionWeight, min: 0)]
            }
        }

        /// Post-processing (torchvision's RetinaNet `postprocess_detections`): per level keep scores
        /// above `score_threshold`, at most `topk`; class-wise NMS at `nms_iou`; keep `max_detections`.
        /// `input_size`: the letterbox size at evaluation and prediction (mmdetection's test-pipeline
        /// resize); nil: `data.input_size`, the training size.
        public struct Test: RecipeSection {
            public var scoreThreshold = 0.05
            public var topk = 1000
            public var nmsIoU = 0.5
            public var maxDetections = 100
            public var inputSize: Int? = nil
            public init() {}
            public static var fields: [Field<Test>] {
                [.double("score_threshold", \.scoreThreshold, min: 0, max: 1), .int("topk", \.topk, min: 1),
                 .double("nms_iou", \.nmsIoU, min: 0, max: 1), .int("max_detections", \.maxDetections, min: 1),
                 .optInt("input_size", \.inputSize, min: 32, cap: .inputSize)]
            }
        }
        /// The decoupled design's foreground/background loss on every anchor: `focal` (RetinaNet),
        /// `qfl` (Quality Focal Loss, GFL: the target is the IoU of the predicted box), `vfl`
        /// (Varifocal, VFNet), or the hard-example baselines `ohem` (BCE on the positives and the
        /// hardest negatives at `ohem_ratio`:1) and `ghmc` (gradient-harmonized BCE).
        public struct Objectness: RecipeSection {
            public var loss = "focal"
            public var qflBeta = 2.0
            public var vflAlpha = 0.75, vflGamma = 2.0
            public var ohemRatio = 3.0
            public var ghmBins = 10, ghmMomentum = 0.75
            public init() {}
            public static var fields: [Field<Objectness>] {
                [.choice("loss", \.loss, ["focal", "qfl", "vfl", "ohem", "ghmc"]), .double("qfl_beta", \.qflBeta, min: 0),
                 .double("vfl_alpha", \.vflAlpha, min: 0), .double("vfl_gamma", \.vflGamma, min: 0), .double("ohem_ratio", \.ohemRatio, min: 0),
                 .int("ghm_bins", \.ghmBins, min: 1, max: 1000), .double("ghm_momentum", \.ghmMomentum, min: 0, max: 1)]
            }
        }

        /// Which anchors are foreground (decoupled design): `iou` (the `matcher` section's thresholds),
        /// `atss` (Zhang et al. 2020: the `atss_topk` anchors per level nearest each box's centre,
        /// IoU threshold mean + std of theirs) or `task_aligned` (TOOD, Feng et al. 2021: per box the
        /// `tal_topk` anchors of largest s^`tal_alpha` x IoU^`tal_beta`, s the foreground probability
        /// and IoU that of the anchor's predicted box, centre inside the box; the foreground target
        /// becomes TOOD's normalised metric; ATSS for the first `warmup_steps` steps). Never uses the
        /// type label.
        public struct Assigner: RecipeSection {
            public var name = "iou"
            public var atssTopk = 9
            public var talTopk = 13
            public var talAlpha = 1.0, talBeta = 6.0
            public var warmupSteps = 300
            public init() {}
            public static var fields: [Field<Assigner>] {
                [.choice("name", \.name, ["iou", "atss", "task_aligned"]), .int("atss_topk", \.atssTopk, min: 1, max: 1000),
                 Field.int("tal_topk", \.talTopk, min: 1, max: 1000).writtenWhenSet(),
                 Field.double("tal_alpha", \.talAlpha, min: 0, max: 10).writtenWhenSet(),
                 Field.double("tal_beta", \.talBeta, min: 0, max: 20).writtenWhenSet(),
                 Field.int("warmup_steps", \.warmupSteps, min: 0).writtenWhenSet()]
            }
        }

        /// The fine-grained type module (decoupled design): RoIAlign (`pool` x `pool`, `sampling_ratio`)
        /// from the FPN level a box's size selects (level = floor(canonical_level + log2(sqrt(wh) /
        /// canonical_size)), clamped to the levels up to P5), `convs` 3x3 conv + ReLU, a `hidden`-wide
        /// ReLU layer and a linear type classifier. Trained on each ground-truth box and the predicted
        /// boxes of up to `rois_per_box` of its foreground anchors; at test time run on the kept boxes,
        /// each giving its `types_per_box` best types scored p(foreground) x p(type).
        public struct FineGrained: RecipeSection {
            public var pool = 7
            public var samplingRatio = 2
            public var convs = 1
            public var hidden = 128
            public var canonicalSize = 64.0
            public var canonicalLevel = 4
            public var roisPerBox = 4
            public var typesPerBox = 3
            public var lossWeight = 1.0
            public init() {}
            public static var fields: [Field<FineGrained>] {
                [.int("pool", \.pool, min: 1, max: 32), .int("sampling_ratio", \.samplingRatio, min: 0, max: 16),
                 .int("convs", \.convs, min: 0, max: 8), .int("hidden", \.hidden, min: 1, cap: .fpnChannels),
                 .double("canonical_size", \.canonicalSize, min: 1), .int("canonical_level", \.canonicalLevel, min: 1, max: 8),
                 .int("rois_per_box", \.roisPerBox, min: 0, max: 64), .int("types_per_box", \.typesPerBox, min: 1, max: 1000),
                 .double("loss_weight", \.lossWeight, min: 0)]
            }
        }

        /// The fine-grained module's type loss, for the long tail: `ce` (softmax cross-entropy),
        /// `class_weighted` (cross-entropy weighted by the effective number of samples, Cui et al. 2019,
        /// `beta`), `eql` (softmax equalization loss: types rarer than `eql_lambda` (share of training
        /// boxes) leave the softmax of other types' samples with probability `eql_gamma`, so those
        /// negative gradients are stopped), `eqlv2` (gradient-balanced, `eqlv2_gamma`, `eqlv2_mu`,
        /// `eqlv2_alpha`), `seesaw` (`seesaw_p`, `seesaw_q`). Frequencies come from the training annotations.
        public struct TypeLoss: RecipeSection {
            public var name = "ce"
            public var beta = 0.999
            public var eqlLambda = 0.05, eqlGamma = 0.9
            public var eqlv2Gamma = 12.0, eqlv2Mu = 0.8, eqlv2Alpha = 4.0
            public var seesawP = 0.8, seesawQ = 2.0
            public init() {}
            public static var fields: [Field<TypeLoss>] {
                [.choice("name", \.name, ["ce", "class_weighted", "eql", "eqlv2", "seesaw"]), .double("beta", \.beta, min: 0, max: 1),
                 .double("eql_lambda", \.eqlLambda, min: 0, max: 1), .double("eql_gamma", \.eqlGamma, min: 0, max: 1), .double("eqlv2_gamma", \.eqlv2Gamma, min: 0),
                 .double("eqlv2_mu", \.eqlv2Mu, min: 0, max: 1), .double("eqlv2_alpha", \.eqlv2Alpha, min: 0),
                 .double("seesaw_p", \.seesawP, min: 0), .double("seesaw_q", \.seesawQ, min: 0)]
            }
        }

        /// Hard-sample focusing with support samples (the thesis, after SVM theory: only samples inside
        /// the margin shape the boundary): every step, the samples whose logit margin is below `margin`
        /// (type: true-type logit minus the strongest other; foreground: y * logit) get an extra hinge
        /// loss `weight * mean(margin - their margin)`. Off when `weight` is 0.
        public struct Support: RecipeSection {
            public var weight = 0.0
            public var margin = 1.0
            public init() {}
            public static var fields: [Field<Support>] {
                [.double("weight", \.weight, min: 0), .double("margin", \.margin, min: 0)]
            }
        }

        /// Robustness of the type targets to wrong labels (decoupled design; the foreground head never
        /// sees a type label): `none`, `bootstrap` (soft bootstrapping, Reed et al. 2015: target =
        /// `bootstrap_beta` * label + (1 - beta) * the module's own prediction) or `small_loss` (the
        /// `small_loss_rate` share of ground-truth boxes with the largest type loss in a batch is left
        /// out, ramped in over `warmup_steps`, co-teaching's selection). A training label is flagged as
        /// wrong when the module's most probable type on the box differs from it by at least
        /// `flag_margin` in probability (reported as noise_flag_precision / recall where the data knows
        /// the true labels).
        public struct LabelNoise: RecipeSection {
            public var method = "none"
            public var bootstrapBeta = 0.8
            public var smallLossRate = 0.2
            public var warmupSteps = 500
            public var flagMargin = 0.0
            public init() {}
            public static var fields: [Field<LabelNoise>] {
                [.choice("method", \.method, ["none", "bootstrap", "small_loss"]), .double("bootstrap_beta", \.bootstrapBeta, min: 0, max: 1),
                 .double("small_loss_rate", \.smallLossRate, min: 0, max: 0.95), .int("warmup_steps", \.warmupSteps, min: 0),
                 .double("flag_margin", \.flagMargin, min: 0, max: 1)]
            }
        }
    }
}
