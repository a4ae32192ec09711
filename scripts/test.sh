#!/usr/bin/env bash
# The test command: installs missing system packages, then runs the whole suite (debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
swift test "$@"
