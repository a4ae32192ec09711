import Foundation
import Kernels

/// Anything that yields samples by index (a COCO folder, DOTA tiles, an image folder, synthetic data).
public protocol SampleSource: Sendable {
    var count: Int { get }
    func sample(_ index: Int) throws -> Sample
}

/// A batch: images as Float32 NCHW (normalised), and per image its detection targets in input pixels
/// (after augmentation and letterbox) with the mapping back to the image the source delivered.
public struct Batch: @unchecked Sendable {
    public var images: FloatBuffer
    public var shape: [Int]
    /// Per image: object boxes [x, y, w, h] in input pixels, clipped to the image (not the padding),
    /// each at least 1 px wide and high; an image may have none (all negatives).
    public var boxes: [[[Double]]]
    /// Per image: one 0-based category index per box.
    public var labels: [[Int]]
    /// Per image: the true label of each box when the source knows it (`Sample.cleanLabels`), else nil.
    public var cleanLabels: [[Int]?] = []
    /// Per image: ignore regions [x, y, w, h] in input pixels (see `Sample.ignoreBoxes`).
    public var ignoreBoxes: [[[Double]]]
    /// Per image: the source's image id (COCO image id, DOTA patch index; the sample index when the
    /// source has none): the `image_id` of COCO results.
    public var imageIds: [Int]
    /// Per image: where the letterbox put it; `letterboxes[i].toOriginal(box)` maps a prediction back.
    public var letterboxes: [Letterbox]
    /// Boxes dropped from this batch because they were narrower or lower than 1 input pixel after
    /// augmentation, letterbox and clipping (tiny objects shrunk by the resize, slivers at a border).
    public var droppedBoxes: Int
    /// Source indices of the images, in batch order.
    public var indices: [Int]
}

/// Batches a `SampleSource`: order shuffled by (seed, epoch), each sample augmented with its own
/// generator derived from (seed, epoch, index), letterboxed to `size`, normalised with `mean`/`std`
/// (per channel, on 0..255 values); boxes are clipped to the image and those under 1 px dropped and
/// counted (`Batch.droppedBoxes`). Decoding and augmentation run on a background thread, `prefetch`
/// batches ahead, so the same seed gives the same batches whatever the timing.
public final class Loader: @unchecked Sendable {
    public struct Config: Sendable {
        public var batchSize = 8
        public var size = 256
        public var channels = 3
        public var shuffle = true
        public var dropLast = false
        public var seed: UInt64 = 0
        public var policy: Augment.Policy? = nil
        public var mean: [Float] = [123.675, 116.28, 103.53]
        public var std: [Float] = [58.395, 57.12, 57.375]
        public var prefetch = 2
        public init() {}
    }

    let source: SampleSource
    let config: Config

    public init(_ source: SampleSource, config: Config) throws {
        guard config.batchSize >= 1, config.size >= 1, config.prefetch >= 1 else {
            throw DataError(file: "(loader)", "batch size, size and prefetch must be >= 1")
        }
        guard config.mean.count == config.channels, config.std.count == config.channels, config.std.allSatisfy({ $0 > 0 }) else {
            throw DataError(file: "(loader)", "mean and std need \(config.channels) values each and std > 0")
        }
        self.source = source; self.config = config
    }

