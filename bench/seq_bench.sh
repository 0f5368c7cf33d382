#!/usr/bin/env bash
# bench/seq_bench.sh: training tokens/second of the character Transformer
# (models/char_transformer.spec: 4 blocks, width 128, 4 heads, context 128,
# global batch 32) in ringtrain and in PyTorch (bench/seq_torch.py, the same
# model), side by side in one run: 1 thread (ringtrain 1 rank, torch 1
# thread) and the whole 2-core machine (ringtrain 2 ranks, torch 2 threads).
# Runs alternate, REPS times each, and the medians are compared. Both sides
# get OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set before torch is imported
# (Debian's torch links OpenBLAS, whose pool torch.set_num_threads does not
# resize).
#
#   bash bench/seq_bench.sh [BUILD_DIR] [TOKENS_H5] [STEPS] [REPS]
#
# ringtrain's figure is its epoch line (all steps, the first included);
# PyTorch's leaves out its first 2 steps.
set -euo pipefail
BUILD=${1:-build}
DATA=${2:-data/fortunes-train.h5}
STEPS=${3:-30}
REPS=${4:-3}
limit=$((STEPS * 4096))
MPI=(mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp -x OPENBLAS_NUM_THREADS=1)

rt() { # NP -> tokens/s
  "${MPI[@]}" -np "$1" "$BUILD/ringtrain" train --model models/char_transformer.spec --data "$DATA" \
    --batch-size 32 --epochs 1 --train-limit "$limit" --log-every 0 |
    sed -nE 's/^epoch 1\/1 .*\| +([0-9]+) img\/s.*/\1/p'
}
pt() { # THREADS -> tokens/s
  OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=$1 /usr/bin/python3 bench/seq_torch.py --data "$DATA" --batch 32 \
    --bench $((STEPS + 2)) --threads "$1" | sed -nE 's/.*: ([0-9]+) tokens\/s.*/\1/p'
}
median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "char Transformer, batch 32 x 128 tokens, $STEPS steps per run, median of $REPS; $(nproc) cores: $(lscpu | sed -nE 's/^Model name: +//p')"
for cfg in "1 1" "2 2"; do
  set -- $cfg
  r=() p=()
  for _ in $(seq "$REPS"); do
    r+=("$(rt "$1")")
    p+=("$(pt "$2")")
  done
  rb=$(echo "${r[@]}" | median)
  pb=$(echo "${p[@]}" | median)
  awk -v np="$1" -v th="$2" -v rb="$rb" -v pb="$pb" -v rs="${r[*]}" -v ps="${p[*]}" 'BEGIN {
    printf "ringtrain %d rank(s): %6d tokens/s (runs: %s) | pytorch %d thread(s): %6d tokens/s (runs: %s) | ratio %.2fx\n",
      np, rb, rs, th, pb, ps, rb / pb }'
done
