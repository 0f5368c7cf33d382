#!/usr/bin/env bash
# bench/seq_compare.sh: the character Transformer trained by ringtrain on 2
# ranks and by PyTorch (bench/seq_torch.py, the identical model) as a paired
# comparison: for each seed, PyTorch draws the initial weights and writes them
# out, ringtrain starts from them (--init-from), and PyTorch draws exactly the
# training windows ringtrain's two ranks draw (--ringtrain-world 2), with the
# same global batch, Adam settings and learning-rate warm-up. What differs is
# only the arithmetic of the two systems. Then the LSTM language model on
# ringtrain with the same settings. Prints the validation losses
# (nats/token and bits/char), the ratio per seed and over all seeds.
#
#   bash bench/seq_compare.sh [BUILD_DIR] [DATA_PREFIX] [EPOCHS]
#   env: SEEDS ("1 2 3"), LR (2e-3), WARMUP (100 steps), OUT (runs/compare)
#
# DATA_PREFIX-train.h5 / -val.h5 come from datasets/fortunes.sh. One epoch of
# global batch 32 x 128 tokens is (train tokens / 4096) steps.
set -euo pipefail
BUILD=${1:-build}
PREFIX=${2:-data/fortunes}
EPOCHS=${3:-1}
SEEDS=${SEEDS:-1 2 3}
LR=${LR:-2e-3}
WARMUP=${WARMUP:-100}
OUT=${OUT:-runs/compare}
mkdir -p "$OUT"
MPI=(mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp -x OPENBLAS_NUM_THREADS=1 -np 2)
common=(--data "$PREFIX-train.h5" --test-data "$PREFIX-val.h5" --batch-size 32 --lr "$LR"
        --warmup-steps "$WARMUP" --epochs "$EPOCHS" --log-every 100)
final_loss() { sed -nE "s/$2/\1/p" "$1"; }

: >"$OUT/pairs.txt"
for seed in $SEEDS; do
    t0=$(date +%s)
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/seq_torch.py \
        --data "$PREFIX-train.h5" --val "$PREFIX-val.h5" --batch 32 --lr "$LR" \
        --warmup-steps "$WARMUP" --epochs "$EPOCHS" --seed "$seed" --ringtrain-world 2 \
        --threads 1 --init-out "$OUT/init-seed$seed.h5" | tee "$OUT/torch_transformer_seed$seed.log"
    t1=$(date +%s)
    rm -rf "$OUT/char_transformer_seed$seed"
    "${MPI[@]}" "$BUILD/ringtrain" train --model models/char_transformer.spec "${common[@]}" \
        --seed "$seed" --init-from "$OUT/init-seed$seed.h5" \
        --checkpoint-dir "$OUT/char_transformer_seed$seed" | tee "$OUT/ringtrain_transformer_seed$seed.log"
    t2=$(date +%s)
    pt=$(final_loss "$OUT/torch_transformer_seed$seed.log" '^final: val loss ([0-9.]+) .*')
    rt=$(final_loss "$OUT/ringtrain_transformer_seed$seed.log" '^final: .*test loss ([0-9.]+),.*')
    steps=$(final_loss "$OUT/ringtrain_transformer_seed$seed.log" '^final: .* ([0-9]+) steps,.*')
    echo "$seed $rt $pt $steps $((t2 - t1)) $((t1 - t0))" >>"$OUT/pairs.txt"
done
t0=$(date +%s)
rm -rf "$OUT/char_lstm"
"${MPI[@]}" "$BUILD/ringtrain" train --model models/char_lstm.spec "${common[@]}" --seed 1 \
    --checkpoint-dir "$OUT/char_lstm" | tee "$OUT/ringtrain_lstm.log"
t1=$(date +%s)
ls=$(final_loss "$OUT/ringtrain_lstm.log" '^final: .*test loss ([0-9.]+),.*')

awk -v ls="$ls" -v lt=$((t1 - t0)) -v lr="$LR" -v wu="$WARMUP" '
{ seed[NR] = $1; rt[NR] = $2; pt[NR] = $3; steps = $4; rts[NR] = $5; pts[NR] = $6 }
END {
    printf "%d steps, global batch 32 x 128 tokens, Adam lr %s, warm-up %d steps\n", steps, lr, wu
    printf "seed  ringtrain (2 ranks)             pytorch (1 thread)              ratio\n"
    worst = 0
    for (i = 1; i <= NR; i++) {
        r = rt[i] / pt[i]; srt += rt[i]; spt += pt[i]; if (r > worst) worst = r
        printf "%-4s  %.4f nats = %.3f bits, %4d s  %.4f nats = %.3f bits, %4d s  %.4f\n",
            seed[i], rt[i], rt[i] / log(2), rts[i], pt[i], pt[i] / log(2), pts[i], r
    }
    printf "mean  %.4f nats = %.3f bits           %.4f nats = %.3f bits           %.4f\n",
        srt / NR, srt / NR / log(2), spt / NR, spt / NR / log(2), srt / spt
    printf "ringtrain lstm (2 ranks, seed 1): val %.4f nats = %.3f bits/char, %d s\n", ls, ls / log(2), lt
    printf "worst ratio %.4f, mean ratio %.4f (done: <= 1.02)\n", worst, srt / spt
}' "$OUT/pairs.txt" | tee "$OUT/summary.txt"
