import Autodiff

/// Averages parameter gradients over the ranks of a data-parallel job as PyTorch's DDP does: the
/// parameters are grouped into buckets of about `capBytes` in reverse registration order (the order
/// backward produces their gradients), and a bucket's allreduce starts as soon as its last gradient is
/// final (`Tensor.backward(leafReady:)`), so communication overlaps the rest of the backward pass.
/// `finish()` completes every bucket and writes the averages back.
///
/// A parameter without a gradient on some ranks (a branch one rank's batch did not use) counts as zero
/// there; one without a gradient on every rank keeps none (each bucket carries a presence count per
/// parameter), as in a single process.
public final class GradientBuckets {
    struct Bucket {
        var params: [Int]          // indices into `params`
        var offsets: [Int]
        var length: Int            // gradient elements; the presence counts follow them
        /// Gradients then presence counts; manually allocated (MPI writes into it after the call that
        /// started the allreduce returns, so it must not move).
        let buffer: UnsafeMutablePointer<Float>
        var count: Int { length + params.count }
        var pending = 0
        var request: MPIWorld.Request?
    }
    let world: MPIWorld
    let params: [(String, Tensor)]
    var buckets: [Bucket] = []
    var slot: [ObjectIdentifier: (bucket: Int, index: Int)] = [:]

    public var bucketCount: Int { buckets.count }

    public init(_ params: [(String, Tensor)], world: MPIWorld, capBytes: Int) {
        self.world = world
        self.params = params
        var current: [Int] = [], bytes = 0
        func close() {
            guard !current.isEmpty else { return }
            var offsets: [Int] = [], n = 0
            for i in current { offsets.append(n); n += params[i].1.count }
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: n + current.count)
            buffer.initialize(repeating: 0, count: n + current.count)
            buckets.append(Bucket(params: current, offsets: offsets, length: n, buffer: buffer))
            current = []; bytes = 0
        }
        for i in params.indices.reversed() {
            current.append(i); bytes += 4 * params[i].1.count
            if bytes >= capBytes { close() }
        }
        close()
        for (b, bucket) in buckets.enumerated() {
            for (k, i) in bucket.params.enumerated() { slot[ObjectIdentifier(params[i].1)] = (b, k) }
        }
    }

    deinit { for b in buckets { b.buffer.deallocate() } }

    /// Before a backward pass: every bucket waits for all its gradients again.
    public func begin() {
        for b in buckets.indices {
            buckets[b].pending = buckets[b].params.count
            buckets[b].request = nil
            (buckets[b].buffer + buckets[b].length).update(repeating: 0, count: buckets[b].params.count)
        }
    }

    /// `Tensor.backward(leafReady:)`'s callback: copies a final gradient into its bucket and starts the
    /// bucket's allreduce when it was the last one; drives outstanding allreduces forward.
    public func ready(_ t: Tensor) {
        guard let (b, k) = slot[ObjectIdentifier(t)], let g = t.grad else { return }
        stage(b, k, g)
        buckets[b].pending -= 1
        if buckets[b].pending == 0 { launch(b) }
        progress()
    }

    func stage(_ b: Int, _ k: Int, _ g: Tensor?) {
        let o = buckets[b].offsets[k], n = params[buckets[b].params[k]].1.count, len = buckets[b].length
        let p = buckets[b].buffer
        if let g { (p + o).update(from: g.pointer, count: n); p[len + k] = 1 }
        else { (p + o).update(repeating: 0, count: n); p[len + k] = 0 }
    }

    func launch(_ b: Int) {
        buckets[b].request = world.iallreduceSum(buckets[b].buffer, count: buckets[b].count, what: "gradient bucket \(b + 1) of \(buckets.count)")
    }

    func progress() {
        for b in buckets.indices where buckets[b].request != nil { world.test(&buckets[b].request!) }
    }

    /// After backward: starts the buckets still missing gradients (their absent parameters as zeros),
    /// waits for all, and sets every parameter's gradient to the average over ranks.
    public func finish() {
        for b in buckets.indices where buckets[b].request == nil {
            for (k, i) in buckets[b].params.enumerated() where params[i].1.grad == nil { stage(b, k, nil) }
            launch(b)
        }
        let scale = 1 / Float(world.size)
        for b in buckets.indices {
            world.wait(&buckets[b].request!)
            let len = buckets[b].length, p = buckets[b].buffer
            for (k, i) in buckets[b].params.enumerated() {
                let t = params[i].1
                guard p[len + k] > 0 else { t.grad = nil; continue }
                let g = t.grad ?? Tensor.zeros(t.shape)
                let src = p + buckets[b].offsets[k], dst = g.pointer
                for j in 0..<t.count { dst[j] = src[j] * scale }
                t.grad = g
            }
        }
    }
}
