#!/usr/bin/env bash
# A run with a cosine schedule and warm-up, dropout, clipping and L1,
# checkpointed after epoch 1 and resumed, ends bitwise identical to a run
# that was never interrupted: the schedule continues from the checkpoint's
# step and the dropout masks are a function of (seed, rank, step).
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/resume_sched.XXXX")
trap 'rm -rf "$work"' EXIT
printf 'input 1 28 28\nconv 8 3 same relu\nmaxpool 2\nflatten\ndropout 0.3\ndense 10\nloss softmax_cross_entropy\n' >"$work/d.spec"
common=(--model "$work/d.spec" --data "$TRAIN_H5" --batch-size 32 --seed 7 --log-every 0 --progress none
  --lr-schedule cosine --warmup-steps 20 --min-lr 1e-5 --clip-norm 0.5 --l1 1e-5 --optimizer adamw)
rt_mpirun 2 train "${common[@]}" --epochs 3 --checkpoint-dir "$work/straight" >/dev/null
# The epoch count is part of the cosine schedule, so the interrupted run is
# the same 3-epoch run stopped after epoch 1: its first checkpoint.
first=$(ls "$work/straight"/ckpt-*.h5 | head -1)
mkdir -p "$work/split" && cp "$first" "$work/split/" && basename "$first" >"$work/split/latest"
out=$(rt_mpirun 2 train "${common[@]}" --epochs 3 --checkpoint-dir "$work/split" --resume "$work/split")
grep -q "resuming from" <<<"$out" || fail "resume not reported: $out"
a="$work/straight/$(cat "$work/straight/latest")"
b="$work/split/$(cat "$work/split/latest")"
[ "$(basename "$a")" = "$(basename "$b")" ] || fail "different final steps: $a vs $b"
h5dump -a config "$a" | grep -q 'lr_schedule=cosine' || fail "schedule not in the checkpoint config"
h5diff -q "$a" "$b" /params /params || fail "parameters differ after resuming mid-schedule"
h5diff -q "$a" "$b" /optim /optim || fail "optimizer state differs after resuming mid-schedule"
echo "PASS: resumed mid-schedule run is bitwise identical ($(basename "$b"))"
