#!/usr/bin/env bash
# --shard-optimizer all (ZeRO-1 across every rank: each rank holds the
# optimizer state of its slice only):
#   - np 1-5, and 5 ranks grouped as "nodes" of 2 (test-only
#     RINGTRAIN_TEST_NODE_SIZE), with the ring and hier: the checkpoints
#     (parameters and the optimizer state, gathered to rank 0 range by
#     range as the file is written) are bitwise those of --shard-optimizer
#     off, mid-epoch and after the epoch, AdamW with clipping and SGD, and
#     the best weights' checkpoint of early stopping;
#   - resume at the same world size is bitwise exact (after an epoch and
#     mid-epoch), and a resumed run's checkpoints are still whole;
#   - 2 -> 3 -> 2 ranks within one epoch (the state re-sharded at each
#     resume) ends bitwise where the same chain without sharding ends;
#   - a checkpoint that cannot be written, and one that cannot be resumed
#     (another optimizer), fail every rank with one line, no hang, while the
#     other ranks are sending or waiting for their state.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/zero.XXXX")
trap 'rm -rf "$work"' EXIT
base=(--model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" --train-limit 960 --batch-size 48
  --seed 7 --log-every 0)
common=("${base[@]}" --optimizer adamw --weight-decay 0.05 --clip-norm 0.5)

# same_ckpt A B WHAT: equal parameters and optimizer state (with its
# attributes); the root's attributes hold the epoch's wall time, which differs
same_ckpt() {
  h5diff -q "$1" "$2" /params /params || fail "$3: the parameters of $1 and $2 differ"
  h5diff -q "$1" "$2" /optim /optim || fail "$3: the optimizer state of $1 and $2 differs"
}

# 1. The same bits as the unsharded step, at every world size.
for np in 1 2 3 4 5 5n; do
  nodes=0 ranks=$np
  [ "$np" = 5n ] && nodes=2 ranks=5
  for mode in all off; do
    RINGTRAIN_TEST_NODE_SIZE=$nodes rt_mpirun "$ranks" train "${common[@]}" --epochs 1 \
      --checkpoint-every 7 --shard-optimizer "$mode" --checkpoint-dir "$work/np$np-$mode" \
      >"$work/np$np-$mode.log" 2>&1 || fail "np $np $mode: $(cat "$work/np$np-$mode.log")"
  done
  grep -q "optimizer state sharded over all $ranks rank(s)" "$work/np$np-all.log" ||
    fail "np $np: no sharding line: $(grep -i shard "$work/np$np-all.log")"
  for f in "$work/np$np-off"/ckpt-*.h5; do
    same_ckpt "$f" "$work/np$np-all/$(basename "$f")" "np $np, all against off"
  done
  echo "ok: np $np: --shard-optimizer all gives the checkpoints of off ($(ls "$work/np$np-off" | grep -c h5) files)"
done
for extra in "--optimizer adamw --clip-norm 0.5 --allreduce ring" "--optimizer sgd --momentum 0.9"; do
  for mode in all off; do
    # shellcheck disable=SC2086
    rt_mpirun 3 train "${base[@]}" $extra --epochs 1 --shard-optimizer "$mode" \
      --checkpoint-dir "$work/x-$mode" >/dev/null 2>&1 || fail "$extra $mode failed"
  done
  same_ckpt "$work/x-off/ckpt-000000020.h5" "$work/x-all/ckpt-000000020.h5" "np 3, $extra"
  echo "ok: np 3 $extra: all gives the checkpoint of off"
  rm -rf "$work/x-all" "$work/x-off"
done

# The best weights' checkpoint (written from inside validation) and
# --shard-optimizer on (node's old name) too.
for mode in all on; do
  rt_mpirun 3 train "${common[@]}" --epochs 2 --val-fraction 0.2 --early-stop val_loss --patience 0 \
    --shard-optimizer "$mode" --checkpoint-dir "$work/best-$mode" >/dev/null 2>&1 || fail "best $mode failed"
done
best=$(cd "$work/best-on/best" && ls ckpt-*.h5)
[ -n "$best" ] || fail "no best checkpoint"
same_ckpt "$work/best-on/best/$best" "$work/best-all/best/$best" "the best checkpoint, all against on"
same_ckpt "$work/best-on/$(cat "$work/best-on/latest")" "$work/best-all/$(cat "$work/best-all/latest")" \
  "the last checkpoint with validation, all against on"
