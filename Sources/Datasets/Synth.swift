import Foundation
import UserPaths
import Kernels
import Files

/// The procedural fine-grained aircraft benchmark (`qat data synth`): aerial 256 px tiles with aprons or
/// grass, taxiway markings, buildings and vehicles as distractors, aircraft of 12 types parked in rows or
/// at random at any rotation with soft shadows, then illumination, haze, blur and sensor noise. Class
/// frequencies follow a long tail (head/tail ratio `imbalance`); label noise is injected into the train
/// split only, keeping the true type in `clean_category_id`. Same configuration, same bytes.
public enum SyntheticAircraft {
    public enum NoiseMode: String, Sendable, CaseIterable { case symmetric, similar }

    public struct Config: Sendable {
        public var images = 100
        public var size = 256
        public var seed: UInt64 = 0
        public var imbalance = 20.0
        public var labelNoise = 0.0
        public var noiseMode = NoiseMode.symmetric
        public var minLength = 16.0, maxLength = 64.0
        public init() {}

        /// Caps (docs/DATA.md): rendering a scene takes 28 bytes per pixel per thread and the scenes'
        /// objects are held until the annotations are written. Recipes' `Cap.synthImages` and
        /// `Cap.synthSize` are the same numbers.
        public static let maxImages = 100_000
        public static let maxSize = 2048
        /// The most aircraft a scene holds (2-8).
        public static let maxAircraftPerScene = 8

        /// Checks every value before anything is created or allocated. Errors name the flag of `qat data
        /// synth` (the recipe's `data.synth` keys are checked with their own names when read).
        public func validate() throws {
            guard (1...Self.maxImages).contains(images) else {
                throw DataError(file: "--images", "must be 1...\(Self.maxImages) (the cap on scenes per dataset), got \(images)")
            }
            guard (64...Self.maxSize).contains(size) else {
                throw DataError(file: "--size", "must be 64...\(Self.maxSize) px (the cap on the scene side; a scene renders at 28 bytes per pixel), got \(size)")
            }
            guard imbalance >= 1 else { throw DataError(file: "--imbalance", "is the head/tail frequency ratio and must be >= 1, got \(imbalance)") }
            guard labelNoise >= 0 && labelNoise <= 1 else { throw DataError(file: "--label-noise", "must be in [0, 1], got \(labelNoise)") }
            guard minLength.isFinite, maxLength.isFinite, minLength >= 4, maxLength >= minLength, maxLength <= Double(size) / 2 else {
                throw DataError(file: "--min-length/--max-length", "need 4 <= min <= max <= size/2 (\(size / 2)), got \(minLength)...\(maxLength)")
            }
        }
    }

    struct Object { var type: Int; var cx: Double, cy: Double, length: Double, angle: Double }

    /// Class sampling weights: w_k = imbalance^(-k/(K-1)), so the head class is `imbalance` times the tail.
    static func weights(_ imbalance: Double) -> [Double] {
        let k = AircraftType.catalog.count
        let w = (0..<k).map { pow(imbalance, -Double($0) / Double(k - 1)) }
        let s = w.reduce(0, +)
        return w.map { $0 / s }
    }

    @inline(__always) static func uniform(_ rng: inout RNG) -> Double { Double(rng.nextUInt64() >> 11) * 0x1p-53 }

    static func pick(_ w: [Double], _ rng: inout RNG) -> Int {
        var u = uniform(&rng)
        for (i, p) in w.enumerated() { if u < p { return i }; u -= p }
        return w.count - 1
    }

