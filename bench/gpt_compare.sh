#!/usr/bin/env bash
# bench/gpt_compare.sh: models/gpt_small.spec trained by ringtrain on 2 ranks
# and by the identical PyTorch model under DistributedDataParallel (gloo, 2
# processes, bench/gpt_torch.py), side by side in one run, paired per seed:
# PyTorch draws the initial weights and writes them out, ringtrain starts from
# them (--init-from), and PyTorch's ranks take exactly the windows
# ringtrain's ranks draw; both use AdamW (weight decay 0.1), a linear warm-up
# then cosine schedule, gradient clipping at 1.0, the same global batch and
# steps. The order of the two alternates between seeds. Prints, per seed, the
# validation loss after the same number of steps (windows tiling each rank's
# part of the first VAL_LIMIT validation tokens) and the training tokens/s of
# the whole job (all steps, first included); then the mean loss ratio over
# the seeds and the median tokens/s ratio.
#
#   bash bench/gpt_compare.sh [BUILD_DIR] [DATA_PREFIX]
#   env: SEEDS ("1 2 3"), STEPS (20), BATCH (8 windows of 256), VAL_LIMIT (8192),
#        LR (6e-4), MIN_LR (6e-5), WARMUP (5), OUT (runs/gpt_compare)
#
# DATA_PREFIX-train.h5 / -val.h5 come from datasets/gpt-text.sh (default
# data/gpt-text). The training stream is limited to STEPS x BATCH x 256 tokens
# so that one epoch is STEPS steps (the cosine schedule spans the run).
set -euo pipefail
BUILD=${1:-build}
PREFIX=${2:-data/gpt-text}
SEEDS=${SEEDS:-1 2 3}
STEPS=${STEPS:-20}
BATCH=${BATCH:-8}
VAL_LIMIT=${VAL_LIMIT:-8192}
LR=${LR:-6e-4}
MIN_LR=${MIN_LR:-6e-5}
WARMUP=${WARMUP:-5}
OUT=${OUT:-runs/gpt_compare}
T=256
LIMIT=$((STEPS * BATCH * T))
mkdir -p "$OUT"
MPI=(mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp -x OPENBLAS_NUM_THREADS=1 -np 2)

run_torch() { # SEED
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/gpt_torch.py \
        --data "$PREFIX-train.h5" --val "$PREFIX-val.h5" --train-limit "$LIMIT" \
        --val-limit "$VAL_LIMIT" --batch "$BATCH" --steps "$STEPS" --lr "$LR" --min-lr "$MIN_LR" \
        --warmup-steps "$WARMUP" --weight-decay 0.1 --clip-norm 1.0 --seed "$1" \
        >"$OUT/torch_seed$1.log" 2>&1
}
run_ringtrain() { # SEED
    "${MPI[@]}" "$BUILD/ringtrain" train --model models/gpt_small.spec \
        --data "$PREFIX-train.h5" --test-data "$PREFIX-val.h5" --train-limit "$LIMIT" \
        --test-limit "$VAL_LIMIT" --batch-size "$BATCH" --epochs 1 --optimizer adamw \
        --lr "$LR" --weight-decay 0.1 --lr-schedule cosine --warmup-steps "$WARMUP" \
        --min-lr "$MIN_LR" --clip-norm 1.0 --seed "$1" --init-from "$OUT/init-seed$1.h5" \
        --log-every 0 --progress none >"$OUT/ringtrain_seed$1.log" 2>&1
}

: >"$OUT/pairs.txt"
i=0
for seed in $SEEDS; do
    OMP_NUM_THREADS=1 /usr/bin/python3 bench/gpt_torch.py --data "$PREFIX-train.h5" --seed "$seed" \
        --init-out "$OUT/init-seed$seed.h5" --init-only
    if [ $((i % 2)) -eq 0 ]; then run_torch "$seed"; run_ringtrain "$seed"
    else run_ringtrain "$seed"; run_torch "$seed"; fi
    i=$((i + 1))
    rt=$(sed -nE 's/^final: .*test loss ([0-9.]+),.*/\1/p' "$OUT/ringtrain_seed$seed.log")
    rts=$(sed -nE 's/^epoch 1\/1 .*\|  ([0-9]+) tok\/s.*/\1/p' "$OUT/ringtrain_seed$seed.log")
    pt=$(sed -nE 's/^final: val loss ([0-9.]+)/\1/p' "$OUT/torch_seed$seed.log")
    pts=$(sed -nE 's/^train: .* ([0-9]+) tokens\/s.*/\1/p' "$OUT/torch_seed$seed.log")
    [ -n "$rt" ] && [ -n "$pt" ] || { echo "seed $seed: a run failed, see $OUT/*_seed$seed.log" >&2; exit 1; }
    echo "$seed $rt $pt $rts $pts" >>"$OUT/pairs.txt"
done

sort -k1n "$OUT/pairs.txt" | awk -v steps="$STEPS" -v b="$BATCH" -v vl="$VAL_LIMIT" '
function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ n++; seed[n] = $1; rt[n] = $2; pt[n] = $3; rs[n] = $4; ps[n] = $5; srt += $2; spt += $3 }
END {
    printf "gpt_small, 2 ranks, %d steps of %d x 256 tokens, AdamW + cosine + clipping; val: first %d tokens\n", steps, b, vl
    printf "seed  ringtrain val loss  tokens/s   PyTorch DDP val loss  tokens/s   loss ratio  speed ratio\n"
    for (i = 1; i <= n; i++)
        printf "%-4s  %.4f              %6d     %.4f                %6d     %.4f      %.2fx\n",
            seed[i], rt[i], rs[i], pt[i], ps[i], rt[i] / pt[i], rs[i] / ps[i]
    mr = median(rs, n); mp = median(ps, n)
    printf "mean val loss: ringtrain %.4f, PyTorch %.4f, ratio %.4f (done: within 2 %%)\n", srt / n, spt / n, srt / spt
    printf "median tokens/s: ringtrain %.0f, PyTorch DDP %.0f, ratio %.2fx (target >= 1.3x)\n", mr, mp, mr / mp
}' | tee "$OUT/summary.txt"
