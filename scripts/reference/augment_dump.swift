// Dumps Sources/Datasets/Augment.swift outputs (flips, rot90, letterbox down and up, colour jitter with its
// three draws) on a non-square crop of one image, as JSON; check_retinanet_torch.py compiles it against
// .build/debug and compares retinanet_torch.py's replica with it.
// Usage: augment_dump IMAGE.png OUT.json
import Foundation
import Datasets
import Kernels

let args = CommandLine.arguments
let img = try ImageCodec.decode(file: args[1])
let base = Sample(image: img, boxes: [[10.5, 20.25, 30, 12], [100, 40.75, 22.5, 50]], labels: [1, 2])
let s = Augment.crop(base, x: 3, y: 20, width: 230, height: 170, minVisible: 0.0)
var out: [String: Any] = [:]
func put(_ name: String, _ x: Sample) {
    out[name] = ["w": x.image.width, "h": x.image.height, "pixels": x.image.pixels.map(Int.init), "boxes": x.boxes]
}
put("input", s)
put("hflip", Augment.flipHorizontal(s))
put("vflip", Augment.flipVertical(s))
put("rot1", Augment.rotate90(s, quarterTurns: 1))
put("rot3", Augment.rotate90(s, quarterTurns: 3))
let lb192 = Augment.letterbox(s, size: 192); put("lb192", lb192.0); out["lb192_geo"] = [lb192.scale, Double(lb192.dx), Double(lb192.dy)]
let lb300 = Augment.letterbox(s, size: 300); put("lb300", lb300.0); out["lb300_geo"] = [lb300.scale, Double(lb300.dx), Double(lb300.dy)]
var rng = RNG(seed: 7)
var peek = rng
let draws = (0..<3).map { _ in Double(peek.nextUInt64() >> 11) * 0x1p-53 }
out["cj_draws"] = draws
put("cj", Augment.colorJitter(s, brightness: 0.1, contrast: 0.1, saturation: 0.2, rng: &rng))
let data = try JSONSerialization.data(withJSONObject: out)
try data.write(to: URL(fileURLWithPath: args[2]))
print("wrote", args[2])
