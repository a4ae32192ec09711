#!/bin/bash
# Issue 15: prune -> fine-tune -> QAT W8A8 on the chips protocol (MobileNetV2 x0.5, small input), from the
# chips-qat sweep's FP32 cells, for each criterion at one MAC budget. Per seed and criterion:
#   1. qat prune FP32/best.h5 --macs $MACS --criterion C  (uniform ratio; report in prune.json)
#   2. fine-tune 5 epochs at lr 0.01 (the schedule of the sweep's unpruned FP32 control, fp32-finetune)
#   3. QAT W8A8 5 epochs from the fine-tuned model (the sweep's qat-w8a8 settings)
# A step whose output exists is skipped, so rerunning resumes; a run killed midway resumes (--resume).
#
#   QAT=.build/release/qat QAT_NUM_THREADS=1 scripts/protocol/chips_prune.sh
#   python3 scripts/protocol/chips_prune_table.py      # into notebooks-export/chips-prune-summary.md
set -euo pipefail
QAT=${QAT:-.build/release/qat}
SWEEP=${SWEEP:-runs/sweeps/chips-qat}
OUT=${OUT:-runs/prune/chips}
MACS=${MACS:-0.5}
CRITERIA=${CRITERIA:-"l1 fpgm l0 bn"}
SEEDS=${SEEDS:-"0 1 2"}
SCHEDULE="--set train.epochs=5 --set train.optimizer.lr=0.01 --set train.schedule.warmup_steps=0"
W8A8="--set quant.mode=qat --set quant.weight.bits=8 --set quant.weight.per_channel=true --set quant.weight.learnable=true
      --set quant.activation.bits=8 --set quant.activation.learnable=true --set train.optimizer.quant_lr_scale=0.1"

train() {  # train DIR ARGS...: skipped when finished, resumed when started
    local dir=$1; shift
    if [ -f "$dir/final.json" ]; then echo "skip $dir (done)"; return; fi
    local resume=""; [ -d "$dir" ] && resume="--resume"
    echo "train $dir"
    "$QAT" train "$@" --run-dir "$dir" $resume > /dev/null
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('  test accuracy %.2f%%' % (100*d['final']['accuracy']))" "$dir/final.json"
}

for seed in $SEEDS; do
    src=$SWEEP/fp32/seed$seed/checkpoints/best.h5
    [ -f "$SWEEP/fp32/seed$seed/final.json" ] || { echo "missing $src: run the chips-qat sweep's fp32 cells first" >&2; exit 1; }
    for c in $CRITERIA; do
        d=$OUT/m$MACS/$c/seed$seed
        mkdir -p "$d"
        if [ ! -f "$d/pruned.h5" ]; then
            rm -f "$d/pruned.yaml" "$d/prune.json"
            "$QAT" prune "$src" --macs "$MACS" --criterion "$c" --out "$d/pruned.h5" --eval-split val --report "$d/prune.json" > "$d/prune.log" 2>&1
            grep -E "MACs|accuracy" "$d/prune.log" | sed 's/^/  /'
        fi
        train "$d/finetune" "$d/pruned.yaml" $SCHEDULE
        train "$d/qat-w8a8" "$d/pruned.yaml" $SCHEDULE $W8A8 --set quant.init_from="$d/finetune/checkpoints/best.h5"
    done
done