    /// Renders image `index`: pixels and its objects.
    static func render(index: Int, config c: Config) -> (Image, [Object]) {
        var rng = RNG(seed: c.seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index) &* 0xBF58_476D_1CE4_E5B9)
        let n = c.size
        var canvas = [Double](repeating: 0, count: n * n * 3)
        // Ground: apron concrete or grass, low-frequency variation plus texture.
        let grass = uniform(&rng) < 0.3
        let base: (Double, Double, Double) = grass ? (70 + 30 * uniform(&rng), 100 + 30 * uniform(&rng), 55 + 20 * uniform(&rng))
                                                   : (120 + 40 * uniform(&rng), 120 + 40 * uniform(&rng), 118 + 40 * uniform(&rng))
        let waves = (0..<3).map { _ in (uniform(&rng) * 0.05, uniform(&rng) * 0.05, uniform(&rng) * 6.28, 6 + 10 * uniform(&rng)) }
        let tex = FloatBuffer(count: n * n)
        rng.fillNormal(tex.pointer, count: n * n, std: grass ? 9 : 5)
        // sin(a x + b y + c) = sin(a x) cos(b y + c) + cos(a x) sin(b y + c): tables instead of n^2 sines.
        let sx = waves.map { w in (0..<n).map { sin(w.0 * Double($0)) } }, cx = waves.map { w in (0..<n).map { cos(w.0 * Double($0)) } }
        let sy = waves.map { w in (0..<n).map { sin(w.1 * Double($0) + w.2) } }, cy = waves.map { w in (0..<n).map { cos(w.1 * Double($0) + w.2) } }
        for y in 0..<n { for x in 0..<n {
            var v = tex.pointer[y * n + x]
            for (k, w) in waves.enumerated() { v += Float(w.3 * (sx[k][x] * cy[k][y] + cx[k][x] * sy[k][y])) }
            let i = (y * n + x) * 3
            canvas[i] = base.0 + Double(v); canvas[i + 1] = base.1 + Double(v); canvas[i + 2] = base.2 + Double(v)
        }}
        func fillPolygon(_ poly: [(Double, Double)], _ color: (Double, Double, Double), alpha: Double) {
            let xs = poly.map(\.0), ys = poly.map(\.1)
            let x0 = max(0, Int(xs.min()!.rounded(.down))), x1 = min(n - 1, Int(xs.max()!.rounded(.up)))
            let y0 = max(0, Int(ys.min()!.rounded(.down))), y1 = min(n - 1, Int(ys.max()!.rounded(.up)))
            guard x0 <= x1, y0 <= y1 else { return }
            for y in y0...y1 { for x in x0...x1 {
                var cover = 0.0
                for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] where inside(poly, Double(x) + sx, Double(y) + sy) { cover += 0.25 }
                if cover == 0 { continue }
                let a = alpha * cover, i = (y * n + x) * 3
                canvas[i] = canvas[i] * (1 - a) + color.0 * a
                canvas[i + 1] = canvas[i + 1] * (1 - a) + color.1 * a
                canvas[i + 2] = canvas[i + 2] * (1 - a) + color.2 * a
            }}
        }
        func rect(cx: Double, cy: Double, w: Double, h: Double, angle: Double) -> [(Double, Double)] {
            let (ca, sa) = (cos(angle), sin(angle))
            return [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)].map { (cx + $0.0 * ca - $0.1 * sa, cy + $0.0 * sa + $0.1 * ca) }
        }
        // Taxiway markings.
        if !grass {
            for _ in 0..<(1 + rng.nextInt(below: 3)) {
                let a = uniform(&rng) * .pi, cx = uniform(&rng) * Double(n), cy = uniform(&rng) * Double(n)
                fillPolygon(rect(cx: cx, cy: cy, w: Double(n) * 1.5, h: 1.6, angle: a), (215, 190, 60), alpha: 0.9)
            }
        }
        // Buildings and hangars.
        for _ in 0..<rng.nextInt(below: 4) {
            let g = 90 + 80 * uniform(&rng)
            fillPolygon(rect(cx: uniform(&rng) * Double(n), cy: uniform(&rng) * Double(n), w: 20 + 50 * uniform(&rng), h: 15 + 40 * uniform(&rng),
                             angle: rng.nextInt(below: 2) == 0 ? 0 : uniform(&rng) * .pi), (g, g * 0.95, g * 0.9), alpha: 1)
        }
        // Aircraft: a row (same heading, even spacing) or scattered, no two boxes overlapping.
        let w = weights(c.imbalance)
        var objects: [Object] = []
        var boxes: [[Double]] = []
        let count = 2 + rng.nextInt(below: SyntheticAircraft.Config.maxAircraftPerScene - 1)
        let row = uniform(&rng) < 0.5
        let rowAngle = uniform(&rng) * 2 * .pi, rowDir = uniform(&rng) * .pi
        var rowPos = (uniform(&rng) * Double(n) * 0.5 + Double(n) * 0.25, uniform(&rng) * Double(n) * 0.5 + Double(n) * 0.25)
        for attempt in 0..<(count * 12) where objects.count < count {
            let t = pick(w, &rng)
            let ty = AircraftType.catalog[t]
            let scale = ty.lengthMeters / 40
            let length = min(c.maxLength, max(c.minLength, (c.minLength + (c.maxLength - c.minLength) * uniform(&rng)) * scale))
            var o = Object(type: t, cx: 0, cy: 0, length: length, angle: uniform(&rng) * 2 * .pi)
            if row && attempt < count * 3 {
                o.angle = rowAngle; o.cx = rowPos.0; o.cy = rowPos.1
                rowPos.0 += cos(rowDir) * length * 1.1; rowPos.1 += sin(rowDir) * length * 1.1
            } else {
                o.cx = uniform(&rng) * Double(n); o.cy = uniform(&rng) * Double(n)
            }
            guard let b = bbox(ty, o), b[0] >= 1, b[1] >= 1, b[0] + b[2] <= Double(n - 1), b[1] + b[3] <= Double(n - 1),
                  !boxes.contains(where: { overlap($0, b) }) else { continue }
            objects.append(o); boxes.append(b)
        }
        // Vehicles as small distractors.
        for _ in 0..<rng.nextInt(below: 7) {
            let col = [(200.0, 200.0, 60.0), (220, 220, 220), (40, 40, 45), (180, 40, 40)][rng.nextInt(below: 4)]
            fillPolygon(rect(cx: uniform(&rng) * Double(n), cy: uniform(&rng) * Double(n), w: 3 + 3 * uniform(&rng), h: 2 + uniform(&rng) * 2,
                             angle: uniform(&rng) * .pi), col, alpha: 1)
        }
        // Shadows first (sun direction per image), then the aircraft.
        let sun = uniform(&rng) * 2 * .pi
        for o in objects {
            let ty = AircraftType.catalog[o.type]
            let off = o.length * 0.06
            for p in ty.polygons() { fillPolygon(place(p, o, dx: cos(sun) * off, dy: sin(sun) * off), (20, 20, 25), alpha: 0.45) }
        }
        for o in objects {
            let ty = AircraftType.catalog[o.type]
            let col = (Double(ty.color.0), Double(ty.color.1), Double(ty.color.2))
            for (k, p) in ty.polygons().enumerated() {
                let shade = k == 0 ? 1.0 : 0.9   // wings and tail a touch darker than the fuselage
                fillPolygon(place(p, o, dx: 0, dy: 0), (col.0 * shade, col.1 * shade, col.2 * shade), alpha: 1)
            }
        }
        // Sensor effects: illumination, haze, optional blur, noise.
        let gain = 0.8 + 0.4 * uniform(&rng), haze = 0.3 * uniform(&rng)
        if uniform(&rng) < 0.3 {
            var b = canvas
            for y in 1..<(n - 1) { for x in 1..<(n - 1) { for k in 0..<3 {
                var s = 0.0
                for dy in -1...1 { for dx in -1...1 { s += canvas[((y + dy) * n + x + dx) * 3 + k] } }
                b[(y * n + x) * 3 + k] = s / 9
            }}}
            canvas = b
        }
        let noise = FloatBuffer(count: n * n * 3)
        rng.fillNormal(noise.pointer, count: noise.count, std: 3)
        var img = Image(width: n, height: n, channels: 3)
        for i in 0..<(n * n * 3) {
            let v = (canvas[i] * gain) * (1 - haze) + 205 * haze + Double(noise.pointer[i])
            img.pixels[i] = UInt8(max(0, min(255, v.rounded())))
        }
        return (img, objects)
    }

    static func place(_ poly: [(Double, Double)], _ o: Object, dx: Double, dy: Double) -> [(Double, Double)] {
        let (ca, sa) = (cos(o.angle), sin(o.angle))
        return poly.map { (o.cx + dx + ($0.0 * ca - $0.1 * sa) * o.length, o.cy + dy + ($0.0 * sa + $0.1 * ca) * o.length) }
    }

    /// Axis-aligned box [x, y, w, h] of every polygon vertex of an aircraft.
    static func bbox(_ ty: AircraftType, _ o: Object) -> [Double]? {
        let pts = ty.polygons().flatMap { place($0, o, dx: 0, dy: 0) }
        guard let x0 = pts.map(\.0).min(), let x1 = pts.map(\.0).max(), let y0 = pts.map(\.1).min(), let y1 = pts.map(\.1).max() else { return nil }
        return [x0, y0, x1 - x0, y1 - y0]
    }

    static func overlap(_ a: [Double], _ b: [Double]) -> Bool {
        a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
    }

    static func inside(_ poly: [(Double, Double)], _ x: Double, _ y: Double) -> Bool {
        var c = false
        var j = poly.count - 1
        for i in 0..<poly.count {
            let (xi, yi) = poly[i], (xj, yj) = poly[j]
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi { c.toggle() }
            j = i
        }
        return c
    }

    /// Split of image `index`: the first 70% train, next 15% val, the rest test.
    static func split(_ index: Int, of total: Int) -> String {
        let f = Double(index) / Double(total)
        return f < 0.7 ? "train" : (f < 0.85 ? "val" : "test")
    }

    public struct Summary: Sendable { public var images: Int; public var objects: Int; public var seconds: Double; public var noisyLabels: Int }

    /// Writes `images/NNNNNN.png` and `annotations/{train,val,test}.json` under `dir`, which must not
    /// exist or be empty (nothing already there is overwritten).
    @discardableResult
    public static func generate(_ c: Config, to dir: String) throws -> Summary {
        try c.validate()
        let fm = FileManager.default
        if fm.fileExists(atPath: dir), let items = try? fm.contentsOfDirectory(atPath: dir), !items.isEmpty {
            throw DataError(file: dir, "already exists and is not empty; choose a new --out folder (nothing was overwritten)")
        }
        do {
            try fm.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: dir + "/annotations", withIntermediateDirectories: true)
        } catch { throw DataError(file: dir, "cannot create the output folders: \(PathProblem.cause(of: error, path: dir))") }
        let t0 = Date()
        let failures = NSLock()
        var firstError: Error?
        let results = UnsafeMutableBufferPointer<[Object]>.allocate(capacity: c.images)
        results.initialize(repeating: [])
        defer { results.deallocate() }
        parallelFor(Parallel.threads) { t in
            var i = t
            while i < c.images {
                let (img, objs) = render(index: i, config: c)
                results[i] = objs
                do { try ImageCodec.writePNG(img, to: dir + "/images/" + String(format: "%06d.png", i)) }
                catch { failures.lock(); if firstError == nil { firstError = error }; failures.unlock() }
                i += Parallel.threads
            }
        }
        if let e = firstError { throw e }
        let perImage = Array(results)
        // Annotations, with label noise in the train split from a stream independent of rendering.
        var noiseRNG = RNG(seed: c.seed ^ 0x4E01_5E00)
        let catalog = AircraftType.catalog
        let categories = catalog.enumerated().map { COCODataset.Category(id: $0.offset + 1, name: $0.element.name, supercategory: "aircraft") }
        var files: [String: ([COCODataset.ImageInfo], [COCODataset.Annotation])] = ["train": ([], []), "val": ([], []), "test": ([], [])]
        var annId = 1, noisy = 0, total = 0
        for i in 0..<c.images {
            let s = split(i, of: c.images)
            files[s]!.0.append(.init(id: i + 1, fileName: String(format: "%06d.png", i), width: c.size, height: c.size))
            for o in perImage[i] {
                let ty = catalog[o.type]
                let b = bbox(ty, o)!.map { ($0 * 100).rounded() / 100 }
                var cat = o.type
                if s == "train" && c.labelNoise > 0 && uniform(&noiseRNG) < c.labelNoise {
                    let sib = ty.siblings.compactMap { n in catalog.firstIndex { $0.name == n } }
                    let pool = c.noiseMode == .similar && !sib.isEmpty ? sib : Array(0..<catalog.count).filter { $0 != o.type }
                    cat = pool[noiseRNG.nextInt(below: pool.count)]
                    noisy += 1
                }
                let deg = ((o.angle * 180 / .pi).truncatingRemainder(dividingBy: 360) * 100).rounded() / 100
                files[s]!.1.append(.init(id: annId, imageId: i + 1, categoryId: cat + 1, bbox: b, area: (b[2] * b[3] * 100).rounded() / 100,
                                         iscrowd: 0, ignore: nil, angle: deg, cleanCategoryId: o.type + 1))
                annId += 1; total += 1
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        for (s, (ims, anns)) in files {
            let data = try enc.encode(COCODataset.File(images: ims, annotations: anns, categories: categories))
            do { try AtomicFile.write(data, to: dir + "/annotations/\(s).json") }
            catch let e as FileError { throw DataError(file: dir + "/annotations/\(s).json", e.message) }
        }
        return Summary(images: c.images, objects: total, seconds: Date().timeIntervalSince(t0), noisyLabels: noisy)
    }
}

