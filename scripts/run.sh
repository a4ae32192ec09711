#!/usr/bin/env bash
# The main job, end to end on built-in synthetic data: installs missing system packages, builds the
# release binary, trains the quickstart recipe (MobileNetV2 on chips of the synthetic aircraft
# benchmark, generated on first use), evaluates its best checkpoint, exports the run as a notebook,
# trains the detection quickstart (RetinaNet on synthetic 256-px scenes), evaluates it with COCO metrics
# and draws its predictions on test images, then runs the quantization demonstration and the kernel
# benchmark.
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
det="runs/detection-quickstart/main-$(date +%Y%m%d-%H%M%S)"
$qat train recipes/detection/quickstart.yaml --run-dir "$det"
$qat eval "$det/checkpoints/best.h5" --split test
set=data/cache/aircraft-n160-s256-seed0-imb10-noise0-symmetric-chip32
$qat predict "$det/checkpoints/best.h5" $(python3 -c "import json; print(' '.join('$set/images/' + i['file_name'] for i in json.load(open('$set/annotations/test.json'))['images'][:4]))") --out "$det/predictions" --score 0.3
$qat export notebook "$det" --out "$det/notebook.ipynb" --html
$qat quant demo --seed 0
$qat bench kernels "$@"
