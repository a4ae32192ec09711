#!/usr/bin/env bash
# Evaluates every shipped checkpoint (checkpoints/*.h5) and checks the test metric that
# checkpoints/README.md states: chips accuracy to one test image (442 chips: 0.23 points), the
# detector's mAP50 to 0.5 points (pycocotools prints 3 decimals). Release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product qat > /dev/null
# qat eval writes its metrics (and a detector's results) beside the checkpoint: evaluate copies.
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
check() {   # file, expected accuracy in %
  local got
  cp "checkpoints/$1" "$T/$1"
  got=$(.build/release/qat eval "$T/$1" | awk '$1 == "accuracy" { sub("%", "", $2); print $2 }')
  if awk -v g="$got" -v e="$2" 'BEGIN { d = g - e; if (d < 0) d = -d; exit !(d <= 0.23) }'; then
    echo "checkpoints/$1: test accuracy $got% (README: $2%): ok"
  else
    echo "checkpoints/$1: test accuracy $got%, README says $2%: FAIL"; exit 1
  fi
}
check chips-mbv2-fp32.h5 76.70
check chips-mbv2-qat-w8a8.h5 76.47
# The detector: test mAP50 (pycocotools' "IoU=0.50 | area= all" line), to 0.5 points.
cp checkpoints/aircraft-retinanet-quickstart.h5 "$T/"
got=$(.build/release/qat eval "$T/aircraft-retinanet-quickstart.h5" | awk '/IoU=0.50 +\| area= +all/ { print $NF * 100 }')
if awk -v g="$got" 'BEGIN { d = g - 11.8; if (d < 0) d = -d; exit !(d <= 0.5) }'; then
  echo "checkpoints/aircraft-retinanet-quickstart.h5: test mAP50 $got% (README: 11.8%): ok"
else
  echo "checkpoints/aircraft-retinanet-quickstart.h5: test mAP50 $got%, README says 11.8%: FAIL"; exit 1
fi