extension SyntheticAircraft {
    /// All 12 types on a plain apron, heading up, `cell` px each, in a 4 x 3 grid (docs/images/aircraft-types.png).
    public static func sampleSheet(cell: Int = 96) -> Image {
        let cols = 4, rows = (AircraftType.catalog.count + cols - 1) / cols
        var sheet = Image(width: cols * cell, height: rows * cell, channels: 3, fill: 140)
        for (k, ty) in AircraftType.catalog.enumerated() {
            let ox = (k % cols) * cell, oy = (k / cols) * cell
            let o = Object(type: k, cx: Double(ox) + Double(cell) / 2, cy: Double(oy) + Double(cell) / 2,
                           length: Double(cell) * 0.8 * min(1, ty.lengthMeters / 50 + 0.3), angle: -.pi / 2)
            for p in ty.polygons() {
                let poly = place(p, o, dx: 0, dy: 0)
                for y in oy..<(oy + cell) { for x in ox..<(ox + cell) where inside(poly, Double(x) + 0.5, Double(y) + 0.5) {
                    let i = sheet.index(x: x, y: y, c: 0)
                    sheet.pixels[i] = ty.color.0; sheet.pixels[i + 1] = ty.color.1; sheet.pixels[i + 2] = ty.color.2
                }}
            }
            // Cell border.
            for x in ox..<(ox + cell) { for c in 0..<3 { sheet.pixels[sheet.index(x: x, y: oy, c: c)] = 60 } }
            for y in oy..<(oy + cell) { for c in 0..<3 { sheet.pixels[sheet.index(x: ox, y: y, c: c)] = 60 } }
        }
        return sheet
    }

