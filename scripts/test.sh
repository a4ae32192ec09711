#!/usr/bin/env bash
# The test command: installs missing system packages, then runs the whole suite (debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
# XCTest only: the suite has no Swift Testing tests, and its "0 tests" summary would be the last line.
swift test --disable-swift-testing "$@"
