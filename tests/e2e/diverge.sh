#!/usr/bin/env bash
# A diverged run is never reported as a success, and NaN outputs never count
# as correct: --lr 1e30 ends on every rank with one line naming the step and
# the last finite loss (non-finite test loss; N skipped steps in a row; an
# epoch with every step skipped), and eval / predict / quantize of a
# checkpoint whose outputs are NaN report 0 % top-1.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 512 256
work=$(mktemp -d "$BUILD/diverge.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'input 1 28 28\nflatten\ndense 32 relu\ndense 10\nloss softmax_cross_entropy\n' >mlp.spec
common=(train --model mlp.spec --data "$TRAIN_H5" --batch-size 32 --log-every 4 --progress plain)

# expect_diverged WANT -- ARGS: exit 1 on every rank, one ringtrain line
# containing WANT and the last finite loss, and no "final:" success line.
expect_diverged() {
  local want=$1
  shift 2
  set +e
  RT_TIMEOUT=120 rt_mpirun 2 "$@" >out 2>err
  local rc=$?
  set -e
  [ "$rc" -eq 1 ] || fail "exit $rc, expected 1: $(cat err)"
  [ "$(grep -c '^ringtrain' err)" -eq 1 ] || fail "expected one ringtrain line: $(cat err)"
  grep -qF -- "$want" err || fail "message lacks '$want': $(cat err)"
  grep -qE "the last finite training loss was [0-9.]+ \(step 1\)" err ||
    fail "no last finite loss: $(cat err)"
  ! grep -q "^final:" out || fail "a diverged run printed its final line: $(grep final: out)"
  # every rank exits 1 (mpirun reports the first; the others' own codes are in its summary)
  echo "ok: $(grep '^ringtrain' err)"
}

# The issue's case: every step after the first is skipped, the test loss is NaN.
expect_diverged "training diverged at step 16: the test loss after epoch 1 is not finite" -- \
  "${common[@]}" --test-data "$TEST_H5" --epochs 2 --lr 1e30
grep -q "test loss -*nan acc 0.00%" out || fail "NaN test outputs counted as correct: $(grep epoch out)"
# Without a test set: 20 skipped steps in a row (the default --diverge-after).
expect_diverged "training diverged at step 21: the last 20 steps all had a non-finite loss or gradient and were skipped (--diverge-after 20)" -- \
  "${common[@]}" --epochs 3 --lr 1e30
# Off: an epoch whose every step was skipped still ends the run.
expect_diverged "training diverged at step 32: every step of epoch 2 had a non-finite loss or gradient and was skipped" -- \
  "${common[@]}" --epochs 3 --lr 1e30 --diverge-after 0

# A checkpoint whose outputs are NaN (the parameters after the one step that
# --lr 1e30 takes): 0 % top-1 everywhere. Before, eval and quantize said 100 %
# (a NaN row ranked its label first) and predict 6 % (class 0 = label 0).
rt_mpirun 2 "${common[@]}" --epochs 1 --lr 1e30 --checkpoint-every 1 --checkpoint-dir nan \
  >/dev/null 2>&1 || fail "the 1-epoch run (15 skipped steps, under --diverge-after) failed"
ck=nan/ckpt-000000001.h5
ev=$(rt_mpirun 2 eval --checkpoint "$ck" --data "$TEST_H5" 2>&1) || fail "eval failed: $ev"
grep -q "top-1 0.00%  top-5 0.00%" <<<"$ev" || fail "eval counted NaN outputs as correct: $ev"
grep -q "class  0    0.00%" <<<"$ev" || fail "per-class accuracy counted NaN outputs: $ev"
pr=$(rt_mpirun 1 predict --checkpoint "$ck" --data "$TEST_H5" --limit 64 2>&1) || fail "predict failed: $pr"
grep -q "accuracy 0.00% on 64 samples" <<<"$pr" || fail "predict counted NaN outputs as correct: $pr"
qu=$(rt_mpirun 1 quantize --checkpoint "$ck" --calib-data "$TRAIN_H5" --out q.h5 --test-data "$TEST_H5" 2>&1) ||
  fail "quantize failed: $qu"
grep -q "float 0.00% (top-5 0.00%" <<<"$qu" || fail "quantize counted NaN outputs as correct: $qu"
echo "PASS: diverged runs end non-zero with one line; NaN outputs are never correct"