    /// `qat data stats`: per-class counts per split, box sizes, objects per image, measured label noise.
    public static func stats(_ dir: String, skipInvalid: Bool = false) throws -> String {
        var out: [String] = []
        var cats: [COCODataset.Category] = []
        var rows: [String: [Int: Int]] = [:]
        var sizes = [Int](repeating: 0, count: 7)      // longest side: <8, 8-16, 16-32, 32-64, 64-128, 128-256, >=256
        var perImage: [Int] = []
        var noisy = 0, trainAnns = 0, withClean = 0
        for s in ["train", "val", "test"] {
            let path = dir + "/annotations/\(s).json"
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let (d, skipped) = try COCODataset.load(path, skipInvalid: skipInvalid)
            if !skipped.isEmpty {
                out.append("\(s): skipped \(skipped.count) invalid annotations; first: \(skipped[0])")
            }
            cats = d.categories
            var counts: [Int: Int] = [:]
            var per: [Int: Int] = [:]
            for a in d.annotations {
                counts[a.categoryId, default: 0] += 1
                per[a.imageId, default: 0] += 1
                let side = max(a.bbox[2], a.bbox[3])
                sizes[min(6, max(0, side < 8 ? 0 : Int(log2(side / 8)) + 1))] += 1
                if s == "train", let c = a.cleanCategoryId { withClean += 1; trainAnns += 1; if c != a.categoryId { noisy += 1 } }
            }
            perImage += d.images.map { per[$0.id] ?? 0 }
            rows[s] = counts
        }
        guard !cats.isEmpty else { throw DataError(file: dir, "has no annotations/{train,val,test}.json; is it a qat data folder?") }
        out.append("class".padding(toLength: 26, withPad: " ", startingAt: 0) + "   train     val    test")
        for c in cats {
            out.append(c.name.padding(toLength: 26, withPad: " ", startingAt: 0)
                       + ["train", "val", "test"].map { String(format: "%8d", rows[$0]?[c.id] ?? 0) }.joined())
        }
        let labels = ["<8", "8-16", "16-32", "32-64", "64-128", "128-256", ">=256"]
        out.append("box size (longest side, px): " + zip(labels, sizes).map { "\($0): \($1)" }.joined(separator: ", "))
        if !perImage.isEmpty {
            out.append(String(format: "objects per image: mean %.2f, min %d, max %d", Double(perImage.reduce(0, +)) / Double(perImage.count), perImage.min()!, perImage.max()!))
        }
        out.append(withClean > 0 ? String(format: "measured label noise (train, category != clean_category_id): %.4f (%d of %d)", Double(noisy) / Double(trainAnns), noisy, trainAnns)
                                 : "no clean_category_id in train: label noise cannot be measured")
        return out.joined(separator: "\n")
    }
}
