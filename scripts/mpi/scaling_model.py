#!/usr/bin/env python3
"""Scaling model for data-parallel training (docs/SCALING.md): ring allreduce time for our models'
gradients at 10 and 25 Gbit/s against the measured compute time of a step, predicting the efficiency
at 4, 8, 16 and 64 machines, and the same model with the measured veth/TCP link checked against the
measured two-host run (scripts/mpi/two_hosts.sh).

Model (weak scaling: every machine keeps the per-machine batch, the global batch grows with N):
  one ring allreduce of S bytes over N machines    T(S) = 2(N-1) alpha + 2 (N-1)/N * S / B
  gradients in k buckets of bucket_mb (our DDP)    T_grad = k 2(N-1) alpha + 2 (N-1)/N * S / B
  per-step small allreduces (stop flag, losses)    T_small = 2 * 2 ceil(log2 N) alpha  (recursive doubling)
  efficiency without overlap                       E = T_c / (T_c + T_grad + T_small)
Buckets start during backward, so part of T_grad hides behind computation: E above is the lower bound;
the upper bound is T_c / max(T_c, T_grad + T_small) (1.0 whenever communication fits in the step).

Usage: scripts/mpi/scaling_model.py [--speed docs/scaling/speed.txt] [--two-hosts LOG...]
Inputs are the committed logs of scripts/mpi/speed.sh and scripts/mpi/two_hosts.sh (AMD EPYC family 25,
2 cores); T_c = per-machine batch / single-process images/s.
"""
import argparse, json, math, os, re

MODELS = {
    # name: (parameters, per-machine batch (the recipe's), speed.sh tag); parameters as `qat train`
    # prints them; step time = batch / images/s of speed.sh's single-process runs (mean of both repeats).
    "detector (retinanet-fp32)": (1_337_040, 8, "det"),
    "classifier (quickstart)": (703_052, 32, "cls"),
}
ALPHA = 50e-6          # per-message latency of a 10/25 GbE TCP hop (s), a typical kernel-TCP figure
BUCKET_MB = 1.0        # train.distributed.bucket_mb default


def t_allreduce(n, s_bytes, b_bytes_s, alpha, buckets):
    if n == 1:
        return 0.0
    grad = buckets * 2 * (n - 1) * alpha + 2 * (n - 1) / n * s_bytes / b_bytes_s
    small = 2 * 2 * math.ceil(math.log2(n)) * alpha
    return grad + small


def speed_from_log(path, tag):
    """Mean images/s of the single-process runs <tag>-a1, <tag>-a2 in a scripts/mpi/speed.sh log."""
    vals = [float(m.group(1)) for line in open(path)
            if (m := re.match(rf"{tag}-a\d: .* mean after the first window ([\d.]+) images/s", line))]
    return sum(vals) / len(vals) if vals else None


def parse_two_hosts(path):
    """A scripts/mpi/two_hosts.sh log: the 2-host allreduce table {MiB: seconds}, the link label, and the
    images/s of 1 host x 2 ranks and of 2 hosts x 1 rank."""
    ar, section, link, one, two = {}, None, "veth", None, None
    for line in open(path):
        if line.startswith("=="):
            section = line
            if "2 hosts over TCP" in line and " at " in line:
                link = "veth shaped to " + line.rsplit(" at ", 1)[1].strip()
            continue
        m = re.match(r"\s*([\d.]+)\s+([\d.]+) ms", line)
        if m and section and "2 hosts over TCP" in section:
            ar[float(m.group(1))] = float(m.group(2)) / 1e3
        m = re.match(r"(1host|2hosts\S*): ([\d.]+) images/s", line)
        if m:
            if m.group(1) == "1host":
                one = float(m.group(2))
            else:
                two = float(m.group(2))
    return ar, link, one, two


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", default="docs/scaling/speed.txt", help="a scripts/mpi/speed.sh log")
    ap.add_argument("--two-hosts", nargs="*", default=["docs/scaling/two_hosts.txt", "docs/scaling/two_hosts_1gbit.txt"],
                    help="scripts/mpi/two_hosts.sh logs")
    a = ap.parse_args()
    print("## Predicted efficiency (no overlap .. full overlap; communication ms), per-machine batch = the recipe's\n")
    print("| model | gradient MB | batch | T_c s/step | link | 4 | 8 | 16 | 64 |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, (params, batch, tag) in MODELS.items():
        ips = speed_from_log(a.speed, tag) if os.path.exists(a.speed) else None
        if ips is None:
            print(f"| {name} | {params * 4 / 1e6:.2f} | {batch} | (no {tag}-a1 in {a.speed}: run scripts/mpi/speed.sh) | | | | | |")
            continue
        tc = batch / ips
        s = params * 4
        k = math.ceil(s / (BUCKET_MB * 2**20))
        for gbit in (10, 25):
            b = gbit * 1e9 / 8
            cells = []
            for n in (4, 8, 16, 64):
                t = t_allreduce(n, s, b, ALPHA, k)
                lo, hi = tc / (tc + t), tc / max(tc, t)
                cells.append(f"{100 * lo:.1f}%" + ("" if hi >= 0.9995 else f"..{100 * hi:.1f}%") + f" ({1e3 * t:.1f} ms)")
            print(f"| {name} | {s / 1e6:.2f} | {batch} | {tc:.3f} | {gbit} Gbit/s | " + " | ".join(cells) + " |")

    params = MODELS["detector (retinanet-fp32)"][0]
    s = params * 4
    k = math.ceil(s / (BUCKET_MB * 2**20))
    print("\n## Check against two hosts over veth/TCP (detector, 2 x 1 rank, 1 thread each)\n")
    print("T_c = 8 / (1 host x 2 ranks images/s): the same arithmetic, its communication over shared memory (small).\n")
    print("| log | link | fitted B GB/s | fitted alpha us | predicted T_comm ms | 1 host images/s | predicted 2 hosts images/s (no overlap) | measured 2 hosts images/s | measured / 1 host |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for path in a.two_hosts:
        ar, link, one, two = parse_two_hosts(path)
        if len(ar) < 2 or one is None or two is None:
            print(f"| {path} | (incomplete log: rerun scripts/mpi/two_hosts.sh) | | | | | | | |")
            continue
        tc = 8 / one
        # Fit the link: bandwidth from the two largest sizes, alpha from the smallest (N = 2: T = 2 alpha + S/B).
        (s1, t1), (s2, t2) = sorted(ar.items())[-2:]
        b = (s2 - s1) * 2**20 / (t2 - t1)
        small_s, small_t = sorted(ar.items())[0]
        alpha = max(0.0, (small_t - small_s * 2**20 / b) / 2)
        t = t_allreduce(2, s, b, alpha, k)
        print(f"| {path} | {link} | {b / 1e9:.3f} | {1e6 * alpha:.0f} | {1e3 * t:.1f} | {one:.2f} | {8 / (tc + t):.2f} | {two:.2f} | {100 * two / one:.1f}% |")


if __name__ == "__main__":
    main()
