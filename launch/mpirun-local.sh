#!/usr/bin/env bash
# Runs `ringtrain` with N ranks on this machine:  launch/mpirun-local.sh N|auto <ringtrain args...>
# auto: ranks and threads per rank from the cores and the global batch
# (--batch-size, default 64) by launch/split.sh (RT_PARAMS: the model's
# parameter count, to cap the ranks by memory). With N: the cores divided
# among the N ranks. Each rank is bound to its cores (--map-by slot:PE=T),
# so ringtrain's default --threads is T; OpenBLAS's own pool stays at 1
# (ringtrain splits its GEMMs over its threads). Open MPI's root and
# oversubscription switches when they are needed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
np=${1:?usage: mpirun-local.sh NRANKS|auto ringtrain-args...}
shift
bin=${RINGTRAIN_BIN:-$here/build/ringtrain}
cores=$(nproc)
if [ "$np" = auto ]; then
  batch=64
  prev=
  for a in "$@"; do
    [ "$prev" != --batch-size ] || batch=$a
    case $a in --batch-size=*) batch=${a#--batch-size=} ;; esac
    prev=$a
  done
  read -r np threads < <("$here/launch/split.sh" "$cores" "$batch" "${RT_PARAMS:-0}")
  echo "mpirun-local: $np rank(s) x $threads thread(s) on $cores cores (launch/split.sh)" >&2
else
  threads=$((cores / np > 0 ? cores / np : 1))
fi
threads=${OMP_NUM_THREADS:-$threads}
flags=(-np "$np" -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS="$threads")
if [ "$(id -u)" -eq 0 ]; then flags+=(--allow-run-as-root); fi
if [ "$((np * threads))" -gt "$cores" ]; then
  flags+=(--oversubscribe --bind-to none)
elif [ "$threads" -gt 1 ]; then
  flags+=(--map-by "slot:PE=$threads" --bind-to core)
else
  flags+=(--bind-to core)
fi
exec mpirun "${flags[@]}" "$bin" "$@"
