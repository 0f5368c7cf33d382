#!/usr/bin/env bash
# End to end: 2 ranks train the tutorial CNN on 6,000 Fashion-MNIST images for
# 2 epochs and must reach at least 78 % test accuracy on 2,000 test images
# (the same run reaches about 83 %; chance is 10 %).
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 6000 2000
out=$(rt_mpirun 2 train --model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" \
  --test-data "$TEST_H5" --epochs 2 --batch-size 64 --seed 3 --log-every 50)
echo "$out"
final=$(grep '^final:' <<<"$out") || fail "no final line"
acc=$(sed -E 's/.*test accuracy ([0-9.]+)%.*/\1/' <<<"$final")
ips=$(sed -E 's/.* ([0-9]+) images\/s.*/\1/' <<<"$final")
awk -v a="$acc" 'BEGIN { exit !(a >= 78.0) }' || fail "test accuracy $acc% < 78%"
awk -v i="$ips" 'BEGIN { exit !(i > 0) }' || fail "no images/s reported"
[ "$(grep -c '^epoch [0-9]/2  train loss' <<<"$out")" -eq 2 ] || fail "expected 2 epoch lines"
echo "PASS: test accuracy $acc%, $ips images/s"
