#!/usr/bin/env bash
# Relaunching the SAME command line with `--resume auto` (the requeue
# pattern), with and without `--init-from`, under mpirun -np 2: a run stopped
# part-way ends with parameters and optimizer state bitwise equal to an
# uninterrupted run, metrics.jsonl holds every record of the uninterrupted
# run, and the interrupted epoch's line reports the same training loss
# (the partial sums travel in the checkpoint). A checkpoint directory
# belongs to one job; a fresh run never replaces another run's checkpoints
# (unless --overwrite); and --resume warns when the OpenBLAS thread count
# differs from the checkpoint's.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 512 256
work=$(mktemp -d "$BUILD/relaunch.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'input 1 28 28\nflatten\ndense 32 relu\ndense 10\nloss softmax_cross_entropy\n' >mlp.spec
# 16 steps per epoch at 2 ranks; 3 epochs
common=(train --model mlp.spec --data "$TRAIN_H5" --test-data "$TEST_H5" --batch-size 32
  --log-every 4 --progress plain)

# metrics without the wall-clock fields
metrics() { sed -E 's/"time":[^,]*,//; s/,"images_per_s":[^,}]*//' "$1"; }
# the epoch lines without their img/s and seconds
epochs() { grep -oE '^epoch [0-9]+/[0-9]+  train loss .*%  \|  test loss [^|]*' "$1"; }

# relaunch_case NAME STOP_STEP EXTRA...: uninterrupted vs stopped at STOP_STEP
# and relaunched with the same command line.
relaunch_case() {
  local name=$1 stop=$2
  shift 2
  local args=("${common[@]}" --seed 3 --epochs 3 --resume auto "$@")
  rt_mpirun 2 "${args[@]}" --checkpoint-dir "ref-$name" >"ref-$name.log" 2>&1 ||
    fail "$name: uninterrupted run failed: $(tail -3 "ref-$name.log")"
  set +e
  RINGTRAIN_TEST_STOP_STEP=$stop rt_mpirun 2 "${args[@]}" --checkpoint-dir "run-$name" \
    >"run-$name.1.log" 2>&1
  local rc=$?
  set -e
  [ "$rc" -eq 75 ] || fail "$name: stopped run exited $rc: $(tail -3 "run-$name.1.log")"
  rt_mpirun 2 "${args[@]}" --checkpoint-dir "run-$name" >"run-$name.2.log" 2>&1 ||
    fail "$name: relaunch failed: $(tail -3 "run-$name.2.log")"
  grep -q "resuming from run-$name/ckpt-0*$stop.h5" "run-$name.2.log" ||
    fail "$name: relaunch did not resume from step $stop: $(head -20 "run-$name.2.log")"
  rt_same_final "ref-$name" "run-$name" "$name"
  diff <(metrics "ref-$name/metrics.jsonl") <(metrics "run-$name/metrics.jsonl") >/dev/null ||
    fail "$name: metrics differ: $(diff <(metrics "ref-$name/metrics.jsonl") <(metrics "run-$name/metrics.jsonl") | head -5)"
  diff <(epochs "ref-$name.log") <(epochs "run-$name.1.log"; epochs "run-$name.2.log") >/dev/null ||
    fail "$name: epoch lines differ: $(diff <(epochs "ref-$name.log") <(epochs "run-$name.1.log"; epochs "run-$name.2.log"))"
  echo "ok: $name: stopped at step $stop, relaunched: same bits, $(wc -l <"run-$name/metrics.jsonl") metrics records, same epoch lines"
}

# --init-from X: a fine-tuning job requeued mid-epoch must keep its resumed
# weights (was: X overwrote them), and say that X is ignored.
rt_mpirun 2 "${common[@]}" --epochs 1 --seed 11 --checkpoint-dir init >/dev/null
relaunch_case init 12 --init-from init
grep -q "init from init.* tensors loaded" run-init.1.log || fail "the first launch did not load --init-from"
grep -q "resuming: --init-from init is ignored, the run continues from its checkpoint" run-init.2.log ||
  fail "the relaunch did not say that --init-from is ignored: $(grep -i init run-init.2.log)"
! grep -q "tensors loaded" run-init.2.log || fail "the relaunch loaded --init-from over the resumed weights"
# Plain: stopped in the middle of epoch 2, between two log steps.
relaunch_case plain 22

# Killed after writing records past its last checkpoint (as kill -9 leaves
# it: here the step-48 checkpoint is taken away): the relaunch rewinds the
# metrics file to step 32 and writes the rest once.
cp -r ref-plain killed
rm killed/ckpt-000000048.h5
echo ckpt-000000032.h5 >killed/latest
rt_mpirun 2 "${common[@]}" --seed 3 --epochs 3 --resume auto --checkpoint-dir killed >killed.log 2>&1 ||
  fail "relaunch after a kill failed: $(tail -3 killed.log)"
grep -q "metrics: 5 record(s) after step 32 removed from killed/metrics.jsonl" killed.log ||
  fail "no rewind line: $(grep -i metrics killed.log)"
diff <(metrics ref-plain/metrics.jsonl) <(metrics killed/metrics.jsonl) >/dev/null ||
  fail "metrics after a kill differ: $(diff <(metrics ref-plain/metrics.jsonl) <(metrics killed/metrics.jsonl) | head -5)"
rt_same_final ref-plain killed "a relaunch after a kill"
echo "ok: relaunch after a kill: metrics rewound to step 32, each step recorded once"

# expect_line RC WANT -- ARGS: ringtrain ARGS on 2 ranks exits RC with one
# ringtrain line on stderr, which matches the extended regex WANT.
expect_line() {
  local want_rc=$1 want=$2 rc
  shift 3
  set +e
  rt_mpirun 2 "$@" >line.log 2>line.err
  rc=$?
  set -e
  [ "$rc" -eq "$want_rc" ] && [ "$(grep -c '^ringtrain' line.err)" -eq 1 ] &&
    grep -qE -- "$want" line.err || fail "exit $rc, expected $want_rc and '$want': $(cat line.err)"
  echo "ok: $(grep '^ringtrain' line.err)"
}

# A fresh run into a directory with checkpoints is refused and changes nothing.
sum() { (cd "$1" && find . -type f ! -name ringtrain.lock | sort | xargs md5sum); }
before=$(sum ref-plain)
expect_line 1 "ref-plain holds checkpoints of another run; continue it with --resume auto, write to a new --checkpoint-dir, or replace them with --overwrite" -- \
  "${common[@]}" --epochs 3 --checkpoint-dir ref-plain
[ "$(sum ref-plain)" = "$before" ] || fail "the refused run changed ref-plain"
# --overwrite starts over: the earlier run's later checkpoints are gone.
rt_mpirun 2 "${common[@]}" --epochs 1 --checkpoint-dir ref-plain --overwrite >over.log 2>&1 ||
  fail "--overwrite run failed: $(tail -3 over.log)"
[ "$(cd ref-plain && ls ckpt-*.h5)" = "ckpt-000000016.h5" ] ||
  fail "--overwrite left other checkpoints: $(ls ref-plain)"
[ "$(grep -c '"type":"train"' ref-plain/metrics.jsonl)" -eq 4 ] || fail "--overwrite kept old metrics"
echo "ok: --overwrite replaced the earlier run"
# --overwrite is for fresh runs into a directory only.
expect_line 2 "^ringtrain train: --overwrite starts over; it cannot be combined with --resume" -- \
  "${common[@]}" --checkpoint-dir ref-plain --overwrite --resume auto
expect_line 2 "^ringtrain train: --overwrite needs --checkpoint-dir" -- "${common[@]}" --overwrite

# Two jobs, one directory: the second ends at start-up naming the holder; the
# first goes on and its checkpoints stay its own.
rt_mpirun 2 "${common[@]}" --epochs 2000 --checkpoint-dir shared >first.log 2>&1 &
pid=$!
for _ in $(seq 300); do
  [ -f shared/latest ] && break
  sleep 0.1
done
[ -f shared/latest ] || fail "the first job wrote no checkpoint: $(tail -3 first.log)"
expect_line 1 "shared: checkpoint directory in use by another job \(pid [0-9]+ on host $(hostname) holds ringtrain.lock\); wait for it to end or use another --checkpoint-dir" -- \
  "${common[@]}" --epochs 2000 --checkpoint-dir shared --resume auto
holder=$(sed -nE 's/.*\(pid ([0-9]+) on host.*/\1/p' line.err)
ps -o args= -p "$holder" | grep -q "train .*--checkpoint-dir shared" ||
  fail "pid $holder is not a rank of the first job"
rt_stop_by_signal $pid shared first.log
last=$(cat shared/latest)
h5diff -q "shared/$last" "shared/$last" >/dev/null || fail "the first job's checkpoint is damaged"
grep -q "checkpoint: shared/$last" first.log || fail "shared/$last was not written by the first job"
# The kernel released the lock with the job.
flock -n shared/ringtrain.lock true || fail "shared/ringtrain.lock is still held after the job ended"
echo "ok: the first job finished its checkpoint $last; the directory is free again"

# --resume warns in one line when the compute thread count (--threads, which
# splits the GEMMs) differs.
h5dump -a blas_threads "ref-plain/ckpt-000000016.h5" | grep -q "(0): 1" ||
  fail "blas_threads not recorded as 1: $(h5dump -a blas_threads ref-plain/ckpt-000000016.h5)"
blas_run() {
  timeout -k 10 120 mpirun --oversubscribe --allow-run-as-root --bind-to none \
    --mca btl self,vader,tcp -np 1 "$BIN" "${common[@]}" --epochs 2 --threads "$1" \
    --checkpoint-dir ref-plain --resume auto
}
blas_run 2 >blas2.log 2>&1 || fail "resume with 2 threads failed: $(tail -3 blas2.log)"
grep -q "warning: resuming with 2 compute thread(s) per rank, the checkpoint was written with 1: training goes on, but not bit for bit as the uninterrupted run (resume with --threads 1 for that)" blas2.log ||
  fail "no thread-count warning: $(grep -i 'resum\|warn' blas2.log)"
echo "ok: $(grep 'compute thread' blas2.log)"

# A relaunch of a run that has finished (a requeue after the last epoch)
# trains nothing, says so, leaves the checkpoints alone, and reports no
# made-up training loss or rate (it used to print "train loss 0.0000, 0 images/s").
before=$(ls -l --time-style=+%s.%N ref-plain/ckpt-*.h5 ref-plain/latest)
timeout -k 10 120 mpirun --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader,tcp \
  -np 2 "$BIN" train --model mlp.spec --data "$TRAIN_H5" --batch-size 32 --epochs 2 \
  --progress plain --checkpoint-dir ref-plain --resume auto >done.log 2>&1 ||
  fail "relaunch of a finished run failed: $(tail -3 done.log)"
grep -q "nothing to train: the checkpoint has completed 2 of 2 epochs" done.log ||
  fail "no 'nothing to train' line: $(grep -i 'resum\|final' done.log)"
grep -q "final: 2 epochs, 32 steps$" done.log || fail "unexpected final line: $(grep final done.log)"
[ "$before" = "$(ls -l --time-style=+%s.%N ref-plain/ckpt-*.h5 ref-plain/latest)" ] ||
  fail "a relaunch of a finished run rewrote its checkpoints"
echo "ok: $(grep 'nothing to train' done.log)"
echo "PASS: relaunches with --resume auto are bit-exact and keep every metric; one job per directory"
