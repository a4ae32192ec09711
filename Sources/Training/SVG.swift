import Foundation

/// Small self-contained SVG charts (line, grouped bars with error bars, labelled scatter) for notebook
/// and HTML export, so exported documents show their plots without running anything.
public enum SVGChart {
    public struct Series {
        public var name: String
        public var points: [(Double, Double)]
        public var errors: [Double]?
        public var labels: [String]?
        public init(name: String, points: [(Double, Double)], errors: [Double]? = nil, labels: [String]? = nil) {
            self.name = name; self.points = points; self.errors = errors; self.labels = labels
        }
    }

    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    static let w = 640.0, h = 360.0, left = 64.0, right = 150.0, top = 36.0, bottom = 56.0

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// About five round tick values covering lo...hi.
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        guard hi > lo else { return [lo] }
        let raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        var t = (lo / step).rounded(.up) * step, out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    static func tickText(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e6 { return String(Int(v)) }
        return String(format: "%g", (v * 1e6).rounded() / 1e6)
    }

    static func frame(_ title: String, _ xlabel: String, _ ylabel: String, body: String) -> String {
        """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" viewBox="0 0 \(Int(w)) \(Int(h))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f((left + w - right) / 2))" y="20" text-anchor="middle" font-size="14">\(esc(title))</text>
        <text x="\(f((left + w - right) / 2))" y="\(f(h - 12))" text-anchor="middle">\(esc(xlabel))</text>
        <text x="16" y="\(f((top + h - bottom) / 2))" text-anchor="middle" transform="rotate(-90 16 \(f((top + h - bottom) / 2)))">\(esc(ylabel))</text>
        \(body)</svg>
        """
    }

