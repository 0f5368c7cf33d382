#!/usr/bin/env bash
# bench/seq_compare.sh: the character Transformer trained by ringtrain on 2
# ranks and by PyTorch (bench/seq_torch.py, the same model) for the same
# number of steps, with the same data, global batch and hyperparameters;
# then the LSTM language model on ringtrain with the same settings. Prints
# the validation losses (nats/token and bits/char) and the ratio.
#
#   bash bench/seq_compare.sh [BUILD_DIR] [DATA_PREFIX] [EPOCHS]
#
# DATA_PREFIX-train.h5 / -val.h5 come from datasets/fortunes.sh. One epoch of
# global batch 32 x 128 tokens is (train tokens / 4096) steps.
set -euo pipefail
BUILD=${1:-build}
PREFIX=${2:-data/fortunes}
EPOCHS=${3:-1}
LR=${LR:-2e-3}
OUT=${OUT:-runs/compare}
mkdir -p "$OUT"
MPI=(mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp -x OPENBLAS_NUM_THREADS=1 -np 2)
common=(--data "$PREFIX-train.h5" --test-data "$PREFIX-val.h5" --batch-size 32 --lr "$LR"
        --epochs "$EPOCHS" --log-every 100 --seed 1)

t0=$(date +%s)
"${MPI[@]}" "$BUILD/ringtrain" train --model models/char_transformer.spec "${common[@]}" \
    --checkpoint-dir "$OUT/char_transformer" | tee "$OUT/ringtrain_transformer.log"
t1=$(date +%s)
steps=$(sed -nE 's/^final: .* ([0-9]+) steps,.*/\1/p' "$OUT/ringtrain_transformer.log")
/usr/bin/python3 bench/seq_torch.py --data "$PREFIX-train.h5" --val "$PREFIX-val.h5" \
    --steps "$steps" --batch 32 --lr "$LR" --threads 2 | tee "$OUT/torch_transformer.log"
t2=$(date +%s)
"${MPI[@]}" "$BUILD/ringtrain" train --model models/char_lstm.spec "${common[@]}" \
    --checkpoint-dir "$OUT/char_lstm" | tee "$OUT/ringtrain_lstm.log"
t3=$(date +%s)

rt=$(sed -nE 's/^final: .*test loss ([0-9.]+),.*/\1/p' "$OUT/ringtrain_transformer.log")
pt=$(sed -nE 's/^final: val loss ([0-9.]+) .*/\1/p' "$OUT/torch_transformer.log")
ls=$(sed -nE 's/^final: .*test loss ([0-9.]+),.*/\1/p' "$OUT/ringtrain_lstm.log")
awk -v rt="$rt" -v pt="$pt" -v ls="$ls" -v s="$steps" -v a=$((t1 - t0)) -v b=$((t2 - t1)) \
    -v c=$((t3 - t2)) 'BEGIN {
    printf "steps %d, global batch 32 x 128 tokens, Adam lr %s\n", s, ENVIRON["LR"] ? ENVIRON["LR"] : "2e-3"
    printf "ringtrain transformer (2 ranks): val %.4f nats/token = %.3f bits/char, %d s\n", rt, rt / log(2), a
    printf "pytorch   transformer (2 threads): val %.4f nats/token = %.3f bits/char, %d s\n", pt, pt / log(2), b
    printf "ringtrain lstm        (2 ranks): val %.4f nats/token = %.3f bits/char, %d s\n", ls, ls / log(2), c
    printf "ringtrain / pytorch val loss: %.4f (done: <= 1.02)\n", rt / pt }' | tee "$OUT/summary.txt"
