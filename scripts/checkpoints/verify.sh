#!/usr/bin/env bash
# Evaluates every shipped checkpoint (checkpoints/*.h5) and checks the test metric that
# checkpoints/README.md states: chips accuracy to one test image (442 chips: 0.23 points), the
# detector's mAP50 to 0.5 points (pycocotools prints 3 decimals); then the int8 engine on the QAT classifier
# and on a PTQ W8A8 copy of the detector against their fake-quant models. Release build.
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

# The int8 engine on the shipped QAT classifier: the same test accuracy as the fake-quant model to one
# test image, and layerwise activation codes (each op fed the fake-quant model's input codes) equal on
# at least 99.9% of elements and never more than one code apart.
metric() { awk -v k="\"$2\"" '$1 == k { gsub(",", "", $3); print $3 }' "$1"; }
.build/release/qat eval "$T/chips-mbv2-qat-w8a8.h5" --engine int8 --compare > "$T/int8.txt"
fake=$(metric "$T/chips-mbv2-qat-w8a8.test.metrics.json" accuracy)
int8=$(metric "$T/chips-mbv2-qat-w8a8.test.int8.metrics.json" accuracy)
equal=$(metric "$T/chips-mbv2-qat-w8a8.test.int8.metrics.json" int8_codes_equal_layerwise)
maxd=$(metric "$T/chips-mbv2-qat-w8a8.test.int8.metrics.json" int8_max_code_difference_layerwise)
if awk -v a="$fake" -v b="$int8" -v e="$equal" -v m="$maxd" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.0023 && e >= 0.999 && m <= 1) }'; then
  echo "checkpoints/chips-mbv2-qat-w8a8.h5 on the int8 engine: accuracy $int8 (fake-quant $fake), layerwise codes equal $equal, max difference $maxd: ok"
else
  echo "checkpoints/chips-mbv2-qat-w8a8.h5 on the int8 engine: accuracy $int8 (fake-quant $fake), layerwise codes equal $equal, max difference $maxd: FAIL"
  cat "$T/int8.txt"; exit 1
fi
# And a detector: PTQ W8A8 of the shipped RetinaNet (4 s, no training), test mAP50 on the int8 engine
# within 0.1 points of the fake-quant model's.
.build/release/qat train recipes/detection/quickstart.yaml --run-dir "$T/ptq" --set train.epochs=0 --set quant.mode=ptq \
  --set quant.init_from=checkpoints/aircraft-retinanet-quickstart.h5 --set quant.weight.bits=8 --set quant.weight.per_channel=true \
  --set quant.activation.bits=8 --set quant.calibration_batches=8 > "$T/ptq.log"
.build/release/qat eval "$T/ptq/checkpoints/best.h5" > /dev/null
.build/release/qat eval "$T/ptq/checkpoints/best.h5" --engine int8 > /dev/null
fake=$(metric "$T/ptq/checkpoints/best.test.metrics.json" map50)
int8=$(metric "$T/ptq/checkpoints/best.test.int8.metrics.json" map50)
if awk -v a="$fake" -v b="$int8" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.001) }'; then
  echo "PTQ W8A8 quickstart detector on the int8 engine: test mAP50 $int8 (fake-quant $fake): ok"
else
  echo "PTQ W8A8 quickstart detector on the int8 engine: test mAP50 $int8, fake-quant $fake: FAIL"; exit 1
fi
