#!/usr/bin/env bash
# Throughput of data-parallel training on this machine (docs/SCALING.md): 1 process x all cores against
# mpirun -np 2 (1 thread per rank, from the core share), twice each in turn, on the detector and the
# quickstart classifier recipes (release build). Prints images/s per logged window and the ratio.
#
#   scripts/mpi/speed.sh [STEPS]          # writes runs/speed/{det,cls}-{a,b}{1,2}
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-50}
qat=$PWD/.build/release/qat
out=runs/speed
[ -x "$qat" ] || { echo "speed.sh: build first: swift build -c release" >&2; exit 1; }
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--set eval.final_split=none --set eval.every_epochs=1000 --set train.log_every=10 --set train.steps="$steps")
mkdir -p "$out"
run() {  # tag recipe extra-sets...
  local tag=$1 recipe=$2; shift 2
  for i in 1 2; do
    rm -rf "$out/$tag-a$i" "$out/$tag-b$i"
    "$qat" train "$recipe" "${common[@]}" "$@" --run-dir "$out/$tag-a$i" > /dev/null
    mpirun -np 2 "$qat" train "$recipe" "${common[@]}" "$@" --run-dir "$out/$tag-b$i" > /dev/null
  done
}
run det recipes/detection/retinanet-fp32.yaml --set data.synth.images=200 --set data.cache=data/cache-speed
run cls recipes/quickstart.yaml
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def ips(r):
    v = [json.loads(l)['images_per_s'] for l in open(f'{out}/{r}/metrics.jsonl') if json.loads(l)['type'] == 'train']
    return v, sum(v[1:]) / len(v[1:])
for tag in ('det', 'cls'):
    m = {}
    for r in ('a1', 'b1', 'a2', 'b2'):
        v, mean = ips(f'{tag}-{r}'); m[r] = mean
        print(f"{tag}-{r}: {[round(x, 2) for x in v]} mean after the first window {mean:.2f} images/s")
    one, two = (m['a1'] + m['a2']) / 2, (m['b1'] + m['b2']) / 2
    print(f"{tag}: 1 process x 2 threads {one:.2f}, 2 ranks x 1 thread {two:.2f} images/s: ratio {two / one:.3f}")
PY
