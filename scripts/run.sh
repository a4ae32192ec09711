#!/usr/bin/env bash
# The main job, end to end on built-in synthetic data: installs missing system packages, builds the
# release binary, generates a synthetic fine-grained aircraft set and prints its statistics, runs the
# quantization demonstration (FP32 / QAT / PTQ on a synthetic task) and the kernel benchmark.
# (Detector training on the aircraft set arrives with the recipes and detection issues.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release
out="runs/synthetic-aircraft-$(date +%Y%m%d-%H%M%S)"
mkdir -p runs
.build/release/qat data synth --out "$out" --images 200 --seed 0 --label-noise 0.1
.build/release/qat data stats "$out"
.build/release/qat quant demo --seed 0
.build/release/qat bench kernels "$@"