    /// Sample order of an epoch.
    public func order(epoch: Int) -> [Int] {
        guard config.shuffle else { return Array(0..<source.count) }
        var rng = RNG(seed: config.seed ^ (0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1)))
        return rng.permutation(source.count)
    }

    public func batchCount(epoch: Int = 0) -> Int {
        config.dropLast ? source.count / config.batchSize : (source.count + config.batchSize - 1) / config.batchSize
    }

    /// Builds one batch synchronously (the background worker calls this too).
    public func makeBatch(epoch: Int, indices: [Int]) throws -> Batch {
        let c = config.channels, s = config.size
        let buf = FloatBuffer(count: indices.count * c * s * s)
        var boxes: [[[Double]]] = [], labels: [[Int]] = [], ignore: [[[Double]]] = [], clean: [[Int]?] = []
        var ids: [Int] = [], maps: [Letterbox] = [], dropped = 0
        for (b, idx) in indices.enumerated() {
            var sample = try source.sample(idx)
            guard sample.image.channels == c else {
                throw DataError(file: "(sample \(idx))", "has \(sample.image.channels) channels, the loader expects \(c)")
            }
            if let policy = config.policy {
                var rng = RNG(seed: config.seed ^ (UInt64(epoch) << 40) ^ UInt64(idx) &* 0xD6E8_FEB8_6659_FD93)
                sample = Augment.apply(policy, to: sample, rng: &rng)
            }
            let (boxed, m) = Augment.letterbox(sample, size: s)
            let (lb, lost) = Augment.clip(boxed, x: m.dx, y: m.dy, width: m.width, height: m.height)
            let px = lb.image.pixels
            for k in 0..<c {
                let m = config.mean[k], inv = 1 / config.std[k]
                let dst = buf.pointer + (b * c + k) * s * s
                for i in 0..<(s * s) { dst[i] = (Float(px[i * c + k]) - m) * inv }
            }
            boxes.append(lb.boxes); labels.append(lb.labels); ignore.append(lb.ignoreBoxes); clean.append(lb.cleanLabels)
            ids.append(lb.imageId ?? idx); maps.append(m); dropped += lost
        }
        return Batch(images: buf, shape: [indices.count, c, s, s], boxes: boxes, labels: labels, cleanLabels: clean, ignoreBoxes: ignore,
                     imageIds: ids, letterboxes: maps, droppedBoxes: dropped, indices: indices)
    }

    /// Iterates an epoch's batches, prepared `prefetch` ahead on a background thread.
    public func epoch(_ epoch: Int) -> EpochIterator { EpochIterator(loader: self, epoch: epoch) }

    public final class EpochIterator: @unchecked Sendable {
        let loader: Loader
        let epoch: Int
        let plan: [[Int]]
        let lock = NSCondition()
        var ready: [Int: Result<Batch, Error>] = [:]
        var nextToServe = 0
        var stopped = false
        var worker: Thread?

        init(loader: Loader, epoch: Int) {
            self.loader = loader; self.epoch = epoch
            let order = loader.order(epoch: epoch)
            let bs = loader.config.batchSize
            var p: [[Int]] = []
            var i = 0
            while i < order.count {
                let chunk = Array(order[i..<min(i + bs, order.count)])
                if chunk.count == bs || !loader.config.dropLast { p.append(chunk) }
                i += bs
            }
            plan = p
            // The worker holds the iterator only weakly between steps, so an abandoned iterator is freed
            // and its worker ends (within one 50 ms wait).
            let t = Thread { [weak self] in
                var k = 0
                while let me = self, k < me.plan.count {
                    switch me.produce(k) {
                    case .done: k += 1
                    case .waiting: continue
                    case .stopped: return
                    }
                }
            }
            t.name = "qat-loader"
            worker = t
            t.start()
        }

        deinit { stop() }

        enum Step { case done, waiting, stopped }

        func produce(_ k: Int) -> Step {
            lock.lock()
            if stopped { lock.unlock(); return .stopped }
            if k - nextToServe >= loader.config.prefetch {
                _ = lock.wait(until: Date(timeIntervalSinceNow: 0.05))
                lock.unlock()
                return .waiting
            }
            lock.unlock()
            let r = Result { try loader.makeBatch(epoch: epoch, indices: plan[k]) }
            lock.lock(); ready[k] = r; lock.broadcast(); lock.unlock()
            return .done
        }

        /// The next batch, nil at the end of the epoch; rethrows a sample's decode error.
        public func next() throws -> Batch? {
            lock.lock(); defer { lock.unlock() }
            guard nextToServe < plan.count else { return nil }
            while ready[nextToServe] == nil { lock.wait() }
            let r = ready.removeValue(forKey: nextToServe)!
            nextToServe += 1
            lock.broadcast()
            return try r.get()
        }

        public func stop() {
            lock.lock(); stopped = true; lock.broadcast(); lock.unlock()
        }
    }
}