echo "ok: np 3: the best weights' checkpoint ($best) with all is that of on (node)"

# 2. Resume at the same world size: bitwise exact.
rt_mpirun 3 train "${common[@]}" --epochs 2 --shard-optimizer all \
  --checkpoint-dir "$work/straight" >/dev/null
rt_mpirun 3 train "${common[@]}" --epochs 1 --shard-optimizer all --checkpoint-dir "$work/split" >/dev/null
out=$(rt_mpirun 3 train "${common[@]}" --epochs 2 --shard-optimizer all --checkpoint-dir "$work/split" \
  --resume "$work/split" 2>&1)
grep -q "resuming from" <<<"$out" || fail "resume not reported: $out"
rt_same_final "$work/straight" "$work/split" "resuming after an epoch at 3 ranks"
rt_mpirun 3 train "${common[@]}" --epochs 2 --shard-optimizer all --checkpoint-dir "$work/mid" \
  --resume "$work/np3-all/ckpt-000000014.h5" >/dev/null
rt_same_final "$work/straight" "$work/mid" "resuming mid-epoch (step 14) at 3 ranks"
echo "ok: resume at 3 ranks is bitwise exact (after an epoch, and mid-epoch)"

# 3. 2 -> 3 -> 2 ranks within epoch 2, sharded and not: the same bits.
for mode in all off; do
  rt_mpirun 2 train "${common[@]}" --epochs 2 --checkpoint-every 9 --shard-optimizer "$mode" \
    --checkpoint-dir "$work/a-$mode" >/dev/null
  rt_mpirun 3 train "${common[@]}" --epochs 2 --checkpoint-every 3 --shard-optimizer "$mode" \
    --checkpoint-dir "$work/b-$mode" --resume "$work/a-$mode/ckpt-000000027.h5" >/dev/null
  rt_mpirun 2 train "${common[@]}" --epochs 2 --shard-optimizer "$mode" \
    --checkpoint-dir "$work/c-$mode" --resume "$work/b-$mode/ckpt-000000033.h5" >/dev/null
done
same_ckpt "$work/a-off/ckpt-000000027.h5" "$work/a-all/ckpt-000000027.h5" "2 ranks, step 27"
same_ckpt "$work/b-off/ckpt-000000033.h5" "$work/b-all/ckpt-000000033.h5" "2 -> 3 ranks, step 33"
rt_same_final "$work/c-off" "$work/c-all" "2 -> 3 -> 2 ranks"
echo "ok: 2 -> 3 -> 2 ranks with the state re-sharded at each resume: the bits of the unsharded chain ($(cat "$work/c-all/latest"))"

# 4. A checkpoint that cannot be written: after the first checkpoint (step
#    7) the directory's parent becomes a file, so the one of step 14 fails
#    before rank 0 asks for any state; it still takes every range the
#    others send, and every rank exits non-zero with one line, no hang.
mkdir -p "$work/gone"
rt_mpirun 4 train "${common[@]}" --epochs 3 --checkpoint-every 7 --shard-optimizer all \
  --checkpoint-dir "$work/gone/ck" --metrics "$work/m.jsonl" >"$work/bad.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -e "$work/gone/ck/ckpt-000000007.h5" ] && break
  sleep 0.05
done
rm -rf "$work/gone" && touch "$work/gone"
set +e
wait "$pid"
rc=$?
set -e
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "exit $rc: $(cat "$work/bad.log")"
grep -q "cannot create checkpoint directory '$work/gone/ck'" "$work/bad.log" ||
  fail "no line naming the directory: $(cat "$work/bad.log")"
echo "ok: $(grep '^ringtrain' "$work/bad.log" | head -1)"
# A checkpoint of another optimizer: rank 0 refuses its state before any
# range goes out, still hands out every range, and every rank stops.
set +e
rt_mpirun 3 train "${base[@]}" --optimizer sgd --epochs 2 --shard-optimizer all \
  --resume "$work/np3-all/ckpt-000000014.h5" >"$work/bad2.log" 2>&1
rc=$?
set -e
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "exit $rc: $(cat "$work/bad2.log")"
grep -q "optimizer state is for adam, this run uses sgd" "$work/bad2.log" ||
  fail "no line about the optimizer: $(cat "$work/bad2.log")"
echo "ok: $(grep '^ringtrain' "$work/bad2.log" | head -1)"
echo "PASS: --shard-optimizer all: same bits as the whole step at np 1-5 and in nodes, exact resume, 2 -> 3 -> 2"
