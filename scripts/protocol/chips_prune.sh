#!/bin/bash
# Issue 15: prune -> fine-tune -> QAT W8A8 on the chips protocol (MobileNetV2 x0.5, small input), from the
# chips-qat sweep's FP32 cells, at one MAC budget. Per seed and variant:
#   1. qat prune FP32/best.h5 --macs $MACS ... --bn-batches 64 (adaptive BN; report in prune.json)
#   2. fine-tune $FT_EPOCHS epochs at lr 0.01, no warm-up: the schedule of the sweep's unpruned FP32
#      control fp32-finetune-15ep (15 epochs) or fp32-finetune (5)
#   3. QAT W8A8 5 epochs from the fine-tuned model (the sweep's qat-w8a8 settings)
#   4. its FP32 control: the same 5 epochs at the same schedule from the fine-tuned model, unquantized
# Variants: l1, fpgm, l0, bn (uniform ratio; the criterion scores channels); l1-guided (qat prune
# sensitivity on the same FP32 checkpoint, then the MAC budget spent where the curves lose least);
# bn-slim (5 epochs of sparsity fine-tuning, train.bn_sparsity 1e-4 at lr 0.01, then the bn criterion).
# A step whose output exists is skipped, so rerunning resumes; a run killed midway resumes (--resume).
#
#   QAT=.build/release/qat QAT_NUM_THREADS=1 SEEDS="0 1 2" scripts/protocol/chips_prune.sh
#   SWEEP=runs/sweeps/chips-qat-distill OUT=runs/prune/chips-distill/m0.5-ft15 VARIANTS="l0 bn l1-guided" ...   # the eleventh session's rerun
#   python3 scripts/protocol/chips_prune_table.py      # into notebooks-export/chips-prune-summary.md
set -euo pipefail
QAT=${QAT:-.build/release/qat}
SWEEP=${SWEEP:-runs/sweeps/chips-qat}
MACS=${MACS:-0.5}
FT_EPOCHS=${FT_EPOCHS:-15}
OUT=${OUT:-runs/prune/chips/m$MACS-ft$FT_EPOCHS}
VARIANTS=${VARIANTS:-"l1 l1-guided fpgm bn-slim l0 bn"}
SEEDS=${SEEDS:-"0 1 2"}
SCHEDULE="--set train.optimizer.lr=0.01 --set train.schedule.warmup_steps=0"
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
    fp32=$SWEEP/fp32/seed$seed
    [ -f "$fp32/final.json" ] || { echo "missing $fp32/final.json: run the chips-qat sweep's fp32 cells first" >&2; exit 1; }
    for v in $VARIANTS; do
        d=$OUT/$v/seed$seed
        mkdir -p "$d"
        src=$fp32/checkpoints/best.h5
        case $v in
            l1-guided)
                crit=l1
                if [ ! -f "$d/sensitivity.json" ]; then
                    "$QAT" prune sensitivity "$src" --ratios 0.1:0.7:0.1 --criterion l1 --bn-batches 16 --split val \
                        --out "$d/sensitivity.json" --svg "$d/sensitivity.svg" > "$d/sensitivity.txt" 2> "$d/sensitivity.log"
                fi
                how="--macs $MACS --sensitivity $d/sensitivity.json" ;;
            bn-slim)
                crit=bn
                train "$d/sparsity" "$fp32/recipe.resolved.yaml" --set train.epochs=5 $SCHEDULE --set train.bn_sparsity=0.0001 --set quant.init_from="$src"
                src=$d/sparsity/checkpoints/last.h5
                how="--macs $MACS" ;;
            *) crit=$v; how="--macs $MACS" ;;
        esac
        if [ ! -f "$d/pruned.h5" ]; then
            rm -f "$d/pruned.yaml" "$d/prune.json"
            "$QAT" prune "$src" $how --criterion "$crit" --bn-batches 64 --out "$d/pruned.h5" --eval-split val --report "$d/prune.json" > "$d/prune.log" 2>&1
            grep -E "MACs|accuracy" "$d/prune.log" | sed 's/^/  /'
        fi
        train "$d/finetune" "$d/pruned.yaml" --set train.epochs=$FT_EPOCHS $SCHEDULE
        train "$d/qat-w8a8" "$d/pruned.yaml" --set train.epochs=5 $SCHEDULE $W8A8 --set quant.init_from="$d/finetune/checkpoints/best.h5"
        [ -n "${NO_FP32_CONTROL:-}" ] || train "$d/fp32-more5" "$d/pruned.yaml" --set train.epochs=5 $SCHEDULE --set quant.init_from="$d/finetune/checkpoints/best.h5"
    done
done