    static func yAxis(_ lo: Double, _ hi: Double, _ y: (Double) -> Double) -> String {
        var s = ""
        for t in ticks(lo, hi) {
            s += "<line x1=\"\(f(left))\" x2=\"\(f(w - right))\" y1=\"\(f(y(t)))\" y2=\"\(f(y(t)))\" stroke=\"#e0e0e0\"/>"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(y(t) + 4))\" text-anchor=\"end\">\(tickText(t))</text>\n"
        }
        s += "<line x1=\"\(f(left))\" x2=\"\(f(left))\" y1=\"\(f(top))\" y2=\"\(f(h - bottom))\" stroke=\"black\"/>"
        s += "<line x1=\"\(f(left))\" x2=\"\(f(w - right))\" y1=\"\(f(h - bottom))\" y2=\"\(f(h - bottom))\" stroke=\"black\"/>\n"
        return s
    }

    static func legend(_ names: [String]) -> String {
        var s = ""
        for (i, n) in names.enumerated() {
            let y = top + 14 + Double(i) * 16
            s += "<rect x=\"\(f(w - right + 12))\" y=\"\(f(y - 9))\" width=\"10\" height=\"10\" fill=\"\(palette[i % palette.count])\"/>"
            s += "<text x=\"\(f(w - right + 26))\" y=\"\(f(y))\">\(esc(n))</text>\n"
        }
        return s
    }

    static func range(_ values: [Double], includeZero: Bool = false) -> (Double, Double) {
        let v = values.filter(\.isFinite)
        var lo = v.min() ?? 0, hi = v.max() ?? 1
        if includeZero { lo = min(lo, 0) }
        if hi == lo { hi = lo + 1 }
        let pad = (hi - lo) * 0.05
        return (includeZero && lo == 0 ? 0 : lo - pad, hi + pad)
    }

    /// Lines through each series' points (x numeric).
    /// `connect` false draws markers only (a scatter).
    public static func line(_ series: [Series], title: String, xlabel: String, ylabel: String, logX: Bool = false, connect: Bool = true) -> String {
        let tx: (Double) -> Double = { logX ? log2(max($0, 1e-12)) : $0 }
        let xs = series.flatMap { $0.points.map { tx($0.0) } }, ys = series.flatMap { s in s.points.enumerated().flatMap { i, p in
            let e = s.errors?[i] ?? 0; return [p.1 - e, p.1 + e] } }
        let (x0, x1) = range(xs), (y0, y1) = range(ys)
        let X = { (v: Double) in left + (tx(v) - x0) / (x1 - x0) * (w - left - right) }
        let Y = { (v: Double) in h - bottom - (v - y0) / (y1 - y0) * (h - top - bottom) }
        var body = yAxis(y0, y1, Y)
        let xt: [Double] = logX ? Array(Set(series.flatMap { $0.points.map(\.0) })).sorted() : ticks(x0, x1)
        for t in xt {
            let px = logX ? X(t) : left + (t - x0) / (x1 - x0) * (w - left - right)
            body += "<text x=\"\(f(px))\" y=\"\(f(h - bottom + 16))\" text-anchor=\"middle\">\(tickText(t))</text>"
        }
        for (i, s) in series.enumerated() {
            let c = palette[i % palette.count]
            let pts = s.points.filter { $0.1.isFinite }
            if connect && pts.count > 1 { body += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"1.6\" points=\"\(pts.map { "\(f(X($0.0))),\(f(Y($0.1)))" }.joined(separator: " "))\"/>\n" }
            for (j, p) in s.points.enumerated() where p.1.isFinite {
                if pts.count <= 40 { body += "<circle cx=\"\(f(X(p.0)))\" cy=\"\(f(Y(p.1)))\" r=\"3\" fill=\"\(c)\"/>" }
                if let e = s.errors?[j], e > 0 { body += "<line x1=\"\(f(X(p.0)))\" x2=\"\(f(X(p.0)))\" y1=\"\(f(Y(p.1 - e)))\" y2=\"\(f(Y(p.1 + e)))\" stroke=\"\(c)\"/>" }
                if let l = s.labels?[j] { body += "<text x=\"\(f(X(p.0) + 5))\" y=\"\(f(Y(p.1) - 5))\" fill=\"\(c)\" font-size=\"9\">\(esc(l))</text>" }
            }
            body += "\n"
        }
        return frame(title, xlabel, ylabel, body: body + legend(series.map(\.name)))
    }

    /// Grouped bars: one group per category, one bar per series (`points[i].1` is category i's value).
    public static func bars(categories: [String], _ series: [Series], title: String, ylabel: String, xlabel: String = "") -> String {
        let ys = series.flatMap { s in s.points.enumerated().map { i, p in p.1 + (s.errors?[i] ?? 0) } }
        let (y0, y1) = range(ys, includeZero: true)
        let Y = { (v: Double) in h - bottom - (v - y0) / (y1 - y0) * (h - top - bottom) }
        var body = yAxis(y0, y1, Y)
        let groupW = (w - left - right) / Double(max(categories.count, 1))
        let barW = groupW * 0.8 / Double(max(series.count, 1))
        for (ci, cat) in categories.enumerated() {
            let gx = left + Double(ci) * groupW + groupW * 0.1
            let label = categories.count > 8 ? "<text x=\"\(f(gx + groupW * 0.4))\" y=\"\(f(h - bottom + 10))\" text-anchor=\"end\" font-size=\"9\" transform=\"rotate(-35 \(f(gx + groupW * 0.4)) \(f(h - bottom + 10)))\">\(esc(cat))</text>"
                : "<text x=\"\(f(gx + groupW * 0.4))\" y=\"\(f(h - bottom + 16))\" text-anchor=\"middle\">\(esc(cat))</text>"
            body += label
            for (si, s) in series.enumerated() where ci < s.points.count {
                let v = s.points[ci].1
                guard v.isFinite else { continue }
                let x = gx + Double(si) * barW
                body += "<rect x=\"\(f(x))\" y=\"\(f(min(Y(v), Y(0))))\" width=\"\(f(barW * 0.92))\" height=\"\(f(abs(Y(0) - Y(v))))\" fill=\"\(palette[si % palette.count])\"/>"
                if let e = s.errors?[ci], e > 0 {
                    body += "<line x1=\"\(f(x + barW * 0.46))\" x2=\"\(f(x + barW * 0.46))\" y1=\"\(f(Y(v - e)))\" y2=\"\(f(Y(v + e)))\" stroke=\"black\"/>"
                }
            }
            body += "\n"
        }
        return frame(title, xlabel, ylabel, body: body + legend(series.map(\.name)))
    }
}
