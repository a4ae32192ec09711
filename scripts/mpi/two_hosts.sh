#!/usr/bin/env bash
# Two hosts on one machine for data-parallel training over TCP (docs/SCALING.md): network namespaces
# qat-h1 and qat-h2 joined by a veth pair (10.77.0.1, 10.77.0.2), each with its own host name, Open MPI
# launching the remote rank through scripts/mpi/nsrsh instead of ssh and talking TCP only (no shared
# memory). Measures allreduce bandwidth, then trains RECIPE for STEPS steps on 1 host x 2 ranks and on
# 2 hosts x 1 rank, and compares the parameters and step times. Needs root (ip netns) and a release build.
#
#   scripts/mpi/two_hosts.sh [RECIPE] [STEPS] [RATE]     # RATE: optional link shaping, e.g. 1gbit (tc tbf)
#   QAT_TWO_HOSTS_SET="--set data.synth.images=200" scripts/mpi/two_hosts.sh   # extra recipe overrides
set -euo pipefail
cd "$(dirname "$0")/../.."
recipe=${1:-recipes/detection/retinanet-fp32.yaml}
steps=${2:-30}
rate=${3:-}
qat=$PWD/.build/release/qat
out=${QAT_TWO_HOSTS_OUT:-runs/two-hosts}
[ -x "$qat" ] || { echo "two_hosts.sh: build first: swift build -c release" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "two_hosts.sh: needs root (ip netns)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cleanup() { ip netns del qat-h1 2>/dev/null || true; ip netns del qat-h2 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add qat-h1; ip netns add qat-h2
ip link add qat-v1 type veth peer name qat-v2
ip link set qat-v1 netns qat-h1; ip link set qat-v2 netns qat-h2
ip -n qat-h1 addr add 10.77.0.1/24 dev qat-v1; ip -n qat-h2 addr add 10.77.0.2/24 dev qat-v2
for n in 1 2; do ip -n qat-h$n link set lo up; ip -n qat-h$n link set qat-v$n up; done
if [ -n "$rate" ]; then
  for n in 1 2; do ip netns exec qat-h$n tc qdisc add dev qat-v$n root tbf rate "$rate" burst 1mbit latency 50ms; done
fi
map=$(mktemp); printf '10.77.0.1 qat-h1\n10.77.0.2 qat-h2\n' > "$map"
export QAT_NSRSH_MAP=$map
mkdir -p "$out"
# The two "hosts" share this machine's cores: one thread per rank (QAT_NUM_THREADS=1, as the 1-host run
# gets from its core share), so both runs do the same arithmetic and only the transport differs. Each
# "host" believes it has all the cores and would bind its rank to core 0, both ranks on one real core:
# --bind-to none.
mpi=(mpirun --bind-to none --mca plm_rsh_agent "$PWD/scripts/mpi/nsrsh" --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24
     --mca oob_tcp_if_include 10.77.0.0/24 --host 10.77.0.1,10.77.0.2 -np 2 -x QAT_NUM_THREADS=1)
inh1() { ip netns exec qat-h1 unshare --uts sh -c 'hostname qat-h1; exec "$@"' sh "$@"; }

echo "== allreduce, 2 hosts over TCP${rate:+ at $rate}"
inh1 "${mpi[@]}" "$qat" bench allreduce --mib 0.25,1,5.35,16 | tee "$out/allreduce-2hosts${rate:+-$rate}.txt"
echo "== allreduce, 1 host, shared memory"
mpirun -np 2 "$qat" bench allreduce --mib 0.25,1,5.35,16 | tee "$out/allreduce-1host.txt"

read -r -a extra <<< "${QAT_TWO_HOSTS_SET:-}"
set_args=(--set train.steps="$steps" --set train.log_every=5 --set eval.final_split=none --set eval.every_epochs=1000 "${extra[@]}")
rm -rf "$out/1host" "$out/2hosts${rate:+-$rate}"
echo "== train: 1 host x 2 ranks"
mpirun -np 2 "$qat" train "$recipe" "${set_args[@]}" --run-dir "$out/1host" | tail -1
echo "== train: 2 hosts x 1 rank${rate:+ at $rate}"
inh1 "${mpi[@]}" "$qat" train "$recipe" "${set_args[@]}" --run-dir "$out/2hosts${rate:+-$rate}" | tail -1
for r in 1host "2hosts${rate:+-$rate}"; do
  "$qat" export "$out/$r/checkpoints/last.h5" --format safetensors --out "$out/$r.safetensors" > /dev/null
done
python3 - "$out" "2hosts${rate:+-$rate}" <<'PY'
import json, struct, sys, array
out, two = sys.argv[1], sys.argv[2]
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); t = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; a = array.array('f'); a.frombytes(b[8 + n + s:8 + n + e]); t[k] = a
    return t
a, b = load(f'{out}/1host.safetensors'), load(f'{out}/{two}.safetensors')
same = sum(1 for k in a if a[k] == b[k])
print(f"parameters: {same} of {len(a)} tensors bit-identical between 1 host x 2 ranks and 2 hosts x 1 rank")
for r in ('1host', two):
    v = [json.loads(l) for l in open(f'{out}/{r}/metrics.jsonl')]
    ips = [x['images_per_s'] for x in v if x['type'] == 'train'][1:]
    print(f"{r}: {sum(ips) / len(ips):.2f} images/s (mean of logged windows after the first)")
PY
