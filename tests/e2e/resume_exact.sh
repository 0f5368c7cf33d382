#!/usr/bin/env bash
# A run checkpointed after epoch 1 and resumed for epoch 2 ends with exactly
# the parameters and optimizer state of a run that was never interrupted.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/resume.XXXX")
trap 'rm -rf "$work"' EXIT
common=(--model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" --batch-size 32 --seed 5 --log-every 0)
rt_mpirun 2 train "${common[@]}" --epochs 2 --checkpoint-dir "$work/straight" >/dev/null
rt_mpirun 2 train "${common[@]}" --epochs 1 --checkpoint-dir "$work/split" >/dev/null
out=$(rt_mpirun 2 train "${common[@]}" --epochs 2 --checkpoint-dir "$work/split" --resume "$work/split")
grep -q "resuming from" <<<"$out" || fail "resume not reported: $out"
a="$work/straight/$(cat "$work/straight/latest")"
b="$work/split/$(cat "$work/split/latest")"
[ "$(basename "$a")" = "$(basename "$b")" ] || fail "different final steps: $a vs $b"
h5diff -q "$a" "$b" /params /params || fail "parameters differ after resume"
h5diff -q "$a" "$b" /optim /optim || fail "optimizer state differs after resume"
echo "PASS: resumed run is bitwise identical ($(basename "$b"))"
