"""The thesis table of the detector-noise ablation (docs/RESULTS.md) from a collected sweep.

Usage: python3 scripts/protocol/detector_noise_table.py runs/sweeps/detector-noise/summary.json
(after `qat sweep recipes/ablations/detector-noise.yaml --collect`). Standard library only.

Prints markdown: per variant and label-noise level, mean +- sample std over seeds (in %) of the test
split's fine-grained mAP50, mAP50:95, class-agnostic AP50 (merged), AP50 of the head and tail thirds of
the types (`ap50_head`, `ap50_tail`), and the wrong-label flag precision / recall where measured; then
the drops from clean to 40% noise per variant.
"""
import json, sys

rows = json.load(open(sys.argv[1]))
COLS = [("map50", "mAP50"), ("map", "mAP"), ("agnostic_map50", "agnostic AP50"), ("ap50_head", "head AP50"),
        ("ap50_tail", "tail AP50"), ("noise_flag_precision", "flag P"), ("noise_flag_recall", "flag R")]


def cell(r, k):
    m = r["metrics"].get(k)
    if not m or m["mean"] is None or m["mean"] != m["mean"]:
        return "-"
    return f"{100 * m['mean']:.1f} ± {100 * m['std']:.1f}"


def grid(r):
    return r["grid"].replace("label_noise=", "")


detector = [r for r in rows if "map50" in r["metrics"]]
print("| variant | noise | seeds | " + " | ".join(c[1] for c in COLS) + " | s/run |")
print("|---|---|---|" + "---|" * len(COLS) + "---|")
for r in detector:
    print(f"| {r['variant']} | {grid(r)} | {r['seeds']} | " + " | ".join(cell(r, k) for k, _ in COLS) + f" | {r['secondsMean']:.0f} |")

print()
print("| variant | mAP50 clean | mAP50 at 0.4 | drop |")
print("|---|---|---|---|")
by = {(r["variant"], grid(r)): r for r in detector}
for v in dict.fromkeys(r["variant"] for r in detector):
    a, b = by.get((v, "0.0")), by.get((v, "0.4"))
    if a and b:
        ma, mb = a["metrics"]["map50"]["mean"], b["metrics"]["map50"]["mean"]
        print(f"| {v} | {100 * ma:.1f} | {100 * mb:.1f} | {100 * (ma - mb):.1f} |")
