import Foundation

/// A top-down aircraft type defined by geometry, in units of fuselage length (nose at x = +0.5, tail at
/// x = -0.5, y to starboard). Several pairs differ only subtly (stretch, engine count, tail) because
/// the fine-grained classifier exists for them.
public struct AircraftType: Sendable, Equatable {
    public enum Planform: String, Sendable { case swept, straight, delta, canard }
    public enum Tail: String, Sendable { case conventional, tTail = "t_tail", twinFin = "twin_fin", none }
    public enum EngineMount: String, Sendable { case wing, tail, none }

    public var name: String
    /// Fuselage width / length.
    public var width: Double
    /// Wing span / length.
    public var span: Double
    /// Leading-edge sweep in degrees.
    public var sweep: Double
    public var rootChord: Double, tipChord: Double
    /// Wing root leading edge position along x (nose 0.5, tail -0.5).
    public var wingX: Double
    public var planform: Planform
    public var tail: Tail
    public var tailSpan: Double
    public var engines: Int
    public var mount: EngineMount
    /// Body colour (RGB).
    public var color: (UInt8, UInt8, UInt8)
    /// Typical length in metres (the generator scales by it, so relative sizes stay plausible).
    public var lengthMeters: Double
    /// Types easily confused with this one (label noise mode `similar`).
    public var siblings: [String]

    public static func == (a: AircraftType, b: AircraftType) -> Bool { a.name == b.name }

    /// Twelve types; the confusable pairs are listed in `siblings`.
    public static let catalog: [AircraftType] = [
        .init(name: "narrowbody-twin", width: 0.10, span: 0.95, sweep: 25, rootChord: 0.20, tipChord: 0.06, wingX: 0.12, planform: .swept, tail: .conventional, tailSpan: 0.33, engines: 2, mount: .wing, color: (235, 235, 240), lengthMeters: 38, siblings: ["narrowbody-twin-stretch"]),
        .init(name: "narrowbody-twin-stretch", width: 0.09, span: 0.85, sweep: 25, rootChord: 0.18, tipChord: 0.05, wingX: 0.10, planform: .swept, tail: .conventional, tailSpan: 0.30, engines: 2, mount: .wing, color: (235, 235, 240), lengthMeters: 44, siblings: ["narrowbody-twin"]),
        .init(name: "widebody-twin", width: 0.09, span: 0.98, sweep: 31, rootChord: 0.19, tipChord: 0.05, wingX: 0.14, planform: .swept, tail: .conventional, tailSpan: 0.32, engines: 2, mount: .wing, color: (240, 240, 240), lengthMeters: 63, siblings: ["widebody-quad"]),
        .init(name: "widebody-quad", width: 0.09, span: 0.98, sweep: 31, rootChord: 0.19, tipChord: 0.05, wingX: 0.14, planform: .swept, tail: .conventional, tailSpan: 0.32, engines: 4, mount: .wing, color: (240, 240, 240), lengthMeters: 64, siblings: ["widebody-twin"]),
        .init(name: "regional-ttail", width: 0.09, span: 0.80, sweep: 22, rootChord: 0.16, tipChord: 0.06, wingX: 0.08, planform: .swept, tail: .tTail, tailSpan: 0.30, engines: 2, mount: .tail, color: (230, 230, 225), lengthMeters: 30, siblings: ["bizjet-ttail"]),
        .init(name: "bizjet-ttail", width: 0.10, span: 0.85, sweep: 25, rootChord: 0.16, tipChord: 0.06, wingX: 0.02, planform: .swept, tail: .tTail, tailSpan: 0.28, engines: 2, mount: .tail, color: (245, 245, 245), lengthMeters: 20, siblings: ["regional-ttail"]),
        .init(name: "turboprop-twin", width: 0.10, span: 1.10, sweep: 2, rootChord: 0.13, tipChord: 0.08, wingX: 0.10, planform: .straight, tail: .tTail, tailSpan: 0.33, engines: 2, mount: .wing, color: (225, 230, 235), lengthMeters: 27, siblings: ["turboprop-quad"]),
        .init(name: "turboprop-quad", width: 0.11, span: 1.12, sweep: 2, rootChord: 0.14, tipChord: 0.08, wingX: 0.12, planform: .straight, tail: .conventional, tailSpan: 0.35, engines: 4, mount: .wing, color: (150, 160, 140), lengthMeters: 30, siblings: ["turboprop-twin"]),
        .init(name: "fighter-delta", width: 0.12, span: 0.55, sweep: 55, rootChord: 0.55, tipChord: 0.03, wingX: 0.10, planform: .delta, tail: .none, tailSpan: 0.0, engines: 1, mount: .none, color: (120, 128, 135), lengthMeters: 15, siblings: ["fighter-canard"]),
        .init(name: "fighter-canard", width: 0.12, span: 0.55, sweep: 50, rootChord: 0.50, tipChord: 0.03, wingX: 0.05, planform: .canard, tail: .none, tailSpan: 0.0, engines: 1, mount: .none, color: (120, 128, 135), lengthMeters: 15, siblings: ["fighter-delta"]),
        .init(name: "fighter-twinfin", width: 0.16, span: 0.70, sweep: 42, rootChord: 0.32, tipChord: 0.06, wingX: 0.05, planform: .swept, tail: .twinFin, tailSpan: 0.40, engines: 2, mount: .none, color: (110, 115, 125), lengthMeters: 19, siblings: ["fighter-singlefin"]),
        .init(name: "fighter-singlefin", width: 0.13, span: 0.65, sweep: 40, rootChord: 0.30, tipChord: 0.06, wingX: 0.05, planform: .swept, tail: .conventional, tailSpan: 0.36, engines: 1, mount: .none, color: (110, 115, 125), lengthMeters: 16, siblings: ["fighter-twinfin"]),
    ]

