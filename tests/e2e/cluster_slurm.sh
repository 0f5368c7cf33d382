#!/usr/bin/env bash
# End to end on a private one-node Slurm cluster (cluster/slurm/up):
#   1. sbatch --wrap hostname completes;
#   2. launch/slurm/train.sbatch runs 2 ranks with srun --mpi=pmix: the real
#      trainer for 1 epoch on 2,000 Fashion-MNIST images when $BUILD/ringtrain
#      exists (the log has a final: line, the checkpoint dir a latest file),
#      else mpi_hello through the same template (2 ranks all-reduce);
#   3. preemption: SIGUSR1 to the batch shell is forwarded to the ranks, they
#      checkpoint and exit 75, the job requeues itself, the restart resumes and
#      its final parameters equal an uninterrupted run's bit for bit;
#   4. a plain scancel stops train.sbatch for good: the job ends CANCELLED
#      with exit 75, is not requeued, its last checkpoint is the one the
#      trainer's stop line names;
#   5. train-mpirun.sbatch under a plain scancel: the same, with the same exit
#      code (mpirun does not abort the ranks and loses no line);
#   6. scontrol requeue by hand: the log says Slurm requeued the job (no error
#      line from the template), the restart resumes and ends bitwise equal to
#      the uninterrupted run;
#   7. the cluster goes down (also on failure).
BUILD=$1 SRC=$2
source "$SRC/tests/support/cluster_lib.sh"
for c in sbatch scontrol srun munged slurmctld slurmd mpicc; do
  command -v "$c" >/dev/null || fail "$c missing; run bash launch/install-deps.sh"
done
cluster_cleanup "$SRC/cluster/slurm/down"

t=$(date +%s%N)
"$SRC/cluster/slurm/up" || fail "cluster/slurm/up failed"
echo "up: $(ms_since "$t") ms"
grep -q "already up" <<<"$("$SRC/cluster/slurm/up")" || fail "a second up did not report 'already up'"
source "$SRC/cluster/slurm/env"

