#!/usr/bin/env bash
# The CPU engine's convolution method (docs/PERFORMANCE.md, "Winograd
# convolutions"): the model summary names it per conv layer (Winograd
# F(2x2,3x3) for the tutorial's conv2, im2col for conv1 with its 1 input
# channel); RINGTRAIN_CPU_CONV=im2col puts every convolution on im2col and
# trains to the same losses within rounding but not the same bits (the
# switch really switches); any other value is one line, exit 2, on every rank.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
work=$(mktemp -d "$BUILD/convm.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
fashion_subset 512 256
args=(train --model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" --test-data "$TEST_H5"
  --epochs 1 --batch-size 32 --optimizer adam --lr 0.001 --seed 3 --progress none --log-every 0)

rt_mpirun 2 "${args[@]}" --checkpoint-dir "$work/wino" >wino.log 2>&1 || fail "winograd run: $(cat wino.log)"
RINGTRAIN_CPU_CONV=im2col rt_mpirun 2 "${args[@]}" \
  --checkpoint-dir "$work/im2col" >im2col.log 2>&1 || fail "im2col run: $(cat im2col.log)"
grep -qE '^  conv1 .* relu, im2col \(' wino.log || fail "conv1's method: $(grep conv1 wino.log)"
grep -qE '^  conv2 .* relu, winograd F\(2x2,3x3\) \(' wino.log || fail "conv2's method: $(grep conv2 wino.log)"
grep -qE '^  conv2 .* relu, im2col \(' im2col.log || fail "conv2 under im2col: $(grep conv2 im2col.log)"

# loss LOG: the final test loss
loss() { sed -nE 's/^final: .*test loss ([0-9.]+).*/\1/p' "$1"; }
lw=$(loss wino.log) li=$(loss im2col.log)
[ -n "$lw" ] && [ -n "$li" ] || fail "no final loss: $(tail -3 wino.log im2col.log)"
awk -v a="$lw" -v b="$li" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-3 * (1 + b)) }' ||
  fail "test loss $lw (winograd) vs $li (im2col)"
a="$work/wino/$(cat wino/latest)" b="$work/im2col/$(cat im2col/latest)"
if h5diff -q "$a" "$b" /params /params; then fail "the two methods gave the same bits: no switch"; fi

NP=2 RT_WRAP="env RINGTRAIN_CPU_CONV=fast" expect_error "RINGTRAIN_CPU_CONV=fast: expected 'winograd'" 2 -- \
  "${args[@]}" --checkpoint-dir "$work/bad"
echo "ok: conv2 by Winograd, conv1 by im2col; test loss $lw vs $li with im2col; bad value refused"
