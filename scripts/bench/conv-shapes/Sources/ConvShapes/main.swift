// The FP32 side of scripts/bench/dnnl_conv.c: our Conv2d forward on the same layer shapes (issue 14 spike).
// From this folder: swift build -c release && OPENBLAS_CORETYPE=SkylakeX QAT_NUM_THREADS=2 .build/release/ConvShapes
// (OPENBLAS_CORETYPE: what `qat` sets for itself on CPUs Debian's OpenBLAS 0.3.21 does not recognise; BLASDispatch).
import Foundation
import Kernels
import Autodiff
import NN
// Our FP32 conv forward (eval, no grad, NCHW) on the shapes of scripts/bench/dnnl_conv.c, batch 8.
let shapes: [(String, Int, Int, Int, Int, Int, Int)] = [
    ("stem 3x3 s2 3->16 @256", 3, 16, 256, 3, 2, 1), ("1x1 16->96 @64", 16, 96, 64, 1, 1, 1), ("dw3x3 96 @64", 96, 96, 64, 3, 1, 96),
    ("1x1 96->16 @64", 96, 16, 64, 1, 1, 1), ("1x1 32->192 @16", 32, 192, 16, 1, 1, 1), ("dw3x3 192 @16", 192, 192, 16, 3, 1, 192),
    ("1x1 192->32 @16", 192, 32, 16, 1, 1, 1), ("1x1 160->1280 @8", 160, 1280, 8, 1, 1, 1)]
var rng = RNG(seed: 0)
var total = 0.0
for (name, ic, oc, hw, k, s, g) in shapes {
    let conv = try Conv2d(ic, oc, kernel: k, stride: s, groups: g, rng: &rng)
    conv.eval()
    let x = Tensor.randn([8, ic, hw, hw], rng: &rng)
    var t: [Double] = []
    for i in 0..<23 {
        let a = Date()
        _ = noGrad { conv(x) }
        if i >= 3 { t.append(Date().timeIntervalSince(a) * 1000) }
    }
    t.sort()
    let m = (t[9] + t[10]) / 2
    total += m
    print(name.padding(toLength: 26, withPad: " ", startingAt: 0), String(format: "%8.3f ms", m))
}
print("sum".padding(toLength: 26, withPad: " ", startingAt: 0), String(format: "%8.3f ms", total))