# job_field JOB FIELD: FIELD's value in scontrol show job.
job_field() { scontrol show job "$1" | grep -oE "(^| )$2=[^ ]*" | head -1 | cut -d= -f2-; }
# wait_job JOB SECONDS [RESTARTS]: until the job reached a final state (after
# at least RESTARTS requeues); prints the state.
wait_job() {
  local job=$1 limit=$2 restarts=${3:-0} state deadline=$((SECONDS + $2))
  while :; do
    state=$(job_field "$job" JobState)
    case $state in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
      [ "$(job_field "$job" Restarts)" -ge "$restarts" ] && break ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || fail "job $job still $state after ${limit} s"
    sleep 0.2
  done
  echo "$state"
}
# wait_running JOB: until the job's batch script runs.
wait_running() {
  local deadline=$((SECONDS + 30))
  until [ "$(job_field "$1" JobState)" = RUNNING ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "job $1 not running after 30 s ($(job_field "$1" JobState) $(job_field "$1" Reason))"
    sleep 0.1
  done
}

# submit_to_step28 TEMPLATE CKPT_DIR LOG: submits TEMPLATE with the trainer
# arguments "${pre[@]}", waits until its checkpoint of step 28 exists; sets JOB.
submit_to_step28() {
  local deadline
  JOB=$(RT_HOME="$SRC" CKPT_DIR="$2" sbatch --parsable -n 2 -o "$3" \
    "$SRC/launch/slurm/$1" "${pre[@]}") || fail "sbatch $1 (CKPT_DIR $2)"
  wait_running "$JOB"
  deadline=$((SECONDS + 120))
  until [ -f "$2/ckpt-000000028.h5" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no checkpoint at step 28 after 120 s: $(cat "$3")"
    sleep 0.1
  done
}

# 1. a trivial batch job
t=$(date +%s%N)
job=$(sbatch --parsable -o "$WORK/hostname-%j.out" --wrap hostname) || fail "sbatch --wrap hostname"
state=$(wait_job "$job" 30)
[ "$state" = COMPLETED ] || fail "hostname job $job ended $state"
[ "$(cat "$WORK/hostname-$job.out")" = "$(hostname)" ] || fail "hostname job printed '$(cat "$WORK/hostname-$job.out")'"
echo "sbatch --wrap hostname: COMPLETED in $(ms_since "$t") ms"

# 2. two ranks through the batch template
build_mpi_hello
log="$WORK/train.out"
ckpt="$WORK/ckpt"
if [ -x "$BUILD/ringtrain" ]; then
  source "$SRC/tests/support/e2e_lib.sh"
  fashion_subset 2000 500
  export RT_BIN="$BUILD/ringtrain" RT_MODEL="$SRC/models/fashion_cnn.spec" RT_DATA="$TRAIN_H5" RT_EPOCHS=1 RT_BATCH=64
  want='^final:'
else
  echo "note: $BUILD/ringtrain not built; running mpi_hello through the template"
  export RT_BIN="$MPI_HELLO" RT_MODEL="$MPI_HELLO" RT_DATA="$MPI_HELLO" # any readable file
  want='^allreduce ok: 2 ranks'
fi
t=$(date +%s%N)
job=$(RT_HOME="$SRC" CKPT_DIR="$ckpt" sbatch --parsable -n 2 -o "$log" \
  "$SRC/launch/slurm/train.sbatch" --seed 1 --log-every 0) || fail "sbatch train.sbatch"
state=$(wait_job "$job" 600)
cat "$log"
[ "$state" = COMPLETED ] || fail "train.sbatch job $job ended $state (exit $(job_field "$job" ExitCode)); log $log"
grep -Eq "$want" "$log" || fail "no '$want' line in the job log"
if [ -x "$BUILD/ringtrain" ]; then
  [ -s "$ckpt/latest" ] || fail "no $ckpt/latest after the run"
  [ -f "$ckpt/$(cat "$ckpt/latest")" ] || fail "$ckpt/latest names a missing file"
fi
echo "train.sbatch, 2 ranks: COMPLETED in $(ms_since "$t") ms"

# 3. early warning -> every rank checkpoints and exits 75 -> the job requeues
#    itself -> the restart resumes -> final parameters equal an uninterrupted run's.
log="$WORK/requeue.out"
if [ -x "$BUILD/ringtrain" ]; then
  pre=(--train-limit 640 --seed 9 --log-every 0 --checkpoint-every 7)
  export RT_BIN="$BUILD/ringtrain" RT_EPOCHS=25 RT_BATCH=32
  rt_mpirun 2 train --model "$RT_MODEL" --data "$RT_DATA" --epochs 25 --batch-size 32 \
    "${pre[@]}" --checkpoint-dir "$WORK/ref" >/dev/null || fail "reference run failed"
  t=$(date +%s%N)
  submit_to_step28 train.sbatch "$WORK/ck2" "$log"
  job=$JOB
  scancel --batch --signal=USR1 "$job" || fail "scancel --batch --signal=USR1 $job"
  state=$(wait_job "$job" 300 1)
  cat "$log"
  [ "$state" = COMPLETED ] || fail "preempted job $job ended $state"
  [ "$(job_field "$job" Restarts)" = 1 ] || fail "job $job restarted $(job_field "$job" Restarts) times, expected 1"
  grep -q 'stop requested by signal' "$log" || fail "the trainer did not report the signal"
  grep -q 'scontrol requeue' "$log" || fail "no requeue after exit 75"
  grep -q '^resuming from' "$log" || fail "the restarted job did not resume"
  rt_same_final "$WORK/ref" "$WORK/ck2" "preemption + requeue (against the uninterrupted run)"
  echo "SIGUSR1 -> checkpoint -> exit 75 -> requeue -> resume -> bitwise equal: $(ms_since "$t") ms"

  # cancel_case TEMPLATE NAME: submits TEMPLATE, scancels it once a checkpoint
  # at step 28 exists, checks that it stopped for good with a complete
  # checkpoint; sets CANCEL_EXIT to the job's ExitCode.
  cancel_case() {
    local name=$2 job state log="$WORK/$2.out" ck="$WORK/$2" stop latest
    t=$(date +%s%N)
    submit_to_step28 "$1" "$ck" "$log"
    job=$JOB
    scancel "$job" || fail "scancel $job"
    state=$(wait_job "$job" 120)
    cat "$log"
    [ "$(job_field "$job" Restarts)" = 0 ] || fail "$name: scancel requeued job $job (Restarts=$(job_field "$job" Restarts))"
    case $state in CANCELLED | COMPLETED) ;; *) fail "$name: cancelled job $job ended $state" ;; esac
    [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] || fail "$name: job $job still queued after scancel: $(squeue -h -j "$job")"
    stop=$(grep -oE '^stop requested by signal at step [0-9]+' "$log" | grep -oE '[0-9]+$') ||
      fail "$name: the trainer's stop line is missing from the log"
    latest=$(cat "$ck/latest") || fail "$name: no $ck/latest"
    [ "$latest" = "$(printf 'ckpt-%09d.h5' "$stop")" ] || fail "$name: latest is $latest, the stop line says step $stop"
    { h5ls "$ck/$latest/params" && h5ls "$ck/$latest/optim"; } >/dev/null ||
      fail "$name: checkpoint $ck/$latest is incomplete"
    grep -q 'not requeued' "$log" || fail "$name: the log does not say that the job was not requeued"
    CANCEL_EXIT=$(job_field "$job" ExitCode)
    echo "$name: scancel -> $state, exit $CANCEL_EXIT, checkpoint at step $stop, not requeued: $(ms_since "$t") ms"
  }
  # 4. plain scancel: stop, do not requeue
  cancel_case train.sbatch cancel-srun
  srun_exit=$CANCEL_EXIT
  [ "$srun_exit" = 75:0 ] || fail "train.sbatch under scancel exited $srun_exit, expected 75:0"
  # 5. the mpirun template behaves alike
  cancel_case train-mpirun.sbatch cancel-mpirun
  [ "$CANCEL_EXIT" = "$srun_exit" ] ||
    fail "train-mpirun.sbatch under scancel exited $CANCEL_EXIT, train.sbatch $srun_exit"

  # 6. scontrol requeue by hand: Slurm requeues, the template says so, the run resumes.
  log="$WORK/requeue-by-hand.out"
  t=$(date +%s%N)
  submit_to_step28 train.sbatch "$WORK/ck3" "$log"
  job=$JOB
  scontrol requeue "$job" || fail "scontrol requeue $job"
  state=$(wait_job "$job" 300 1)
  cat "$log"
  [ "$state" = COMPLETED ] || fail "requeued job $job ended $state"
  [ "$(job_field "$job" Restarts)" = 1 ] || fail "job $job restarted $(job_field "$job" Restarts) times, expected 1"
  ! grep -E '^ringtrain-sbatch\[[0-9]+\]: error:' "$log" || fail "the template logged an error after scontrol requeue"
  grep -q 'Slurm has already requeued job' "$log" || fail "the log does not say that Slurm requeued the job"
  grep -q '^resuming from' "$log" || fail "the requeued job did not resume"
  rt_same_final "$WORK/ref" "$WORK/ck3" "scontrol requeue (against the uninterrupted run)"
  echo "scontrol requeue -> checkpoint -> Slurm requeues -> resume -> bitwise equal: $(ms_since "$t") ms"
else
  echo "note: $BUILD/ringtrain not built; preemption, scancel and requeue paths not exercised"
fi

t=$(date +%s%N)
"$SRC/cluster/slurm/down" || fail "cluster/slurm/down failed"
echo "down: $(ms_since "$t") ms"
"$SRC/cluster/slurm/status" >/dev/null && fail "status says up after down"
grep -q "already down" <<<"$("$SRC/cluster/slurm/down")" || fail "a second down did not report 'already down'"
echo "PASS: slurm up, sbatch, 2-rank template job, signal+requeue, scancel (both templates), scontrol requeue, down"
