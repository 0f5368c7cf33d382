#!/usr/bin/env bash
# The training workflow end to end on 3 ranks (docs/WORKFLOW.md): validation
# split, metrics JSON lines with the documented fields, early stopping that
# stops, keeps one best checkpoint and restores it, clipping with identical
# replicas, plot (well-formed SVG with the curves), eval on any number of
# ranks, predict from HDF5 and from a PGM image, and fine-tuning that loads
# the matching layers, reports the others and keeps frozen ones fixed.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/workflow.XXXX")
trap 'rm -rf "$work"' EXIT
printf 'input 1 28 28\nconv 8 3 same relu\nmaxpool 2\nflatten\ndropout 0.25\ndense 10\nloss softmax_cross_entropy\n' >"$work/a.spec"

out=$(rt_mpirun 3 train --model "$work/a.spec" --data "$TRAIN_H5" --test-data "$TEST_H5" \
  --val-fraction 0.2 --epochs 8 --batch-size 30 --optimizer adamw --lr 0.003 \
  --lr-schedule cosine --warmup-steps 10 --clip-norm 0.5 --l1 1e-5 \
  --early-stop val_loss --patience 1 --min-delta 0.03 --restore-best \
  --log-every 10 --progress plain --checkpoint-dir "$work/run")
echo "$out" | grep -v '^  ' | tail -12
m="$work/run/metrics.jsonl"

# Metrics: every line is JSON with the documented fields.
train_ok='.step > 0 and .epoch > 0 and .lr > 0 and .loss > 0 and .top1 >= 0 and .top5 >= .top1 and .images_per_s > 0 and .grad_norm >= 0 and .time > 0'
eval_ok='(.split | type) == "string" and .count > 0 and .loss > 0 and .top5 >= .top1 and (.per_class | length) == 10 and (.confusion | length) == 10 and (.confusion | flatten | add) == .count'
jq -s -e "length > 0 and all(.[]; (.type == \"train\" and ($train_ok)) or (.type == \"eval\" and ($eval_ok)))" "$m" >/dev/null ||
  fail "a record lacks a documented field: $(jq -c "select((.type == \"train\" and ($train_ok)) or (.type == \"eval\" and ($eval_ok)) | not)" "$m" | head -2)"
[ "$(jq -s '[.[] | select(.type == "eval" and .split == "val" and (.restored_best | not))][0].count' "$m")" = 400 ] ||
  fail "validation split is not the last 400 of 2000 samples"

# Early stopping stopped early, kept one best checkpoint, restored it.
grep -q '^early stopping: val_loss has not improved' <<<"$out" || fail "early stopping did not trigger"
epochs=$(sed -nE 's/^final: ([0-9]+) epochs.*/\1/p' <<<"$out")
[ "$epochs" -lt 8 ] || fail "ran all 8 epochs"
[ "$(ls "$work/run/best"/ckpt-*.h5 | wc -l)" -eq 1 ] || fail "expected exactly one best checkpoint"
best=$(jq -s '[.[] | select(.type == "eval" and .split == "val" and (.restored_best | not)) | .loss] | min' "$m")
restored=$(jq -s '[.[] | select(.restored_best == true and .split == "val") | .loss][0]' "$m")
[ "$best" = "$restored" ] || fail "restored val loss $restored is not the best $best"
grep -q '^replicas: parameters identical on all 3 rank(s)' <<<"$out" || fail "replica check missing"
echo "ok: stopped after $epochs epochs, best val loss $best restored, replicas identical"

# Plot: well-formed SVG whose train curve has one point per train record.
"$BIN" plot --metrics "$m" --out "$work/plot" >/dev/null
xmllint --noout "$work/plot-curves.svg" "$work/plot-confusion.svg" || fail "SVG not well-formed"
for s in train_loss val_loss test_loss train_top1 val_top1 test_top1; do
  grep -q "data-series=\"$s\"" "$work/plot-curves.svg" || fail "no $s curve"
done
pts=$(xmllint --xpath 'string(//*[local-name()="polyline"][@data-series="train_loss"]/@points)' "$work/plot-curves.svg" | wc -w)
[ "$pts" -eq "$(jq -s '[.[] | select(.type == "train")] | length' "$m")" ] || fail "train curve has $pts points"
[ "$(grep -c 'class="cell"' "$work/plot-confusion.svg")" -eq 100 ] || fail "confusion picture is not 10x10"
echo "ok: plot ($pts points on the training curve)"

# Eval: the same numbers on 1 and 3 ranks.
rt_mpirun 1 eval --checkpoint "$work/run/best" --data "$TEST_H5" >"$work/e1"
rt_mpirun 3 eval --checkpoint "$work/run/best" --data "$TEST_H5" --json "$work/eval.jsonl" >"$work/e3"
e1=$(head -1 "$work/e1" | sed 's/.* on //')
e3=$(head -1 "$work/e3" | sed 's/.* on //')
[ "$e1" = "$e3" ] || fail "eval differs between 1 and 3 ranks: '$e1' vs '$e3'"
jq -e '.type == "eval" and .count == 500' "$work/eval.jsonl" >/dev/null || fail "eval --json record"
echo "ok: eval on 1 and 3 ranks: $e1"

# Predict: a PGM made from test sample 0 gives the same answer as the HDF5 sample.
h5dump -d images -s 0,0,0,0 -c 1,1,28,28 -b NATIVE -o "$work/raw.bin" "$TEST_H5" >/dev/null
[ "$(stat -c %s "$work/raw.bin")" -eq 784 ] || fail "h5dump did not extract sample 0"
{ printf 'P5\n28 28\n255\n'; cat "$work/raw.bin"; } >"$work/img0.pgm"
p1=$("$BIN" predict --checkpoint "$work/run/best" --data "$TEST_H5" --limit 1 --top-k 3 | head -1 | sed -E 's/^0  //; s/  label.*//')
p2=$("$BIN" predict --checkpoint "$work/run/best" --images "$work/img0.pgm" --top-k 3 | sed -E 's/^[^ ]+  //')
[ -n "$p1" ] && [ "$p1" = "$p2" ] || fail "predict on PGM '$p2' differs from HDF5 '$p1'"
echo "ok: predict $p2"

# Fine-tuning: conv1 matches, the new head does not; frozen conv1 stays as loaded.
printf 'input 1 28 28\nconv 8 3 same relu\nmaxpool 2\nflatten\ndense 32 relu\ndense 10\nloss softmax_cross_entropy\n' >"$work/b.spec"
ft=$(rt_mpirun 2 train --model "$work/b.spec" --data "$TRAIN_H5" --epochs 1 --batch-size 32 \
  --init-from "$work/run/best" --freeze-loaded --log-every 0 --progress none --checkpoint-dir "$work/ft")
grep -q 'init from .*: 2 of 6 tensors loaded (frozen)' <<<"$ft" || fail "init report: $ft"
grep -q 'loaded conv1.weight (8,1,3,3)' <<<"$ft" || fail "conv1.weight not loaded"
grep -q 'not loaded dense1.weight: shape (32,1568) in the model, (10,1568) in the file' <<<"$ft" ||
  fail "dense1 mismatch not reported"
grep -q 'not loaded dense2.weight (10,32): not in the file' <<<"$ft" || fail "dense2 not reported"
src=$(ls "$work/run/best"/ckpt-*.h5)
h5diff -q "$src" "$work/ft/$(cat "$work/ft/latest")" /params/conv1.weight /params/conv1.weight ||
  fail "frozen conv1.weight changed"
echo "PASS: workflow"
