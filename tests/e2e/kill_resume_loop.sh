#!/usr/bin/env bash
# Fault injection: kill -9 at random moments, many times, each followed by
# `--resume auto`. Every resume must start from a complete checkpoint (the
# run loads it, or starts fresh when none was written yet), and the final
# parameters and optimizer state must equal an uninterrupted run's bit for
# bit. Most kills take down the whole job (mpirun and both ranks at once);
# every 4th kills one rank only, and the survivor must not hang.
#   RT_KILLS (default 20) kills; a fixed seed for the kill times (RT_KILL_SEED).
# Kill times are tied to progress (a new checkpoint), not to the clock, so
# the loop reaches its 20 kills on a fast or a loaded machine alike.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
MK="$BUILD/tests/rt_mkh5"
work=$(mktemp -d "$BUILD/killloop.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
kills=${RT_KILLS:-20}
RANDOM=${RT_KILL_SEED:-4242}
printf 'input 1 8 8\nconv 4 3 same relu\nmaxpool 2\nflatten\ndense 5\nloss softmax_cross_entropy\n' >k.spec
"$MK" create k.h5 images:u8:512x1x8x8:mod=13 labels:u8:512:mod=5
common=(train --model k.spec --data k.h5 --batch-size 16 --epochs 600 --seed 5 --log-every 0
    --progress none --checkpoint-every 4 --keep-checkpoints 3)

RT_TIMEOUT=200 rt_mpirun 2 "${common[@]}" --checkpoint-dir ref >ref.log 2>&1 || fail "reference run: $(cat ref.log)"
ref="ref/$(cat ref/latest)"

killed=0 finished=0 resumed=0 i=0
while [ "$killed" -lt "$kills" ] && [ "$i" -lt $((kills * 3)) ]; do
    i=$((i + 1))
    timeout -k 5 120 mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp \
        -x OPENBLAS_NUM_THREADS=1 -np 2 "$BIN" "${common[@]}" --checkpoint-dir "$work/run" \
        --resume auto >"seg$i.log" 2>&1 &
    job=$!
    # Progress-based, so that a fast machine does not finish the run in a
    # few segments: every 5th kill lands 0-0.8 s after the launch (MPI
    # start-up, loading the checkpoint); the others 0-0.1 s after the run
    # has written its first new checkpoint (in a step or a later write).
    before=$(cat run/latest 2>/dev/null || echo none)
    if [ $((i % 5)) -eq 0 ]; then
        sleep "0.$(printf '%03d' $((RANDOM % 800)))"
    else
        for _ in $(seq 1200); do
            now=$(cat run/latest 2>/dev/null || echo none)
            [ "$now" = "$before" ] && kill -0 "$job" 2>/dev/null || break
            sleep 0.05
        done
        sleep "0.$(printf '%03d' $((RANDOM % 100)))"
    fi
    ranks=$(pgrep -f "^$BIN train .*--checkpoint-dir $work/run" || true)
    if ! kill -0 "$job" 2>/dev/null; then
        set +e
        wait "$job"
        rc=$?
        set -e
        [ "$rc" -eq 0 ] || fail "segment $i ended with $rc before the kill: $(tail -5 "seg$i.log")"
        finished=1
        break
    fi
    if [ -n "$ranks" ] && [ $((i % 4)) -eq 0 ]; then
        victim=$(echo "$ranks" | shuf -n 1 --random-source=<(yes "$i"))
        kill -9 "$victim" 2>/dev/null || true
        how="one rank ($victim)"
    else
        mpirun_pid=$(pgrep -P "$job" -x mpirun || true)
        # shellcheck disable=SC2086
        kill -9 $ranks $mpirun_pid 2>/dev/null || true
        how="the whole job"
    fi
    set +e
    wait "$job" 2>/dev/null
    rc=$?
    set -e
    [ "$rc" -ne 124 ] || fail "segment $i hung after killing $how"
    [ "$rc" -ne 0 ] || fail "segment $i exited 0 after killing $how"
    left=$(pgrep -f "^$BIN train .*--checkpoint-dir $work/run" || true)
    # shellcheck disable=SC2086
    [ -z "$left" ] || kill -9 $left 2>/dev/null || true
    killed=$((killed + 1))
    from=$(grep -o 'resuming from [^ ]*' "seg$i.log" || echo "fresh start")
    [ "$from" = "fresh start" ] || resumed=$((resumed + 1))
    echo "kill $killed (segment $i): killed $how; it had begun from: $from; latest now $(cat run/latest 2>/dev/null || echo none)"
done
[ "$killed" -ge "$kills" ] || [ "$finished" -eq 1 ] || fail "only $killed kills in $i segments"
if [ "$finished" -eq 0 ]; then
    RT_TIMEOUT=200 rt_mpirun 2 "${common[@]}" --checkpoint-dir "$work/run" --resume auto >final.log 2>&1 ||
        fail "final resume: $(cat final.log)"
fi
out="run/$(cat run/latest)"
[ "$(basename "$out")" = "$(basename "$ref")" ] || fail "final step differs: $out vs $ref"
h5diff -q "$ref" "$out" /params /params || fail "parameters differ from the uninterrupted run"
h5diff -q "$ref" "$out" /optim /optim || fail "optimizer state differs from the uninterrupted run"
[ "$killed" -ge "$kills" ] || fail "the run finished after $killed kills (< $kills): make it longer"
echo "PASS: $killed kill -9s ($resumed resumed from a checkpoint), final $(basename "$out") bitwise equal to the uninterrupted run"
