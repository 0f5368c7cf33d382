#!/usr/bin/env bash
# Peak resident memory per rank of the 22.6 M-parameter MLP
# (models/mlp_22m.spec) with AdamW, --shard-optimizer off, node and all at
# 1, 2 and 4 ranks (oversubscribed is fine: memory, not speed), with the
# ring (private gradient buffers) and hier (the default: node-shared ones),
# beside the optimizer state each rank is predicted to hold
# (docs/COMMUNICATION.md, "ZeRO-1 across every rank"). Each run trains 8
# steps of 64 samples; the runs without a checkpoint give the training's
# peak, then (ring) one run per world size with a checkpoint gives rank 0's
# peak while it writes the file, and one run resumed from it (one more
# epoch) rank 0's peak while it reads the state back and hands it to the
# slices. Peak RSS is /usr/bin/time's maximum resident set size of each
# rank; with hier it also counts the pages of the other ranks' node-shared
# gradient copies that the rank has touched (the zero-copy sum writes every
# copy), which grows with the ranks of a node.
# Usage: bench/zero_memory.sh [BUILD_DIR]   (not a test; prints a report)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
bin="$build/ringtrain"
data="$build/testdata/fm-train-2000.h5"
[ -f "$data" ] || "$build/rt_idx2h5" --images /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
  --labels /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz --limit 2000 --out "$data" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=$("$bin" train --model "$here/models/mlp_22m.spec" --data "$data" --train-limit 64 --batch-size 64 \
  --epochs 1 --progress none 2>&1 | sed -nE 's/.*: ([0-9]+) parameters.*/\1/p' | head -1)
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GiB, $(date -u '+%F %H:%M') UTC"
echo "== mlp_22m: $n parameters; AdamW state whole: $((8 * n)) bytes"

# peak NP MODE [ARGS...]: prints each rank's peak RSS in MiB, rank order
peak() {
  local np=$1 mode=$2
  shift 2
  rm -f "$work"/rss.*
  mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp -x OPENBLAS_NUM_THREADS=1 -np "$np" \
    bash -c '/usr/bin/time -f %M -o "'"$work"'/rss.$OMPI_COMM_WORLD_RANK" "$@"' _ \
    "$bin" train --model "$here/models/mlp_22m.spec" --data "$data" --train-limit 512 --batch-size 64 \
    --epochs "${EPOCHS:-1}" --allreduce "${ALLREDUCE:-ring}" --log-every 0 --progress none --optimizer adamw --shard-optimizer "$mode" "$@" >/dev/null 2>&1
  for r in $(seq 0 $((np - 1))); do
    awk '{ printf "%.1f ", $1 / 1024 }' "$work/rss.$r"
  done
}

# the optimizer state rank 0 holds (its slice is the largest), in MiB
state_mib() {
  awk -v n="$n" -v np="$1" 'BEGIN { lines = int((n + 15) / 16); per = int(lines / np) + (lines % np > 0);
    s = per * 16; if (s > n) s = n; printf "%.1f", 8 * s / 1048576 }'
}

echo "| ranks | --allreduce | --shard-optimizer | predicted optimizer state per rank (MiB) | peak RSS per rank (MiB) |"
echo "| --- | --- | --- | --- | --- |"
for np in 1 2 4; do
  for run in ring:off ring:all hier:off hier:node hier:all; do
    backend=${run%:*} mode=${run#*:}
    pred=$(state_mib 1)
    [ "$mode" = all ] && pred=$(state_mib "$np")
    echo "| $np | $backend | $mode | $pred | $(ALLREDUCE=$backend peak "$np" "$mode") |"
  done
done
echo
echo "| ranks | --shard-optimizer | peak RSS per rank, ring, with a checkpoint written (MiB) | the same, resumed from that checkpoint for one more epoch |"
echo "| --- | --- | --- | --- |"
for np in 1 2 4; do
  for mode in off all; do
    written=$(peak "$np" "$mode" --checkpoint-dir "$work/ckpt-$np-$mode")
    echo "| $np | $mode | $written | $(EPOCHS=2 peak "$np" "$mode" --resume "$work/ckpt-$np-$mode") |"
  done
done
