#!/usr/bin/env bash
# Issue 14's speed bars for the int8 engine in one session: `qat bench infer --engine int8` (our FP32
# path and the int8 engine, alternately; the same quantized MobileNetV2 x0.5 features written as QDQ
# ONNX), then ONNX Runtime on that file, then PyTorch's mbv2_infer if a torch venv is given.
# Usage: scripts/bench/int8_vs_ort.sh [THREADS] [REPS]   (QAT_TORCH_PYTHON=/path/to/python for PyTorch)
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${1:-2}; R=${2:-20}
VENV=${QAT_ONNX_VENV:-.venv-onnx}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import onnxruntime, numpy" 2>/dev/null || "$VENV/bin/pip" install -q onnx onnxruntime numpy
swift build -c release --product qat >/dev/null
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
grep -m1 "model name" /proc/cpuinfo
.build/release/qat bench infer --engine int8 --threads "$T" --reps "$R" --onnx-out "$W/mbv2-w8a8.onnx"
"$VENV/bin/python" scripts/bench/ort_infer.py "$W/mbv2-w8a8.onnx" --threads "$T" --reps "$R"
if [ -n "${QAT_TORCH_PYTHON:-}" ]; then
  "$QAT_TORCH_PYTHON" ../shared/tools/reference/bench_torch.py --threads "$T" --reps "$R" 2>/dev/null | grep -E "torch:|mbv2_infer"
fi
