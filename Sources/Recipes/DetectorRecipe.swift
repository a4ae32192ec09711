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
        public init() {}
        public static var fields: [Field<Detector>] {
            [.section("fpn", \.fpn), .section("head", \.head), .section("anchors", \.anchors), .section("matcher", \.matcher),
             .section("loss", \.loss), .section("test", \.test)]
        }
        public func check(_ r: Reader, _ context: RecipeContext) throws {
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
    }
}
