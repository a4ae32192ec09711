#!/usr/bin/env python3
"""Issue 13: our QAT cells of the chips-qat sweep against their PyTorch peer runs (scripts/protocol/chips_qat_peer.sh),
test accuracy and macro accuracy of each run's best checkpoint, mean and sample std over the seeds both have.

  python3 scripts/protocol/chips_qat_table.py [--sweep runs/sweeps/chips-qat] [--peer runs/sweeps/chips-qat-peer] [--out FILE.md]
"""
import argparse, json, os, statistics, sys


def ours(cell):
    f = os.path.join(cell, "final.json")
    if not os.path.isfile(f):
        return None
    d = json.load(open(f))["final"]
    return d["accuracy"], d["macro_accuracy"]


def peer(cell):
    f = os.path.join(cell, "final.json")
    if not os.path.isfile(f):
        return None
    d = json.load(open(f))
    return d["accuracy"], d["macro_accuracy"]


def stat(xs):
    xs = [100 * x for x in xs]
    if not xs:
        return "-"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", default="runs/sweeps/chips-qat")
    ap.add_argument("--peer", default="runs/sweeps/chips-qat-peer")
    ap.add_argument("--out")
    a = ap.parse_args()
    if not os.path.isdir(a.peer):
        sys.exit(f"error: {a.peer}: no peer runs (run scripts/protocol/chips_qat_peer.sh first)")
    fp = [ours(os.path.join(a.sweep, "fp32", f"seed{s}")) for s in range(3)]
    fp = [x for x in fp if x]
    lines = ["# chips-qat: ours against PyTorch (peer runs)", "",
             "Test accuracy (%) of each run's best checkpoint (by val accuracy), mean ± sample std over the seeds that both "
             "finished; both start from the same FP32 checkpoint (the sweep's fp32 cell of that seed) with the same resolved "
             "recipe. PyTorch: `scripts/reference/chips_qat_torch.py` (torch.ao learnable fake-quant ops), through "
             "`scripts/protocol/chips_qat_peer.sh`. Table: `python3 scripts/protocol/chips_qat_table.py`.", "",
             f"FP32 (ours, {len(fp)} seeds): accuracy {stat([x[0] for x in fp])}, macro {stat([x[1] for x in fp])}", "",
             "| variant | seeds | ours accuracy | PyTorch accuracy | ours macro | PyTorch macro |", "|---|---|---|---|---|---|"]
    for v in sorted(os.listdir(a.peer)):
        pairs = []
        for s in range(3):
            o, p = ours(os.path.join(a.sweep, v, f"seed{s}")), peer(os.path.join(a.peer, v, f"seed{s}"))
            if o and p:
                pairs.append((o, p))
        if not pairs:
            continue
        lines.append(f"| {v} | {len(pairs)} | {stat([o[0] for o, _ in pairs])} | {stat([p[0] for _, p in pairs])} | "
                     f"{stat([o[1] for o, _ in pairs])} | {stat([p[1] for _, p in pairs])} |")
    text = "\n".join(lines) + "\n"
    if a.out:
        open(a.out, "w").write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
