#!/usr/bin/env bash
# The main job, end to end on built-in synthetic data: installs missing system packages, builds the
# release binary, trains the quickstart recipe (MobileNetV2 on chips of the synthetic aircraft
# benchmark, generated on first use), evaluates its best checkpoint, exports the run as a notebook,
# then runs the quantization demonstration and the kernel benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release
qat=.build/release/qat
run="runs/quickstart/main-$(date +%Y%m%d-%H%M%S)"
$qat train recipes/quickstart.yaml --run-dir "$run"
$qat eval "$run/checkpoints/best.h5" --split test
$qat export notebook "$run" --out "$run/notebook.ipynb" --html
$qat data stats data/cache/aircraft-n300-s192-seed0-imb10-noise0-symmetric-chip32
$qat quant demo --seed 0
$qat bench kernels "$@"
