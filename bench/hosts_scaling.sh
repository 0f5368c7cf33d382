#!/usr/bin/env bash
# Scaling over simulated hosts (cluster/hosts) with the network limited to
# 1 Gbit/s: `ringtrain bench step` for the tutorial CNN and the 22.6 M-parameter
# MLP on 1, 2 and 3 hosts, 32 images per rank, overlap on and off side by side
# (bench step alternates them). Scaling efficiency = step time on 1 host /
# step time on N hosts (weak scaling: the per-rank batch is fixed).
# Usage (root): bench/hosts_scaling.sh [BUILD_DIR]   (not a test; prints a report)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
export RT_HOSTS_PREFIX="rtbench-"
trap '"$here/cluster/hosts/down" >/dev/null 2>&1 || true' EXIT
RT_HOSTS_RATE=${RT_HOSTS_RATE:-1gbit} "$here/cluster/hosts/up" 3 >/dev/null
echo "== $(date -u +%F), $(nproc) cores shared by all hosts, links ${RT_HOSTS_RATE:-1gbit}, load $(cut -d' ' -f1-3 /proc/loadavg)"
for model in fashion_cnn mlp_22m; do
  for n in 1 2 3; do
    echo "-- $model on $n host(s), global batch $((32 * n))"
    "$here/cluster/hosts/mpirun" "$n" -x OPENBLAS_NUM_THREADS=1 "$build/ringtrain" bench step \
      --model "$here/models/$model.spec" --batch-size $((32 * n)) --steps 8 --warmup 2 | tail -4
  done
done
