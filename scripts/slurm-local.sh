#!/usr/bin/env bash
# A real Slurm on localhost (one node, or N), for tests and CI (needs root; why each setting: docs/machines.md).
#   bash scripts/slurm-local.sh start DIR    # installs slurm-wlm + munge if missing, starts munged,
#                                            # slurmctld, slurmd with state in DIR; prints SLURM_CONF=...
#   bash scripts/slurm-local.sh start DIR 2  # two nodes, node1 and node2: one slurmd each on this host
#                                            # (Debian's Slurm is built with multiple-slurmd), for srun --nodes=2
#   bash scripts/slurm-local.sh stop DIR     # stops the daemons by the PIDs they wrote in DIR
# Slurm's ports (6817, 6818 and up for the nodes) are fixed: one such cluster per machine at a time.
set -euo pipefail
cmd=${1:-}; dir=${2:-}; nodes=${3:-1}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [NODES]" >&2; exit 2; }
[[ "$nodes" =~ ^[1-9][0-9]*$ ]] || { echo "slurm-local: NODES must be a whole number >= 1, got '$nodes'" >&2; exit 2; }
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

stop() {
  if [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ]; then
    # end this cluster's jobs first: their slurmstepd would outlive slurmd and train on
    export SLURM_CONF="$dir/slurm.conf"
    scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for pidfile in "$dir"/slurmd*.pid "$dir/slurmctld.pid" "$dir/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "slurm-local: needs root (slurmd runs jobs as their users)" >&2; exit 3; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || { echo "slurm-local: slurm-wlm/munge missing and no apt-get" >&2; exit 3; }
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >&2 \
    || { echo "slurm-local: could not install slurm-wlm munge" >&2; exit 3; }
fi
for port in 6817 $(seq 6818 $((6817 + nodes))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "slurm-local: port $port is taken (another Slurm runs here: one cluster at a time)" >&2; exit 3
  fi
done

mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
chmod 700 "$dir/munge"
[ -f "$dir/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$dir/munge/munge.key"; chmod 400 "$dir/munge/munge.key"; }
socket="$dir/munge/munge.socket"
munged --key-file="$dir/munge/munge.key" --socket="$socket" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" --force

cpus=$(nproc); mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
if [ "$nodes" = 1 ]; then
  names=(localhost)
  node_lines="NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  slurmd_files="SlurmdPidFile=$dir/slurmd.pid
SlurmdSpoolDir=$dir/spool
SlurmdLogFile=$dir/log/slurmd.log"
else
  # Each node a slurmd of its own on this host (its own port; %n: its name in the files); NodeAddr
  # is how jobs reach a node (torchrun's rendezvous), since node1 is no host name.
  names=(); node_lines=""
  for i in $(seq "$nodes"); do
    names+=("node$i")
    node_lines+="NodeName=node$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((6817 + i)) CPUs=$cpus RealMemory=$mem State=UNKNOWN"$'\n'
  done
  slurmd_files="SlurmdPidFile=$dir/slurmd-%n.pid
SlurmdSpoolDir=$dir/spool/%n
SlurmdLogFile=$dir/log/slurmd-%n.log"
fi
partition_nodes=$(IFS=,; echo "${names[*]}")
cat > "$dir/slurm.conf" <<CONF
ClusterName=dlbench-local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
EnforcePartLimits=ALL
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
StateSaveLocation=$dir/state
SlurmctldPidFile=$dir/slurmctld.pid
SlurmctldLogFile=$dir/log/slurmctld.log
$slurmd_files
${node_lines%$'\n'}
PartitionName=debug Nodes=$partition_nodes Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -c -f "$SLURM_CONF"   # -c: a clean start, no state from an earlier cluster
if [ "$nodes" = 1 ]; then
  slurmd -f "$SLURM_CONF"
else
  for name in "${names[@]}"; do mkdir -p "$dir/spool/$name"; slurmd -f "$SLURM_CONF" -N "$name"; done
fi
for _ in $(seq 100); do
  if [ "$(sinfo -h -N -o %T 2>/dev/null | grep -cx idle)" = "$nodes" ]; then echo "SLURM_CONF=$SLURM_CONF"; exit 0; fi
  sleep 0.2
done
echo "slurm-local: not every node became idle in 20 s (logs: $dir/log)" >&2
stop; exit 1
