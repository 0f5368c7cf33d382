#!/usr/bin/env bash
# The communication engine inside training, 3 ranks:
#   - overlap on and off give bitwise-identical parameters, for ring and hier
#     (one node, and "nodes" of 2 ranks), and hier's two groupings agree bit
#     for bit (3 ranks: both sum (a0 + a1) + a2);
#   - the sharded optimizer step gives the same checkpoint as the whole step;
#   - --accumulate 4 gives the same training loss to 3 decimals;
#   - a different model or global batch on one rank stops every rank with a
#     message naming that rank (no deadlock, no wrong result);
#   - a NaN loss on one rank (test hook) is skipped on every rank with
#     --nonfinite skip (the run completes, the step is counted) and stops
#     every rank naming the rank and step with --nonfinite stop.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/commtrain.XXXX")
trap 'rm -rf "$work"' EXIT
spec="$SRC/models/fashion_cnn.spec"
data=(--data "$TRAIN_H5" --train-limit 960 --epochs 1 --seed 4 --log-every 0)
args=(--model "$spec" --batch-size 48 "${data[@]}")

final_of() { sed -nE 's/.*train loss ([0-9.]+).*/\1/p' <<<"$(grep '^final:' "$1")"; }
# hier2: hier with the ranks grouped into "nodes" of 2 (test-only
# RINGTRAIN_TEST_NODE_SIZE): node sums in the leaders' shared copies, the
# leaders' ring, the copy back to the other local rank.
for kind in ring hier hier2; do
  nodes=0 backend=$kind
  [ "$kind" = hier2 ] && nodes=2 backend=hier
  for ov in on off; do
    RINGTRAIN_TEST_NODE_SIZE=$nodes rt_mpirun 3 train "${args[@]}" --allreduce "$backend" --bucket-mib 0.25 \
      --first-bucket-mib 0.01 --overlap "$ov" --checkpoint-dir "$work/$kind-$ov" >"$work/$kind-$ov.log"
  done
  h5diff -q "$work/$kind-on/ckpt-000000020.h5" "$work/$kind-off/ckpt-000000020.h5" /params /params ||
    fail "$kind: overlap on and off give different parameters"
  echo "ok: $kind overlap on/off bitwise identical (loss $(final_of "$work/$kind-on.log"))"
done
# With 3 ranks both groupings sum (a0 + a1) + a2: the same bits.
h5diff -q "$work/hier2-on/ckpt-000000020.h5" "$work/hier-on/ckpt-000000020.h5" /params /params ||
  fail "hier with nodes of 2 and on one node give different parameters"
# The sharded optimizer step (hier's default on the CPU: each of the 3 ranks
# updates a third of the parameters) against every rank updating all: the
# whole checkpoint is identical, parameters and the optimizer state that
# the ranks gather before rank 0 writes it.
grep -q "optimizer step sharded over the 3 rank(s) of each node" "$work/hier-on.log" ||
  fail "hier did not shard the optimizer step: $(grep -i shard "$work/hier-on.log")"
rt_mpirun 3 train "${args[@]}" --allreduce hier --bucket-mib 0.25 --first-bucket-mib 0.01 \
  --overlap on --shard-optimizer off --checkpoint-dir "$work/noshard" >"$work/noshard.log"
! grep -q "optimizer step sharded" "$work/noshard.log" || fail "--shard-optimizer off still sharded"
h5diff -q "$work/hier-on/ckpt-000000020.h5" "$work/noshard/ckpt-000000020.h5" ||
  fail "the sharded optimizer step gives a different checkpoint than the whole step"
echo "ok: sharded optimizer step bitwise identical to the whole step (parameters and optimizer state)"
# --overlap auto (the default): off for a rank bound to one CPU, on with more
one=(train --model "$spec" --batch-size 16 --data "$TRAIN_H5" --train-limit 64 --epochs 1 --log-every 0)
taskset -c 0 "$BIN" "${one[@]}" --checkpoint-dir "$work/auto1" >"$work/auto1.log" 2>&1
grep -q "overlap off (auto: one CPU per rank" "$work/auto1.log" || fail "auto on one CPU: $(grep overlap "$work/auto1.log")"
if [ "$(nproc)" -ge 2 ]; then
  taskset -c 0,1 "$BIN" "${one[@]}" --checkpoint-dir "$work/auto2" >"$work/auto2.log" 2>&1
  grep -q "overlap on (auto: more than one CPU per rank)" "$work/auto2.log" ||
    fail "auto on two CPUs: $(grep overlap "$work/auto2.log")"
fi
echo "ok: --overlap auto is off on one CPU, on with two"
rt_mpirun 3 train "${args[@]}" --accumulate 4 >"$work/acc.log"
a=$(final_of "$work/ring-on.log") b=$(final_of "$work/acc.log")
awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.001) }' ||
  fail "--accumulate 4 loss $b differs from $a"
echo "ok: --accumulate 4 loss $b vs $a"

# expect_fail LOG WANT: the run failed (not a hang) and its stderr has WANT.
expect_fail() {
  local rc=$1 log=$2 want=$3
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "exit $rc (want a failure, no hang): $(cat "$log")"
  grep -q -- "$want" "$log" || fail "no '$want' in: $(cat "$log")"
  echo "ok: $(grep '^ringtrain' "$log" | head -1)"
}
printf 'input 1 28 28\nconv 8 3 same relu\nmaxpool 2\nflatten\ndense 10\nloss softmax_cross_entropy\n' >"$work/other.spec"
mpmd() { # mpmd RANK1_ARGS...: ranks 0 and 2 get "${args[@]}", rank 1 the given args
  timeout -k 5 120 mpirun --oversubscribe --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 \
    -np 1 "$BIN" train "${args[@]}" : -np 1 "$BIN" train "$@" : -np 1 "$BIN" train "${args[@]}"
}
set +e
mpmd --model "$work/other.spec" --batch-size 48 "${data[@]}" >"$work/mm.log" 2>&1
rc=$?
set -e
expect_fail $rc "$work/mm.log" "rank 1 differs from rank 0 in model spec"
set +e
mpmd --model "$spec" --batch-size 96 "${data[@]}" >"$work/mb.log" 2>&1
rc=$?
set -e
expect_fail $rc "$work/mb.log" "rank 1 has 96, rank 0 has 48"

export RINGTRAIN_TEST_NAN_RANK=1 RINGTRAIN_TEST_NAN_STEP=3
rt_mpirun 3 train "${args[@]}" \
  --nonfinite skip --checkpoint-dir "$work/skip" >"$work/skip.log" 2>&1 ||
  fail "--nonfinite skip run failed: $(cat "$work/skip.log")"
grep -q "step 3: non-finite loss or gradient on rank 1; step skipped on every rank (1 skipped" "$work/skip.log" ||
  fail "no skip message: $(cat "$work/skip.log")"
echo "ok: NaN on rank 1 at step 3 skipped on every rank"
set +e
rt_mpirun 3 train "${args[@]}" --nonfinite stop >"$work/stop.log" 2>&1
rc=$?
set -e
expect_fail $rc "$work/stop.log" "non-finite loss or gradient (NaN or Inf) on rank 1 at step 3"
echo "PASS: overlap, accumulation, consistency checks and the non-finite policy"
