#!/usr/bin/env bash
# The FP32 detection accuracy protocol (docs/RESULTS.md): backbone pretraining on aircraft chips of the
# synthetic set, then RetinaNet (recipes/detection/retinanet-fp32.yaml) from that backbone, scored on the
# test split by the pycocotools-equal evaluator. Resumable: finished steps are skipped, interrupted
# runs resume. Usage: scripts/protocol/detection_fp32.sh [SEED] [RUNS_DIR]   (release build first)
set -euo pipefail
cd "$(dirname "$0")/../.."
seed=${1:-0}; runs=${2:-runs/protocol}
qat=.build/release/qat
bb=$runs/backbone-seed$seed; det=$runs/retinanet-fp32-seed$seed
train() {   # train RECIPE DIR [--set ...]: skipped when DIR/final.json exists, resumed when DIR has a checkpoint
  local recipe=$1 dir=$2; shift 2
  if [ -f "$dir/final.json" ]; then echo "done: $dir"; return; fi
  if [ -f "$dir/checkpoints/last.h5" ]; then $qat train "$recipe" --run-dir "$dir" --resume --set seed=$seed "$@"
  else $qat train "$recipe" --run-dir "$dir" --set seed=$seed "$@"; fi
}
train recipes/detection/backbone-chips.yaml "$bb"
train recipes/detection/retinanet-fp32.yaml "$det" --set model.init_from="$bb/checkpoints/best.h5"
$qat eval "$det/checkpoints/best.h5" --split test
