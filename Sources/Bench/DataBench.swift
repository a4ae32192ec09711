import Foundation
import Kernels
import Datasets

/// `qat bench data`: PNG decode + augmentation + letterbox + normalisation throughput on one thread
/// (the loader's per-image work; the loader runs it on a background thread).
public enum DataBench {
    struct PNGSource: SampleSource {
        let pngs: [Data]
        var count: Int { pngs.count }
        func sample(_ i: Int) throws -> Sample {
            let img = try ImageCodec.decode(pngs[i], channels: 3, file: "mem\(i).png")
            return Sample(image: img, boxes: [[40, 50, 30, 20], [100, 120, 48, 32]], labels: [1, 2])
        }
    }

    /// Images per second at `size` px over `images` synthetic PNGs (noise plus gradients, so they
    /// compress like photos rather than flat colour).
    public static func run(images: Int = 64, size: Int = 256) throws -> (imagesPerSecond: Double, pngKiB: Double) {
        var rng = RNG(seed: 1)
        var pngs: [Data] = []
        for _ in 0..<images {
            var img = Image(width: size, height: size, channels: 3)
            let noise = FloatBuffer(count: size * size * 3)
            rng.fillUniform(noise.pointer, count: noise.count, low: 0, high: 40)
            for y in 0..<size { for x in 0..<size { for k in 0..<3 {
                let i = img.index(x: x, y: y, c: k)
                img.pixels[i] = UInt8(min(255, Float((x + y * 2 + k * 60) % 200) + noise.pointer[i]))
            }}}
            pngs.append(try ImageCodec.encodePNG(img))
        }
        var cfg = Loader.Config(); cfg.batchSize = 8; cfg.size = size; cfg.policy = Augment.Policy(); cfg.shuffle = false
        cfg.policy!.scaleCrop = 0.5; cfg.policy!.colorJitter = 0.5
        let loader = try Loader(PNGSource(pngs: pngs), config: cfg)
        let t0 = DispatchTime.now().uptimeNanoseconds
        var i = 0
        while i < images { _ = try loader.makeBatch(epoch: 0, indices: Array(i..<min(i + 8, images))); i += 8 }
        let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return (Double(images) / s, Double(pngs.reduce(0) { $0 + $1.count }) / Double(images) / 1024)
    }
}
