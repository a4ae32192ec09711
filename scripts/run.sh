#!/usr/bin/env bash
# The main job, end to end: installs missing system packages, builds the release binary and runs the
# kernel benchmark (later issues replace this with a full training run on the synthetic aircraft data).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release
.build/release/qat bench kernels "$@"
