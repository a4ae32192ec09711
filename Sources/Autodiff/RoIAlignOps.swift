import Kernels

extension Tensor {
    /// RoIAlign, `torchvision.ops.roi_align`: for each RoI, a `[C, outputSize]` grid of bilinearly
    /// sampled bin means from this `[N, C, H, W]` feature map. `rois` holds five values a RoI: batch
    /// index, then x1, y1, x2, y2 in input pixels (the feature map is `spatialScale` times the input,
    /// e.g. 1/8 for P3). `aligned` shifts by half a pixel (torchvision's `aligned=True`, Detectron2's
    /// default); `samplingRatio <= 0` samples adaptively (ceil(RoI size / output size) per bin side).
    /// Returns `[R, C, outputSize.height, outputSize.width]` (`[0, C, ...]` for no RoIs).
    ///
    /// The gradient reaches the features only: as in torchvision the RoIs are constants (box
    /// refinement is trained by its own regression loss, not through the sampling positions).
    /// Malformed RoIs (batch index out of range, non-finite corners) are programmer errors.
    public func roiAlign(rois: [Float], outputSize: (height: Int, width: Int), spatialScale: Float,
                         samplingRatio: Int, aligned: Bool) -> Tensor {
        let plan = rois.withUnsafeBufferPointer {
            RoIAlignPlan(rois: $0, featureShape: shape, outputSize: outputSize, spatialScale: spatialScale,
                         samplingRatio: samplingRatio, aligned: aligned)
        }
        let out = FloatBuffer(count: Shape.count(plan.outputShape))
        RoIAlign.forward(plan, x: pointer, y: out.pointer)
        let xs = shape
        return Tensor.make(plan.outputShape, out, op: "roi_align", inputs: [self]) { g in
            let dx = FloatBuffer(count: Shape.count(xs))
            RoIAlign.backward(plan, dy: g.pointer, dx: dx.pointer)
            return [Tensor(shape: xs, storage: dx)]
        }
    }
}
