#!/usr/bin/env bash
# launch/split.sh CORES GLOBAL_BATCH [PARAMS]: how to use one node's CORES for
# ringtrain: prints "RANKS THREADS" (ranks per node, compute threads per rank,
# RANKS x THREADS <= CORES). mpirun-local.sh uses it for N = auto; for Slurm,
# submit with --ntasks-per-node=RANKS --cpus-per-task=THREADS.
#
# The rule (docs/CLUSTER.md, "Ranks x threads per node"):
#   - ranks before threads: a rank computes its whole step on its own core,
#     while a thread shares every op and GEMM with the others and waits for
#     the slowest part; on the tutorial CNN 16 ranks x 1 thread trained at
#     3-6x the images/s of 1 rank x 16 threads (docs/PERFORMANCE.md);
#   - but at least MIN_LOCAL (16) samples per rank: below that the GEMMs get
#     too thin to run at speed, so smaller global batches get fewer ranks,
#     each with more threads;
#   - and every replica must fit: with PARAMS (the count `ringtrain train`
#     prints as "model ...: N parameters") each rank holds about 16 bytes a
#     parameter (parameters, gradients, two Adam moments); ranks are capped
#     at half the node's available memory (MemAvailable, or NODE_MEM_MIB).
# Environment: MIN_LOCAL (16), NODE_MEM_MIB.
set -euo pipefail
usage="usage: launch/split.sh CORES GLOBAL_BATCH [PARAMS]"
cores=${1:?$usage}
batch=${2:?$usage}
params=${3:-0}
for v in "$cores" "$batch" "$params"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "split.sh: not a number: $v ($usage)" >&2; exit 2; }
done
[ "$cores" -ge 1 ] && [ "$batch" -ge 1 ] || { echo "split.sh: CORES and GLOBAL_BATCH must be >= 1" >&2; exit 2; }
min_local=${MIN_LOCAL:-16}
ranks=$((batch / min_local))
[ "$ranks" -le "$cores" ] || ranks=$cores
[ "$ranks" -ge 1 ] || ranks=1
if [ "$params" -gt 0 ]; then
  mem_mib=${NODE_MEM_MIB:-$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)}
  fit=$((mem_mib * 1024 * 1024 / 2 / (16 * params)))
  [ "$fit" -ge 1 ] || fit=1
  [ "$ranks" -le "$fit" ] || ranks=$fit
fi
echo "$ranks $((cores / ranks))"
