#!/usr/bin/env bash
# Evaluates every shipped checkpoint (checkpoints/*.h5) and checks the test accuracy that
# checkpoints/README.md states, to one test image (442 chips: 0.23 points). Release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product qat > /dev/null
check() {   # file, expected accuracy in %
  local got
  got=$(.build/release/qat eval "checkpoints/$1" | awk '$1 == "accuracy" { sub("%", "", $2); print $2 }')
  if awk -v g="$got" -v e="$2" 'BEGIN { d = g - e; if (d < 0) d = -d; exit !(d <= 0.23) }'; then
    echo "checkpoints/$1: test accuracy $got% (README: $2%): ok"
  else
    echo "checkpoints/$1: test accuracy $got%, README says $2%: FAIL"; exit 1
  fi
}
check chips-mbv2-fp32.h5 76.70
check chips-mbv2-qat-w8a8.h5 76.47
