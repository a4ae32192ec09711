import Foundation
import Recipes
import Files

/// `qat export notebook DIR --out NAME.ipynb [--html]`: an nbformat-4 notebook for a run directory or a
/// collected sweep: the summary first, then the metrics as data, plots already rendered as SVG outputs
/// (it reads without running) with Python cells that redraw each plot with matplotlib from the embedded
/// data, and last the long sweep file and resolved recipes, folded (a markdown cell with its source
/// hidden in Jupyter; a closed `<details>` in the HTML page).
public enum NotebookExport {
    struct Plot { var title: String; var svg: String; var python: String }
    struct Document {
        var title: String; var intro: [String]; var data: [String: Any]; var plots: [Plot]; var tables: [String]
        /// PNG figures a task wrote into the run directory (title, base64).
        var images: [(String, String)] = []
        /// Long reference sections (sweep file, resolved recipes), each starting with a "## " heading:
        /// after everything else, folded.
        var appendix: [String] = []
    }

    /// Writes the notebook (and with `html` a static page beside it); returns the written paths. Neither
    /// may replace a checkpoint, recipe or metrics file (`ProtectedFiles`).
    public static func export(dir: String, out: String, html: Bool) throws -> [String] {
        let doc: Document
        let fm = FileManager.default
        let htmlPath = (out.hasSuffix(".ipynb") ? String(out.dropLast(6)) : out) + ".html"
        do {
            try ProtectedFiles.check(output: out)
            if html { try ProtectedFiles.check(output: htmlPath) }
        } catch { throw TrainingError("--out: \(error)") }
        if dir.hasSuffix(".json"), let d = fm.contents(atPath: dir), let r = try? JSONCoding.decoder().decode(PruneSensitivity.Report.self, from: d) {
            doc = sensitivityDocument(r, file: dir)
        } else if fm.fileExists(atPath: dir + "/summary.json") { doc = try sweepDocument(dir) }
        else if fm.fileExists(atPath: dir + "/recipe.resolved.yaml") { doc = try runDocument(dir) }
        else if fm.fileExists(atPath: dir) {
            throw TrainingError("\(dir) is neither a run directory (no recipe.resolved.yaml) nor a collected sweep (no summary.json: run `qat sweep SWEEP.yaml --collect` first)")
        } else { throw TrainingError("\(dir) does not exist") }
        let parent = (out as NSString).deletingLastPathComponent
        if !parent.isEmpty { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) }
        let nb = notebook(doc)
        let data = try JSONSerialization.data(withJSONObject: nb, options: [.prettyPrinted, .sortedKeys])
        do {
            try AtomicFile.write(data, to: out)
            if html { try AtomicFile.write(page(doc), to: htmlPath) }
        } catch { throw TrainingError("\(error)") }
        return html ? [out, htmlPath] : [out]
    }

    static func lines(_ s: String) -> [String] {
        var parts = s.components(separatedBy: "\n").map { $0 + "\n" }
        if let last = parts.last { parts[parts.count - 1] = String(last.dropLast()) }
        if parts.last == "" { parts.removeLast() }
        return parts
    }

    static func notebook(_ doc: Document) -> [String: Any] {
        var cells: [[String: Any]] = []
        func markdown(_ s: String, folded: Bool = false) {
            // JupyterLab and Notebook 7 honour jupyter.source_hidden: the cell shows as a fold marker.
            let meta: [String: Any] = folded ? ["jupyter": ["source_hidden": true]] : [:]
            cells.append(["cell_type": "markdown", "id": "cell-\(cells.count)", "metadata": meta, "source": lines(s)])
        }
        func code(_ s: String, outputs: [[String: Any]] = []) {
            cells.append(["cell_type": "code", "id": "cell-\(cells.count)", "metadata": [String: Any](), "source": lines(s),
                          "execution_count": NSNull(), "outputs": outputs])
        }
        markdown("# \(doc.title)\n\n" + doc.intro.joined(separator: "\n\n"))
        for t in doc.tables { markdown(t) }
        let json = String(data: (try? JSONSerialization.data(withJSONObject: doc.data, options: [.sortedKeys])) ?? Data("{}".utf8), encoding: .utf8)!
        code("import json\nimport matplotlib.pyplot as plt\n\n# The run's metrics, embedded so this notebook needs no other file.\ndata = json.loads(r'''\(json)''')")
        for p in doc.plots {
            markdown("## \(p.title)")
            code(p.python, outputs: [["output_type": "display_data", "metadata": [String: Any](),
                                      "data": ["image/svg+xml": lines(p.svg), "text/plain": ["<Figure: \(p.title)>"]]]])
        }
        for (title, png) in doc.images {
            markdown("## \(title)")
            code("# figures/\(title).png of the run directory, embedded as this cell's output.",
                 outputs: [["output_type": "display_data", "metadata": [String: Any](), "data": ["image/png": png, "text/plain": ["<Image: \(title)>"]]]])
        }
        for a in doc.appendix { markdown(a, folded: true) }
        return ["nbformat": 4, "nbformat_minor": 5, "cells": cells,
                "metadata": ["kernelspec": ["name": "python3", "display_name": "Python 3", "language": "python"],
                             "language_info": ["name": "python"]]]
    }

    static func page(_ doc: Document) -> String {
        func esc(_ s: String) -> String { SVGChart.esc(s) }
        var s = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>\(esc(doc.title))</title>\n"
        s += "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em}pre{background:#f6f6f6;padding:1em;overflow:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>\n"
        s += "<h1>\(esc(doc.title))</h1>\n"
        for p in doc.intro { s += markdownToHTML(p) }
        for t in doc.tables { s += markdownToHTML(t) }
        for p in doc.plots { s += "<h2>\(esc(p.title))</h2>\n\(p.svg)\n" }
        for (title, png) in doc.images { s += "<h2>\(esc(title))</h2>\n<img src=\"data:image/png;base64,\(png)\" alt=\"\(esc(title))\">\n" }
        for a in doc.appendix {
            let head = a.components(separatedBy: "\n").first ?? ""
            let title = head.hasPrefix("## ") ? String(head.dropFirst(3)) : "Details"
            s += "<details><summary>\(esc(title).replacingOccurrences(of: "`", with: ""))</summary>\n"
            s += markdownToHTML(String(a.dropFirst(head.hasPrefix("## ") ? head.count : 0))) + "</details>\n"
        }
        return s + "</body></html>\n"
    }

    /// The little markdown these documents use: tables, fenced code, headings, paragraphs.
    static func markdownToHTML(_ md: String) -> String {
        var out = "", inCode = false, table: [[String]] = []
        func flushTable() {
            guard !table.isEmpty else { return }
            out += "<table>\n"
            for (i, row) in table.enumerated() where !(row.allSatisfy { $0.allSatisfy { $0 == "-" || $0 == ":" } }) {
                let tag = i == 0 ? "th" : "td"
                out += "<tr>" + row.map { "<\(tag)>\(SVGChart.esc($0))</\(tag)>" }.joined() + "</tr>\n"
            }
            out += "</table>\n"; table = []
        }
        for line in md.components(separatedBy: "\n") {
            if line.hasPrefix("```") { flushTable(); out += inCode ? "</pre>\n" : "<pre>"; inCode.toggle(); continue }
            if inCode { out += SVGChart.esc(line) + "\n"; continue }
            if line.hasPrefix("|") {
                table.append(line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast().map { $0.trimmingCharacters(in: .whitespaces) })
                continue
            }
            flushTable()
            if line.hasPrefix("## ") { out += "<h2>\(SVGChart.esc(String(line.dropFirst(3))))</h2>\n" }
            else if line.hasPrefix("# ") { out += "<h2>\(SVGChart.esc(String(line.dropFirst(2))))</h2>\n" }
            else if !line.isEmpty { out += "<p>\(SVGChart.esc(line).replacingOccurrences(of: "`", with: ""))</p>\n" }
        }
        flushTable()
        return out
    }

    // MARK: a run

    /// Rows for the embedded JSON: non-finite numbers (a diverged step, a missing metric) as null.
    static func jsonRows(_ rows: [[Double]]) -> [[Any]] { rows.map { $0.map { $0.isFinite ? $0 as Any : NSNull() } } }

    /// Python for a per-class bar chart of `final['per_class_<name>']`.
    static func perClassPython(_ key: String, _ title: String) -> String {
        "vals = [100 * a if a >= 0 else float('nan') for a in data['final']['\(key)']]\nplt.figure(figsize=(9, 4.5))\nplt.bar(data['classes'], vals)\nplt.xticks(rotation=35, ha='right'); plt.ylabel('%'); plt.title('\(title)'); plt.tight_layout(); plt.show()"
    }

    /// A pruning sensitivity report (`qat prune sensitivity --out S.json`): the curves, then the table.
    static func sensitivityDocument(_ r: PruneSensitivity.Report, file: String) -> Document {
        let data: [String: Any] = ["ratios": r.ratios, "base": r.base, "metric": r.metric,
                                   "curves": r.curves.map { ["group": $0.group, "channels": $0.channels, "metric": $0.metric] as [String: Any] }]
        let plot = Plot(title: "Pruning sensitivity", svg: PruneSensitivity.svg(r), python: """
            plt.figure(figsize=(8, 4.5))
            for c in data['curves']:
                plt.plot(data['ratios'], [100 * m for m in c['metric']], marker='o', label=c['group'])
            plt.axhline(100 * data['base'], color='k', linestyle=':', label='unpruned')
            plt.xlabel('ratio of the group\\'s channels removed'); plt.ylabel(data['metric'] + ' (%)')
            plt.title('Pruning sensitivity'); plt.legend(fontsize=6, ncol=2); plt.show()
            """)
        let intro = [String(format: "Each channel group of `%@` pruned alone (criterion %@%@), %@ on %@ against the ratio; unpruned: %.2f%%.",
                            r.checkpoint, r.criterion, r.bnBatches > 0 ? ", BatchNorm re-estimated on \(r.bnBatches) batches" : "",
                            r.metric, r.split, 100 * r.base)]
        return Document(title: "Pruning sensitivity: \((file as NSString).lastPathComponent)", intro: intro, data: data, plots: [plot],
                        tables: ["```\n" + PruneSensitivity.table(r) + "```"])
    }

    /// A run: loss terms over steps, every evaluation metric over epochs, and per-class bars of each
    /// per-class metric of the final evaluation, whatever the task reports.
    static func runDocument(_ dir: String) throws -> Document {
        let recipeText = (try? String(contentsOfFile: dir + "/recipe.resolved.yaml", encoding: .utf8)) ?? ""
        let recipe = try? Recipe.parse(recipeText)
        var trainRecords: [[String: Any]] = [], evalRecords: [[String: Any]] = []
        var final: [String: Any]? = nil
        if let text = try? String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
                switch o["type"] as? String {
                case "train": if o["loss"] is Double { trainRecords.append(o) }
                case "eval": evalRecords.append(o)
                case "final": final = o
                default: break
                }
            }
        }
        func number(_ o: [String: Any], _ k: String) -> Double { (o[k] as? Double) ?? (o[k] as? Int).map(Double.init) ?? .nan }
        // Loss terms appear beside the total when there are several.
        let terms = Set(trainRecords.flatMap { $0.keys.filter { $0.hasPrefix("loss_") } }).sorted()
        let trainColumns = ["step", "loss", "lr"] + (terms.count > 1 ? terms : [])
        let train = trainRecords.map { o in trainColumns.map { number(o, $0) } }
        let metricNames = Sweep.ordered(Set(evalRecords.flatMap { o in o.keys.filter { !["type", "step", "epoch", "split"].contains($0) && !$0.hasPrefix("per_class_") && o[$0] is Double } }),
                                        preferred: Recipe.options(task: recipe?.task ?? "classification").evalMetrics)
        let evalColumns = ["epoch", "step"] + metricNames
        let eval = evalRecords.map { o in evalColumns.map { number(o, $0) } }
        let classes: [String] = (try? JSONCoding.decoder().decode(FinalReport.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/final.json"))))?.classes ?? []
        let perClass = (final ?? [:]).compactMap { k, v in k.hasPrefix("per_class_") ? (v as? [Double]).map { (k, $0) } : nil }.sorted { $0.0 < $1.0 }
        let k = perClass.first?.1.count ?? 0
        let names = classes.count == k || k == 0 ? classes : (0..<k).map { "class \($0)" }
        var data: [String: Any] = ["train": jsonRows(train), "eval": jsonRows(eval), "train_columns": trainColumns, "eval_columns": evalColumns]
        if let final { data["final"] = final }
        data["classes"] = names
        var plots: [Plot] = []
        let lossColumns = trainColumns.indices.filter { trainColumns[$0].hasPrefix("loss") }
        plots.append(Plot(title: "Training loss",
                          svg: SVGChart.line(lossColumns.map { i in .init(name: trainColumns[i], points: train.map { ($0[0], $0[i]) }) }, title: "Training loss", xlabel: "step", ylabel: "loss"),
                          python: """
                          cols = data['train_columns']
                          plt.figure(figsize=(8, 4.5))
                          for i, name in enumerate(cols):
                              if name.startswith('loss'):
                                  plt.plot([r[0] for r in data['train']], [float('nan') if r[i] is None else r[i] for r in data['train']], label=name)
                          plt.xlabel('step'); plt.ylabel('loss'); plt.title('Training loss'); plt.legend(); plt.show()
                          """))
        let metricColumns = evalColumns.indices.filter { $0 >= 2 && !evalColumns[$0].hasPrefix("loss") }
        plots.append(Plot(title: "Evaluation metrics",
                          svg: SVGChart.line(metricColumns.map { i in .init(name: evalColumns[i], points: eval.map { ($0[0], 100 * $0[i]) }) },
                                             title: "Evaluation metrics (\(recipe?.eval.split ?? "eval") split)", xlabel: "epoch", ylabel: "%"),
                          python: """
                          cols = data['eval_columns']
                          plt.figure(figsize=(8, 4.5))
                          for i, name in enumerate(cols):
                              if i >= 2 and not name.startswith('loss'):
                                  plt.plot([r[0] for r in data['eval']], [float('nan') if r[i] is None else 100 * r[i] for r in data['eval']], marker='o', label=name)
                          plt.xlabel('epoch'); plt.ylabel('%'); plt.title('Evaluation metrics'); plt.legend(); plt.show()
                          """))
        for (key, values) in perClass {
            let metric = key.dropFirst("per_class_".count)
            plots.append(Plot(title: "Per-class \(metric) (final split)",
                              svg: SVGChart.bars(categories: names, [.init(name: String(metric), points: values.enumerated().map { (Double($0.offset), $0.element < 0 ? .nan : 100 * $0.element) })],
                                                 title: "Per-class \(metric)", ylabel: "%"),
                              python: perClassPython(key, "Per-class \(metric)")))
        }
        var intro = ["Run directory: `\(dir)`."]
        if let final {
            let skip: Set = ["type", "step", "seconds", "best", "best_step", "split"]
            let values = final.compactMap { k, v in skip.contains(k) || k.hasPrefix("per_class_") ? nil : (v as? Double).map { (k, $0) } }
            let text = Sweep.ordered(Set(values.map(\.0)), preferred: [recipe?.eval.metric ?? ""] + Recipe.options(task: recipe?.task ?? "classification").evalMetrics)
                .map { n in TaskMetrics.format(n, values.first { $0.0 == n }!.1) }.joined(separator: ", ")
            intro.append("Final (best.h5 on the \((final["split"] as? String) ?? "?") split): \(text).")
        }
        // Figures the task wrote at the end of the run: named curves and PNG images.
        if let d = FileManager.default.contents(atPath: dir + "/curves.json"),
           let c = try? JSONSerialization.jsonObject(with: d) as? [String: Any], let series = c["series"] as? [[String: Any]] {
            let title = c["title"] as? String ?? "Curves", xl = c["xlabel"] as? String ?? "x", yl = c["ylabel"] as? String ?? "y"
            data["curves"] = c
            plots.append(Plot(title: title,
                              svg: SVGChart.line(series.map { s in
                                  let x = s["x"] as? [Double] ?? [], y = s["y"] as? [Double] ?? []
                                  return .init(name: s["name"] as? String ?? "?", points: Array(zip(x, y)))
                              }, title: title, xlabel: xl, ylabel: yl),
                              python: """
                              c = data['curves']
                              plt.figure(figsize=(8, 5))
                              for s in c['series']:
                                  plt.plot(s['x'], s['y'], label=s['name'])
                              plt.xlabel(c['xlabel']); plt.ylabel(c['ylabel']); plt.title(c['title']); plt.legend(fontsize=7); plt.show()
                              """))
        }
        let figures = ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/figures")) ?? []).filter { $0.hasSuffix(".png") }.sorted()
        let images = figures.compactMap { f in FileManager.default.contents(atPath: dir + "/figures/" + f).map { (String(f.dropLast(4)), $0.base64EncodedString()) } }
        let name = recipe?.name ?? (dir as NSString).lastPathComponent
        return Document(title: "Run \(name)", intro: intro, data: data, plots: plots, tables: [], images: images,
                        appendix: ["## Recipe (resolved)\n\n```yaml\n\(recipeText)```"])
    }

    // MARK: a sweep

    /// A collected sweep: the recipes' `eval.metric` per variant (mean ± std over seeds) and against
    /// weight bits, and per-class bars of each per-class metric.
    static func sweepDocument(_ dir: String) throws -> Document {
        let rows: [Sweep.SummaryRow]
        do { rows = try JSONCoding.decoder().decode([Sweep.SummaryRow].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/summary.json"))) }
        catch { throw TrainingError("\(dir)/summary.json cannot be read (\(error)); it may come from an older qat: rerun `qat sweep SWEEP.yaml --collect` to rewrite it") }
        let md = (try? String(contentsOfFile: dir + "/summary.md", encoding: .utf8)) ?? ""
        let variants = rows.reduce(into: [String]()) { if !$0.contains($1.variant) { $0.append($1.variant) } }
        let grids = rows.reduce(into: [String]()) { if !$0.contains($1.grid) { $0.append($1.grid) } }
        let metric = rows.first?.metric ?? "metric", split = rows.first?.split ?? "final"
        let enc = JSONCoding.encoder(pretty: false)
        let rowsJSON = (try? JSONSerialization.jsonObject(with: enc.encode(rows))) ?? []
        let data: [String: Any] = ["rows": rowsJSON, "variants": variants, "grids": grids, "metric": metric]
        func row(_ v: String, _ g: String) -> Sweep.SummaryRow? { rows.first { $0.variant == v && $0.grid == g } }
        var plots: [Plot] = []
        let barSeries = grids.map { g in
            SVGChart.Series(name: g.isEmpty ? metric : g, points: variants.enumerated().map { (Double($0.offset), 100 * (row($0.element, g)?.mean ?? .nan)) },
                            errors: variants.map { 100 * (row($0, g)?.std ?? 0) })
        }
        plots.append(Plot(title: "\(split.capitalized) \(metric) per variant (mean ± std over seeds)",
                          svg: SVGChart.bars(categories: variants, barSeries, title: "\(split.capitalized) \(metric) per variant", ylabel: "\(metric) (%)"),
                          python: """
                          import numpy as np
                          rows, variants, grids, metric = data['rows'], data['variants'], data['grids'], data['metric']
                          x = np.arange(len(variants)); w = 0.8 / max(len(grids), 1)
                          plt.figure(figsize=(9, 4.5))
                          for i, g in enumerate(grids):
                              r = {row['variant']: row for row in rows if row['grid'] == g}
                              plt.bar(x + i * w, [100 * r[v]['mean'] if v in r else np.nan for v in variants], w,
                                      yerr=[100 * r[v]['std'] if v in r else 0 for v in variants], capsize=3, label=g or metric)
                          plt.xticks(x + w * (len(grids) - 1) / 2, variants, rotation=20); plt.ylabel(metric + ' (%)'); plt.legend(); plt.tight_layout(); plt.show()
                          """))
        let bitSeries = grids.map { g in
            let rs = rows.filter { $0.grid == g }
            return SVGChart.Series(name: g.isEmpty ? metric : g, points: rs.map { (Double($0.weightBits), 100 * $0.mean) }, errors: rs.map { 100 * $0.std },
                                   labels: rs.map(\.variant))
        }
        plots.append(Plot(title: "\(metric.capitalized) vs weight bits (labels: variants)",
                          svg: SVGChart.line(bitSeries.map { s in var t = s; let order = s.points.indices.sorted { s.points[$0].0 < s.points[$1].0 }
                                                              t.points = order.map { s.points[$0] }; t.errors = order.map { s.errors![$0] }; t.labels = order.map { s.labels![$0] }; return t },
                                             title: "\(metric.capitalized) vs weight bits", xlabel: "weight bits (32 = FP32)", ylabel: "\(metric) (%)", logX: true, connect: false),
                          python: """
                          plt.figure(figsize=(8, 4.5))
                          for g in data['grids']:
                              rs = sorted([r for r in data['rows'] if r['grid'] == g], key=lambda r: r['weightBits'])
                              plt.errorbar([r['weightBits'] for r in rs], [100 * r['mean'] for r in rs], yerr=[100 * r['std'] for r in rs],
                                           marker='o', linestyle='none', capsize=3, label=g or data['metric'])
                              for r in rs:
                                  plt.annotate(r['variant'], (r['weightBits'], 100 * r['mean']), fontsize=7)
                          plt.xscale('log', base=2); plt.xlabel('weight bits (32 = FP32)'); plt.ylabel(data['metric'] + ' (%)'); plt.legend(); plt.show()
                          """))
        let perClassNames = Set(rows.flatMap { $0.perClass.keys }).sorted()
        for name in perClassNames {
            for g in grids {
                let rs = rows.filter { $0.grid == g && !($0.perClass[name] ?? []).isEmpty }
                guard let k = rs.first?.perClass[name]?.count else { continue }
                let cats = rs[0].classes.count == k ? rs[0].classes : (0..<k).map { "class \($0)" }
                let title = "Per-class \(split) \(name)\(g.isEmpty ? "" : " (\(g))")"
                plots.append(Plot(title: title,
                                  svg: SVGChart.bars(categories: cats, rs.map { r in .init(name: r.variant, points: (r.perClass[name] ?? []).enumerated().map { (Double($0.offset), 100 * $0.element) }) },
                                                     title: title, ylabel: "\(name) (%)"),
                                  python: """
                                  import numpy as np
                                  rs = [r for r in data['rows'] if r['grid'] == \(String(reflecting: g)) and r['perClass'].get(\(String(reflecting: name)))]
                                  k = len(rs[0]['perClass'][\(String(reflecting: name))]); x = np.arange(k); w = 0.8 / len(rs)
                                  plt.figure(figsize=(10, 4.5))
                                  for i, r in enumerate(rs):
                                      plt.bar(x + i * w, [100 * a for a in r['perClass'][\(String(reflecting: name))]], w, label=r['variant'])
                                  plt.xticks(x + w * (len(rs) - 1) / 2, rs[0]['classes'], rotation=35, ha='right'); plt.ylabel(\(String(reflecting: name + " (%)"))); plt.legend(fontsize=7); plt.tight_layout(); plt.show()
                                  """))
            }
        }
        var appendix: [String] = []
        if let sweepText = try? String(contentsOfFile: dir + "/sweep.yaml", encoding: .utf8) {
            appendix.append("## Sweep file\n\n```yaml\n\(sweepText)```")
        }
        for v in variants {
            guard let first = rows.first(where: { $0.variant == v })?.dirs.first,
                  let text = try? String(contentsOfFile: first + "/recipe.resolved.yaml", encoding: .utf8) else { continue }
            appendix.append("## Resolved recipe of \(v) (`\(first)`)\n\n```yaml\n\(text)```")
        }
        return Document(title: "Sweep \((dir as NSString).lastPathComponent)", intro: ["Sweep directory: `\(dir)`."], data: data, plots: plots, tables: [md],
                        appendix: appendix)
    }
}
