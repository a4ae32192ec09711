#!/usr/bin/env bash
# Tests `qat sweep --emit slurm` against Slurm itself (issue 16, section 2): starts a single-node
# Slurm on this machine (Debian slurm-wlm: munged, slurmctld and slurmd on localhost, root, no cgroups),
# submits a small sweep with a dependency (QAT cells starting from FP32 cells: two stages) through the
# emitted script, waits for its collect job, runs the same sweep locally, and checks that the two
# summaries agree on every metric (the wall-time column left out). Stops the daemons at the end.
# Usage: scripts/slurm/test.sh [WORKDIR]   (needs root; installs slurm-wlm and munge when missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
W=$(realpath -m "${1:-.build-slurm-test}")
command -v slurmctld > /dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > /dev/null; }
swift build -c release --product qat > /dev/null
QAT=$REPO/.build/release/qat
rm -rf "$W"; mkdir -p "$W"/{spool,state,run}
HOST=$(hostname -s)
grep -q "$HOST" /etc/hosts || echo "127.0.0.1 $HOST" >> /etc/hosts

# munge: a key, and the daemon under its own user.
[ -s /etc/munge/munge.key ] || { (mungekey -c -f 2>/dev/null || /usr/sbin/create-munge-key -f) > /dev/null; }
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge; chown munge:munge /run/munge /var/log/munge /var/lib/munge
pgrep -x munged > /dev/null || runuser -u munge -- /usr/sbin/munged

export SLURM_CONF=$W/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=qattest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=$W/run/slurmctld.pid
SlurmdPidFile=$W/run/slurmd.pid
SlurmdSpoolDir=$W/spool
StateSaveLocation=$W/state
SlurmctldLogFile=$W/slurmctld.log
SlurmdLogFile=$W/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$HOST CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
start=$(date +%s.%N)
slurmctld -D -i > "$W/slurmctld.out" 2>&1 &
CTLD=$!
slurmd -D > "$W/slurmd.out" 2>&1 &
SLURMD=$!
cleanup() { kill $CTLD $SLURMD 2>/dev/null || true; wait $CTLD $SLURMD 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 120); do
  [ "$(sinfo -h -o %t 2>/dev/null | head -1)" = "idle" ] && break
  sleep 0.5
done
[ "$(sinfo -h -o %t | head -1)" = "idle" ] || { echo "slurm did not come up; logs in $W"; tail -5 "$W"/slurmctld.log "$W"/slurmd.log; exit 1; }
echo "single-node Slurm up in $(echo "$(date +%s.%N) - $start" | bc) s ($(sinfo -h -o '%P %D %c %t'))"

# The sweep: 2 FP32 cells (stage 0) and 2 QAT cells starting from them (stage 1), tiny.
sweep() {   # name out
  cat <<YAML
name: $1
base: $REPO/recipes/quickstart.yaml
out: $2
seeds: [0, 1]
set: {train.epochs: 1, data.synth.images: 60}
variants:
  - name: fp32
  - name: w8a8
    set: {quant.mode: qat, quant.init_from: "{out}/fp32/seed{seed}/checkpoints/best.h5"}
YAML
}
sweep slurm-tiny "$W/out-slurm" > "$W/slurm.yaml"
sweep slurm-tiny "$W/out-local" > "$W/local.yaml"
(cd "$W" && "$QAT" sweep slurm.yaml --emit slurm --cpus 1 --time 20:00 > submit.sh && bash submit.sh)
t0=$(date +%s)
while [ -n "$(squeue -h -o %i)" ]; do
  [ $(( $(date +%s) - t0 )) -lt 1200 ] || { echo "jobs still queued after 20 min"; squeue; exit 1; }
  sleep 2
done
echo "Slurm run finished in $(( $(date +%s) - t0 )) s"
(cd "$W" && QAT_NUM_THREADS=1 "$QAT" sweep local.yaml > local.log)
(cd "$W" && "$QAT" sweep local.yaml --collect > /dev/null)
# Every column but the wall time (the last, s/run) must agree.
strip() { cut -d, -f1-"$(( $(head -1 "$1" | tr ',' '\n' | wc -l) - 1 ))" "$1"; }
if diff <(strip "$W/out-slurm/summary.csv") <(strip "$W/out-local/summary.csv") > "$W/diff.txt"; then
  echo "summaries agree: $(($(wc -l < "$W/out-slurm/summary.csv") - 1)) rows ($W/out-slurm/summary.csv vs $W/out-local/summary.csv)"
else
  echo "summaries differ:"; cat "$W/diff.txt"; exit 1
fi
