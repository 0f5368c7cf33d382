#!/usr/bin/env bash
# Resuming at another world size continues the same epoch: a run stopped by
# a signal at 2 ranks resumes at 3 and, over the interrupted epoch, the
# samples seen before the stop plus those seen after the resume are every
# sample exactly once (960 samples, global batch 48: nothing is dropped).
# Then a chain in one epoch: 2 ranks -> checkpoint -> 3 ranks -> checkpoint
# -> 2 ranks (or 3 again), still every sample once; and 3 -> 3 inside the
# remainder epoch is bitwise exact. Samples are observed with the test-only
# RINGTRAIN_TEST_TRACE_SAMPLES hook (lines "epoch step index...").
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 960 100
work=$(mktemp -d "$BUILD/resize.XXXX")
trap 'rm -rf "$work"' EXIT
common=(--model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" --batch-size 48 --seed 11
  --log-every 0)

# traced TAG NP ARGS...: ringtrain on NP ranks tracing to $work/TAG.rank<r>
traced() {
  local tag=$1 np=$2
  shift 2
  RINGTRAIN_TEST_TRACE_SAMPLES="$work/$tag" rt_mpirun "$np" train "${common[@]}" "$@"
}

# seen EPOCH MAXSTEP TAG...: indices traced for EPOCH (0-based) in steps before MAXSTEP
seen() {
  local e=$1 max=$2
  shift 2
  for tag in "$@"; do cat "$work/$tag".rank*; done |
    awk -v e="$e" -v m="$max" '$1 == e && $2 < m { for (i = 3; i <= NF; i++) print $i }'
}

# once WHAT: stdin holds every index of 0..959 exactly once
once() {
  sort -n >"$work/got"
  local n u
  n=$(wc -l <"$work/got")
  u=$(uniq <"$work/got" | wc -l)
  seq 0 959 | cmp -s - "$work/got" || fail "$1: $n indices, $u distinct; expected 0..959 once each"
  echo "ok: $1: 960 samples, each once"
}

wait_for() { # wait_for FILE SECONDS
  for _ in $(seq $(($2 * 10))); do
    [ -e "$1" ] && return 0
    sleep 0.1
  done
  fail "$1 did not appear"
}

# 1. Stopped by SIGUSR1 at 2 ranks, resumed at 3.
traced sig2 2 --epochs 30 --checkpoint-every 7 --checkpoint-dir "$work/sig" --resume auto \
  >"$work/sig2.log" 2>&1 &
pid=$!
wait_for "$work/sig/ckpt-000000028.h5" 60
rt_stop_by_signal $pid "$work/sig" "$work/sig2.log"
stop=$(grep -o 'stop requested by signal at step [0-9]* (epoch [0-9]*, batch [0-9]*)' "$work/sig2.log") ||
  fail "no stop line: $(cat "$work/sig2.log")"
epoch=$(sed -E 's/.*epoch ([0-9]+),.*/\1/' <<<"$stop")
batch=$(sed -E 's/.*batch ([0-9]+)\)/\1/' <<<"$stop")
echo "stopped: $stop"
traced sig3 3 --epochs "$epoch" --checkpoint-dir "$work/sig" --resume auto >"$work/sig3.log"
seen $((epoch - 1)) 1000000 sig2 sig3 | once "epoch $epoch: stopped at 2 ranks, resumed at 3"
if [ "$batch" -gt 0 ]; then
  grep "continuing it at 3 rank(s)" "$work/sig3.log" ||
    fail "no line about continuing the epoch: $(cat "$work/sig3.log")"
else
  echo "note: the signal landed on an epoch boundary; the remainder is the whole epoch"
fi
seen 0 1000000 sig2 | once "epoch 1 at 2 ranks"

# 2. A chain within one epoch (epoch 2 = index 1; 20 steps of 48 at 2 ranks).
traced a 2 --epochs 2 --checkpoint-every 9 --checkpoint-dir "$work/a" >/dev/null
[ -f "$work/a/ckpt-000000027.h5" ] || fail "no checkpoint at step 27 (epoch 2, batch 7)"
# 960 - 7*48 = 624 left: 13 steps at 3 ranks, steps 27..39
traced b 3 --epochs 2 --checkpoint-every 3 --checkpoint-dir "$work/b" \
  --resume "$work/a/ckpt-000000027.h5" >"$work/b.log"
grep -q "624 samples not yet seen, 13 steps" "$work/b.log" || fail "b: $(cat "$work/b.log")"
seen 1 27 a | cat - <(seen 1 1000000 b) | once "epoch 2: 7 steps at 2 ranks, 13 at 3"
[ -f "$work/b/ckpt-000000033.h5" ] || fail "no checkpoint at step 33 (inside the remainder epoch)"
traced c 2 --epochs 2 --checkpoint-dir "$work/c" --resume "$work/b/ckpt-000000033.h5" >"$work/c.log"
grep -q "336 samples not yet seen, 7 steps" "$work/c.log" || fail "c: $(cat "$work/c.log")"
seen 1 27 a | cat - <(seen 1 33 b) <(seen 1 1000000 c) | once "epoch 2: 2 ranks, then 3, then 2"
traced d 3 --epochs 2 --checkpoint-dir "$work/d" --resume "$work/b/ckpt-000000033.h5" >"$work/d.log"
seen 1 27 a | cat - <(seen 1 33 b) <(seen 1 1000000 d) | once "epoch 2: 2 ranks, then 3, then 3"
for r in c d; do
  [ "$(cat "$work/$r/latest")" = ckpt-000000040.h5 ] || fail "$r ended at $(cat "$work/$r/latest")"
done
h5diff -q "$work/b/ckpt-000000040.h5" "$work/d/ckpt-000000040.h5" /params /params ||
  fail "resuming the remainder epoch at the same world size is not bitwise exact"
h5diff -q "$work/b/ckpt-000000040.h5" "$work/d/ckpt-000000040.h5" /optim /optim ||
  fail "optimizer state differs after resuming the remainder epoch at the same world size"
echo "ok: 3 -> 3 inside the remainder epoch is bitwise exact"
echo "PASS: every sample of an epoch seen once across changes of world size"