    /// Filled polygons in the aircraft frame (x forward, y starboard), body first.
    func polygons() -> [[(Double, Double)]] {
        var polys: [[(Double, Double)]] = []
        let hw = width / 2
        // Fuselage: pointed nose, tapered tail cone.
        polys.append([(0.5, 0), (0.42, hw), (-0.35, hw), (-0.5, hw * 0.35), (-0.5, -hw * 0.35), (-0.35, -hw), (0.42, -hw)])
        let t = tan(sweep * .pi / 180)
        // Wings (any planform; sweep and chords make the difference), starboard then port.
        let semi = span / 2, le = wingX
        for s in [1.0, -1.0] {
            polys.append([(le, s * hw), (le - semi * t, s * semi), (le - semi * t - tipChord, s * semi), (le - rootChord, s * hw)])
        }
        if planform == .canard {
            for s in [1.0, -1.0] { polys.append([(0.32, s * hw), (0.24, s * span * 0.2), (0.20, s * span * 0.2), (0.22, s * hw)]) }
        }
        // Horizontal tail (a T-tail sits at the very end and looks narrower from above).
        if tail != .none {
            let x0 = tail == .tTail ? -0.40 : -0.36, semi = tailSpan / 2, ts = t * 0.8 + 0.1
            for s in [1.0, -1.0] { polys.append([(x0, 0), (x0 - semi * ts, s * semi), (x0 - semi * ts - 0.05, s * semi), (x0 - 0.1, 0)]) }
        }
        if tail == .twinFin {
            for s in [-1.0, 1.0] { polys.append([(-0.28, s * hw * 0.9), (-0.46, s * hw * 1.1), (-0.48, s * hw * 0.95), (-0.32, s * hw * 0.75)]) }
        }
        // Engines: pods under the wings (inboard first) or on the rear fuselage.
        let pod = max(0.025, width * 0.35), podLen = 0.12
        switch mount {
        case .wing:
            let stations: [Double] = engines == 4 ? [0.35, 0.68] : [0.36]
            for f in stations {
                let y = f * span / 2, x = wingX - y * t + 0.07
                for s in [-1.0, 1.0] { polys.append([(x, s * y - pod / 2), (x, s * y + pod / 2), (x - podLen, s * y + pod / 2), (x - podLen, s * y - pod / 2)]) }
            }
        case .tail:
            for s in [-1.0, 1.0] {
                let y = s * (hw + pod * 0.6)
                polys.append([(-0.22, y - pod / 2), (-0.22, y + pod / 2), (-0.34, y + pod / 2), (-0.34, y - pod / 2)])
            }
        case .none: break
        }
        return polys
    }
}
