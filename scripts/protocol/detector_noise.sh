#!/usr/bin/env bash
# The issue-11 ablation (recipes/ablations/detector-noise.yaml) in two single-thread shards in the
# background, with a copy of the release binary (rebuilding the work tree mid-sweep cannot change it).
# Rerun to continue: finished cells skip, a cell with a last.h5 resumes; logs append to
# runs/sweeps/detector-noise-shard{1,2}.log. Then:
#   .build/release/qat sweep recipes/ablations/detector-noise.yaml --collect
#   python3 scripts/protocol/detector_noise_table.py runs/sweeps/detector-noise/summary.json
# (The committed numbers were run this way with the binary of commit 5b01707.)
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product qat
mkdir -p runs/sweeps
BIN=runs/sweeps/qat-$(git rev-parse --short HEAD)
[ -x "$BIN" ] || cp .build/release/qat "$BIN"
for s in 1 2; do
  QAT_NUM_THREADS=1 nohup nice -n 5 "$BIN" sweep recipes/ablations/detector-noise.yaml --shard $s/2 >> runs/sweeps/detector-noise-shard$s.log 2>&1 &
done
echo "shards started with $BIN; logs: runs/sweeps/detector-noise-shard{1,2}.log"
