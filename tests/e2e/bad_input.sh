#!/usr/bin/env bash
# Bad input ends every rank with one clear line and a non-zero exit, no hang.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/bad.XXXX")
trap 'rm -rf "$work"' EXIT
spec="$SRC/models/fashion_cnn.spec"

# expect_error WANT_SUBSTRING WANT_EXIT -- ringtrain args
expect_error() {
  local want=$1 want_rc=$2
  shift 3
  set +e
  RT_TIMEOUT=60 rt_mpirun 2 "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  set -e
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "timed out (hang) on: $*"
  [ "$rc" -eq "$want_rc" ] || [ "$want_rc" = any -a "$rc" -ne 0 ] ||
    fail "exit $rc, expected $want_rc on: $* ($(cat "$work/err"))"
  local lines
  lines=$(grep -c '^ringtrain' "$work/err" || true)
  [ "$lines" -eq 1 ] || fail "expected one ringtrain line, got $lines: $(cat "$work/err")"
  grep -q -- "$want" "$work/err" || fail "message lacks '$want': $(cat "$work/err")"
  echo "ok: $(grep '^ringtrain' "$work/err")"
}

expect_error "/no/such/file.h5" 1 -- train --model "$spec" --data /no/such/file.h5
expect_error "labelz" 1 -- train --model "$spec" --data "$TRAIN_H5" --y-name labelz
printf 'input 1 28 28\nconv 8 3 same relu\nconv2d 8 3\nflatten\ndense 10\nloss softmax_cross_entropy\n' >"$work/typo.spec"
expect_error "typo.spec:3" 1 -- train --model "$work/typo.spec" --data "$TRAIN_H5"
printf 'input 1 28 28\nconv 8 x3 same\nflatten\ndense 10\nloss softmax_cross_entropy\n' >"$work/num.spec"
expect_error "num.spec:2" 1 -- train --model "$work/num.spec" --data "$TRAIN_H5"
expect_error "/no/model.spec" 1 -- train --model /no/model.spec --data "$TRAIN_H5"

# Labels 0..11 in an idx file: 10 and 11 are out of range for a 10-class model.
{
  printf '\x00\x00\x08\x01\x00\x00\x00\x0c'
  printf '\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b'
} | gzip >"$work/labels.gz"
{
  printf '\x00\x00\x08\x03\x00\x00\x00\x0c\x00\x00\x00\x1c\x00\x00\x00\x1c'
  head -c $((12 * 784)) /dev/zero
} | gzip >"$work/images.gz"
"$BUILD/rt_idx2h5" --images "$work/images.gz" --labels "$work/labels.gz" --out "$work/badlabel.h5" >/dev/null
expect_error "out of range" 1 -- train --model "$spec" --data "$work/badlabel.h5" --batch-size 4

expect_error "did you mean --epochs" 2 -- train --model "$spec" --data "$TRAIN_H5" --epoch 3
expect_error "--lr expects a positive number" 2 -- train --model "$spec" --data "$TRAIN_H5" --lr abc
expect_error "--batch-size" 1 -- train --model "$spec" --data "$TRAIN_H5" --batch-size 1
mkdir -p "$work/empty"
expect_error "$work/empty" 1 -- train --model "$spec" --data "$TRAIN_H5" --resume "$work/empty"
echo "PASS: every bad input ended with one clear line"
