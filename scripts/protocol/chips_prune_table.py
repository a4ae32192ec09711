#!/usr/bin/env python3
"""Issue 15: the chips prune -> fine-tune -> QAT runs (scripts/protocol/chips_prune.sh) against the chips-qat
sweep's unpruned controls, test accuracy mean and sample std over the seeds each row has.

  python3 scripts/protocol/chips_prune_table.py [--runs runs/prune/chips/m0.5-ft15] [--control fp32-finetune-15ep] [--sweep runs/sweeps/chips-qat] [--out FILE.md]
"""
import argparse, glob, json, os, statistics


def final(d):
    f = os.path.join(d, "final.json")
    return json.load(open(f))["final"]["accuracy"] if os.path.isfile(f) else None


def stat(xs):
    xs = [100 * x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f} (n={len(xs)})" if len(xs) > 1 else f"{xs[0]:.2f} (n=1)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/prune/chips/m0.5-ft15")
    ap.add_argument("--control", default="fp32-finetune-15ep", help="the sweep's unpruned FP32 control with the same fine-tuning")
    ap.add_argument("--sweep", default="runs/sweeps/chips-qat")
    ap.add_argument("--out", default="notebooks-export/chips-prune-summary.md")
    a = ap.parse_args()
    seeds = sorted({os.path.basename(p) for p in glob.glob(os.path.join(a.runs, "*", "seed*"))})
    rows = ["| model | MACs kept | params kept | FP32 speed-up b1 / b8 | val acc. right after pruning | fine-tuned FP32 test acc. | then QAT W8A8 test acc. | or 5 more FP32 epochs (QAT's schedule) |",
            "|---|---|---|---|---|---|---|---|"]
    base = [final(os.path.join(a.sweep, "fp32", s)) for s in seeds]
    ctrl = [final(os.path.join(a.sweep, a.control, s)) for s in seeds]
    w8 = [final(os.path.join(a.sweep, "qat-w8a8", s)) for s in seeds]
    rows.append(f"| unpruned (FP32 {stat(base)}; control `{a.control}`; QAT: `qat-w8a8`) | 1.00 | 1.00 | 1.00 / 1.00 | - | {stat(ctrl)} | {stat(w8)} | - |")
    for c in sorted(os.listdir(a.runs)):
        reps = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(a.runs, c, "seed*", "prune.json")))]
        if not reps:
            continue
        macs = statistics.mean(r["macsAfter"] / r["macsBefore"] for r in reps)
        params = statistics.mean(r["paramsAfter"] / r["paramsBefore"] for r in reps)
        sp = [statistics.mean(r["latencyBefore"][b] / r["latencyAfter"][b] for r in reps) for b in ("batch1", "batch8")]
        after = stat([r.get("metricAfter") for r in reps])
        ft = [final(os.path.join(a.runs, c, s, "finetune")) for s in seeds]
        q = [final(os.path.join(a.runs, c, s, "qat-w8a8")) for s in seeds]
        more = [final(os.path.join(a.runs, c, s, "fp32-more5")) for s in seeds]
        rows.append(f"| pruned, {c} | {macs:.3f} | {params:.3f} | {sp[0]:.2f} / {sp[1]:.2f} | {after} | {stat(ft)} | {stat(q)} | {stat(more)} |")
    text = ("# Chips: prune -> fine-tune -> QAT W8A8 (MobileNetV2 x0.5, small input)\n\n"
            f"Runs: `{a.runs}` (scripts/protocol/chips_prune.sh), controls: `{a.sweep}`. Seeds: {', '.join(seeds)}.\n"
            f"Pruned at the MAC budget of the folder name with adaptive BN (64 batches); fine-tuned at lr 0.01 as the unpruned control `{a.control}` of the same seed, then QAT W8A8 for 5 epochs (the sweep's qat-w8a8 settings), and as its control the same 5 epochs in FP32 (runs that have it).\n"
            "Speed-ups: median eval-mode forward before / after in `qat prune` (at the report's latency size, the threads the script ran with; "
            "when several runs share the cores, as in the committed run (three 1-thread lanes on 2 cores), they are noise: docs/RESULTS.md has quiet measurements).\n\n"
            + "\n".join(rows) + "\n")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    open(a.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
