#!/usr/bin/env bash
# Preemption under mpirun: SIGUSR1 mid-run makes every rank stop at the same
# step boundary, rank 0 checkpoint the exact position and the job exit 75;
# `--resume auto` then finishes, and the final parameters and optimizer state
# equal an uninterrupted run's bit for bit. Also: --checkpoint-every with
# --keep-checkpoints keeps only the newest files, and kill -9 of one rank
# ends the whole job (no hang) with the last checkpoint still loadable.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/preempt.XXXX")
trap 'rm -rf "$work"' EXIT
common=(--model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" --train-limit 640
  --batch-size 32 --seed 9 --log-every 0 --epochs 25 --checkpoint-every 7 --keep-checkpoints 2)

# wait_for_step DIR STEP SECONDS: until DIR/latest names a checkpoint of at
# least STEP (older files may already be pruned by --keep-checkpoints).
wait_for_step() {
  for _ in $(seq $(($3 * 10))); do
    local name step
    name=$(cat "$1/latest" 2>/dev/null || true)
    step=$(sed -nE 's/^ckpt-0*([0-9]+)\.h5$/\1/p' <<<"$name")
    [ -n "$step" ] && [ "$step" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "no checkpoint of step >= $2 in $1 after $3 s"
}

rt_mpirun 2 train "${common[@]}" --checkpoint-dir "$work/ref" >/dev/null

rt_mpirun 2 train "${common[@]}" --checkpoint-dir "$work/run" --resume auto >"$work/first.log" 2>&1 &
pid=$!
wait_for_step "$work/run" 28 60
rt_stop_by_signal $pid "$work/run" "$work/first.log"
grep -q "stop requested by signal" "$work/first.log" || fail "no stop message"
n=$(find "$work/run" -name 'ckpt-*.h5' | wc -l)
[ "$n" -le 2 ] || fail "--keep-checkpoints 2 left $n checkpoints"
stopped_at=$(cat "$work/run/latest")
rt_mpirun 2 train "${common[@]}" --checkpoint-dir "$work/run" --resume auto >"$work/second.log"
grep -q "resuming from .*$stopped_at" "$work/second.log" || fail "did not resume from $stopped_at"
rt_same_final "$work/ref" "$work/run" "preemption + resume"
echo "ok: stopped at $stopped_at with exit 75, resumed, bitwise identical at $(cat "$work/run/latest")"

# kill -9 of one rank: the job ends (no hang), the newest checkpoint is intact.
rm -rf "$work/kill"
rt_mpirun 2 train "${common[@]}" --checkpoint-dir "$work/kill" >"$work/kill.log" 2>&1 &
pid=$!
wait_for_step "$work/kill" 35 60
victim=$(pgrep -f "^$BIN train .*$work/kill" | tail -n 1 || true)
[ -n "$victim" ] || fail "no rank found to kill"
kill -9 "$victim"
set +e
wait $pid
rc=$?
set -e
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "job with a killed rank exited $rc"
grep -q "exited on signal 9" "$work/kill.log" || fail "no message naming the killed rank: $(cat "$work/kill.log")"
rt_mpirun 2 train "${common[@]}" --checkpoint-dir "$work/kill" --resume auto >"$work/kill2.log"
grep -q "resuming from" "$work/kill2.log" || fail "no resume after kill -9"
rt_same_final "$work/ref" "$work/kill" "kill -9 and resume (against the reference)"
echo "PASS: preemption, retention, kill -9 and resume all exact"
