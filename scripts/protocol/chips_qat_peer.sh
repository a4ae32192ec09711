#!/bin/bash
# Issue 13's peer runs: the chips-qat sweep's QAT cells replayed in PyTorch (scripts/reference/chips_qat_torch.py)
# from the same FP32 checkpoint (the cell's quant.init_from) with the cell's resolved recipe. Sequential;
# a run with a final.json is skipped, so rerunning resumes. A cell that has not started yet (no
# recipe.resolved.yaml) is waited for.
#
#   V=$(../shared/tools/reference/setup.sh)      # the PyTorch venv (never a dependency of the framework)
#   scripts/protocol/chips_qat_peer.sh $V/bin/python [THREADS]
#   PEER_SWEEP=runs/sweeps/chips-qat-distill PEER_RUNS="qat-w4a4-combined:0 qat-w4a4-combined-running:0" \
#       scripts/protocol/chips_qat_peer.sh $V/bin/python   # another sweep's cells
#   python3 scripts/protocol/chips_qat_table.py   # ours vs PyTorch, into notebooks-export/chips-qat-peer.md
set -euo pipefail
PY=${1:?usage: chips_qat_peer.sh PYTHON [THREADS]}
THREADS=${2:-1}
SWEEP=${PEER_SWEEP:-runs/sweeps/chips-qat}   # e.g. runs/sweeps/chips-qat-distill
OUT=${PEER_OUT:-$SWEEP-peer}
# Order: the W4A4 pair on every seed first, then W2A2 and W8A8 seed by seed (override with PEER_RUNS).
RUNS=${PEER_RUNS:-"qat-w4a4:0 qat-w4a4:1 qat-w4a4:2 qat-w4a4-mse-init:0 qat-w4a4-mse-init:1 qat-w4a4-mse-init:2
  qat-w2a2-8bit-ends:0 qat-w8a8:0 qat-w2a2-8bit-ends:1 qat-w8a8:1 qat-w2a2-8bit-ends:2 qat-w8a8:2"}
for run in $RUNS; do
    variant=${run%:*} seed=${run#*:}
    cell=$SWEEP/$variant/seed$seed
    dest=$OUT/$variant/seed$seed
    [ -f "$dest/final.json" ] && { echo "skip $variant/seed$seed (done)"; continue; }
    until [ -f "$cell/recipe.resolved.yaml" ]; do sleep 30; done
    init=$(sed -n 's/^  init_from: //p' "$cell/recipe.resolved.yaml" | tr -d '"')
    until [ -f "$init" ] && [ -f "$(dirname "$(dirname "$init")")/final.json" ]; do sleep 30; done
    data=$(sed -n 's/^  cache: //p' "$cell/recipe.resolved.yaml" | tr -d '"')
    chips=$(ls -d "${data:-data/cache}"/aircraft-n600-s192-seed0-imb10-noise0-symmetric-chip32/chips)
    echo "run $variant/seed$seed"
    mkdir -p "$dest"
    "$PY" scripts/reference/chips_qat_torch.py --recipe "$cell/recipe.resolved.yaml" --data "$chips" --out "$dest" \
        --init-h5 "$init" --seed "$seed" --threads "$THREADS" > "$dest/log.txt" 2>&1
    tail -n 1 "$dest/log.txt"
done
