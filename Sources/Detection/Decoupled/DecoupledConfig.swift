/// The thesis' detector (docs/DESIGN.md, "The decoupled detector"): RetinaNet's backbone, FPN, anchors and box regression, a
/// class-agnostic foreground head instead of one sigmoid per type, and a fine-grained type module on
/// RoI features. Every component is a switch here, so the ablation's rows run from one model.
public struct DecoupledConfig: Sendable, Equatable {
    /// Foreground/background loss on every anchor.
    public enum ObjectnessLoss: String, Sendable, CaseIterable { case focal, qfl, vfl, ohem, ghmc }
    /// `taskAligned`: TOOD's rule on the foreground score and the predicted box's IoU, after ATSS for
    /// `assignerWarmupSteps` loss evaluations.
    public enum Assigner: String, Sendable, CaseIterable { case iou, atss, taskAligned = "task_aligned" }
    /// The type module's loss (long-tail variants).
    public enum TypeLoss: String, Sendable, CaseIterable { case ce, classWeighted = "class_weighted", eql, eqlv2, seesaw }
    /// Robustness of the type targets to wrong labels.
    public enum LabelNoise: String, Sendable, CaseIterable { case none, bootstrap, smallLoss = "small_loss" }

    /// FPN, heads, anchors, IoU matcher, box regression and test-time settings; `numClasses` is the
    /// number of types (the foreground head has one output per anchor whatever it is).
    public var base: RetinaNetConfig

    public var objectness = ObjectnessLoss.focal
    public var qflBeta: Float = 2
    public var vflAlpha: Float = 0.75, vflGamma: Float = 2
    public var ohemRatio: Float = 3
    public var ghmBins = 10, ghmMomentum: Float = 0.75

    public var assigner = Assigner.iou
    public var atssTopk = 9
    public var talTopk = 13, talAlpha: Float = 1, talBeta: Float = 6
    public var assignerWarmupSteps = 300

    public var pool = 7, samplingRatio = 2
    public var fineConvs = 1, fineHidden = 128
    /// RoI level mapping: level = floor(canonicalLevel + log2(sqrt(wh) / canonicalSize)). 64 px at P4
    /// keeps the benchmark's aircraft under 64 px on P3 (stride 8: a 16 px aircraft still covers 2 x 2
    /// cells; on P4 a 32 px one would cover 2 x 2) and moves larger ones to P4.
    public var canonicalSize: Double = 64, canonicalLevel = 4
    public var roisPerBox = 4, typesPerBox = 3
    public var typeLossWeight: Float = 1

    public var typeLoss = TypeLoss.ce
    /// Training boxes per type (from the training annotations), for the long-tail losses.
    public var typeCounts: [Int] = []
    public var classWeightBeta: Float = 0.999
    public var eqlLambda: Float = 0.05, eqlGamma: Float = 0.9
    public var eqlv2Gamma: Float = 12, eqlv2Mu: Float = 0.8, eqlv2Alpha: Float = 4
    public var seesawP: Float = 0.8, seesawQ: Float = 2

    public var supportWeight: Float = 0, supportMargin: Float = 1

    public var labelNoise = LabelNoise.none
    public var bootstrapBeta: Float = 0.8
    public var smallLossRate: Float = 0.2
    public var noiseWarmupSteps = 500

    public init(base: RetinaNetConfig) { self.base = base }

    public var numTypes: Int { base.numClasses }
}
