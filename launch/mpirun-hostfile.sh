#!/usr/bin/env bash
# Runs ringtrain across the nodes of an Open MPI hostfile:
#   launch/mpirun-hostfile.sh HOSTFILE RANKS_PER_NODE <ringtrain args...>
# e.g. 4 nodes x 4 ranks, 8 cores each:
#   CORES_PER_NODE=32 launch/mpirun-hostfile.sh hosts.txt 4 train --model ... --data ...
# Each rank gets CORES_PER_NODE / RANKS_PER_NODE cores (default: this machine's
# core count; set it when the nodes differ from the launch machine), is bound to
# them (--map-by ppr:R:node:PE=T --bind-to core) and runs that many compute
# threads (ringtrain's --threads; OpenBLAS's own pool stays at 1). To choose
# RANKS_PER_NODE from the cores and the global batch: launch/split.sh. The binary and the data must be at the same paths on every node
# (shared file system), and each hostfile line needs slots >= RANKS_PER_NODE.
# Environment:
#   RT_BIN            trainer (default build/ringtrain of this repository)
#   CORES_PER_NODE    cores per node (default nproc here)
#   RT_MPIRUN_FLAGS   extra mpirun flags, e.g. "--mca btl_tcp_if_include 10.0.0.0/8"
#                     or, on cluster/hosts, the rsh agent and interface flags
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: launch/mpirun-hostfile.sh HOSTFILE RANKS_PER_NODE ringtrain-args..."
hostfile=${1:?$usage}
per_node=${2:?$usage}
shift 2
[ -r "$hostfile" ] || { echo "mpirun-hostfile: cannot read hostfile $hostfile" >&2; exit 1; }
[[ "$per_node" =~ ^[1-9][0-9]*$ ]] || { echo "mpirun-hostfile: RANKS_PER_NODE must be a positive integer: $per_node" >&2; exit 1; }
bin=${RT_BIN:-$here/build/ringtrain}
cores=${CORES_PER_NODE:-$(nproc)}
threads=$((cores / per_node))
[ "$threads" -ge 1 ] || { echo "mpirun-hostfile: $per_node ranks per node > $cores cores (set CORES_PER_NODE)" >&2; exit 1; }
# Nodes: the hostfile's non-empty, non-comment lines.
nodes=$(grep -cvE '^[[:space:]]*(#|$)' "$hostfile" || true)
[ "$nodes" -ge 1 ] || { echo "mpirun-hostfile: no hosts in $hostfile" >&2; exit 1; }
flags=(-np $((nodes * per_node)) --hostfile "$hostfile"
  --map-by "ppr:$per_node:node:PE=$threads" --bind-to core
  -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS="$threads")
[ "$(id -u)" -ne 0 ] || flags+=(--allow-run-as-root)
# shellcheck disable=SC2086
exec mpirun "${flags[@]}" ${RT_MPIRUN_FLAGS:-} "$bin" "$@"
