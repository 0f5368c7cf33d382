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
#   4. the cluster goes down (also on failure).
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
  job=$(RT_HOME="$SRC" CKPT_DIR="$WORK/ck2" sbatch --parsable -n 2 -o "$log" \
    "$SRC/launch/slurm/train.sbatch" "${pre[@]}") || fail "sbatch train.sbatch (preemption)"
  wait_running "$job"
  deadline=$((SECONDS + 120))
  until [ -f "$WORK/ck2/ckpt-000000028.h5" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no checkpoint at step 28 after 120 s: $(cat "$log")"
    sleep 0.1
  done
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
else
  echo "note: $BUILD/ringtrain not built; preemption path not exercised"
fi

t=$(date +%s%N)
"$SRC/cluster/slurm/down" || fail "cluster/slurm/down failed"
echo "down: $(ms_since "$t") ms"
"$SRC/cluster/slurm/status" >/dev/null && fail "status says up after down"
grep -q "already down" <<<"$("$SRC/cluster/slurm/down")" || fail "a second down did not report 'already down'"
echo "PASS: slurm up, sbatch, 2-rank template job, signal+requeue, down"
