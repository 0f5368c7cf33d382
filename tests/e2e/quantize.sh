#!/usr/bin/env bash
# Post-training int8 quantization of the tutorial CNN trained in the test
# (2 ranks, 6,000 Fashion-MNIST images, 2 epochs): the int8 file must be at
# least 3.5x smaller than the float checkpoint without optimizer state and
# lose at most 0.5 points of test accuracy on 2,000 test images; `eval` on
# the int8 file must report what `quantize` reported.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 6000 2000
work=$(mktemp -d "$BUILD/quantize.XXXX")
trap 'rm -rf "$work"' EXIT
rt_mpirun 2 train --model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" --epochs 2 \
  --batch-size 64 --seed 3 --log-every 0 --progress none --checkpoint-dir "$work/run" >/dev/null
out=$(rt_mpirun 2 quantize --checkpoint "$work/run" --calib-data "$TRAIN_H5" --calib-samples 300 \
  --out "$work/int8.h5" --test-data "$TEST_H5")
echo "$out"
ratio=$(sed -nE 's/.* ([0-9.]+)x smaller.*/\1/p' <<<"$out")
fl=$(sed -nE 's/^accuracy .*: float ([0-9.]+)% .*/\1/p' <<<"$out")
q8=$(sed -nE 's/^accuracy .* -> int8 ([0-9.]+)% .*/\1/p' <<<"$out")
[ -n "$ratio" ] && [ -n "$fl" ] && [ -n "$q8" ] || fail "report incomplete"
awk -v r="$ratio" 'BEGIN { exit !(r >= 3.5) }' || fail "only ${ratio}x smaller"
awk -v f="$fl" -v q="$q8" 'BEGIN { exit !(f - q <= 0.5) }' || fail "int8 $q8% vs float $fl%: more than 0.5 points lost"
ev=$(rt_mpirun 3 eval --checkpoint "$work/int8.h5" --data "$TEST_H5")
grep -q "(int8) on .* top-1 $q8%" <<<"$ev" || fail "eval on the int8 file: $(head -1 <<<"$ev"), quantize said $q8%"
h5ls "$work/int8.h5/qweights" | grep -q 'conv1.weight' || fail "no int8 weights in the file"
echo "PASS: ${ratio}x smaller, float $fl% -> int8 $q8%"
