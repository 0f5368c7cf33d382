#!/usr/bin/env bash
# Runs `ringtrain` with N ranks on this machine:  launch/mpirun-local.sh N <ringtrain args...>
# One OpenBLAS thread per rank when the ranks fill the cores; Open MPI's
# root and oversubscription switches when they are needed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
np=${1:?usage: mpirun-local.sh NRANKS ringtrain-args...}
shift
bin=${RINGTRAIN_BIN:-$here/build/ringtrain}
cores=$(nproc)
threads=${OPENBLAS_NUM_THREADS:-$(( cores / np > 0 ? cores / np : 1 ))}
flags=(-np "$np" -x OPENBLAS_NUM_THREADS="$threads")
if [ "$(id -u)" -eq 0 ]; then flags+=(--allow-run-as-root); fi
if [ "$np" -gt "$cores" ]; then flags+=(--oversubscribe); fi
if [ "$np" -gt "$cores" ]; then flags+=(--bind-to none); elif [ "$threads" -eq 1 ]; then flags+=(--bind-to core); fi
exec mpirun "${flags[@]}" "$bin" "$@"
