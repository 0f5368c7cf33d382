# shellcheck shell=bash
# Shared by launch/slurm/train.sbatch and train-mpirun.sbatch (Slurm copies only
# the batch script itself, so they find this file through RT_HOME, default the
# directory sbatch was run from: submit from the repository root or set RT_HOME).
#
# The job, from the outside:
#   - the trainer runs as one job step (srun, or mpirun inside the allocation);
#   - resumes from $CKPT_DIR when $CKPT_DIR/latest exists (a requeued run, or a
#     resubmission with the same CKPT_DIR);
#   - the early-warning signal (sbatch --signal=B:USR1@120: SIGUSR1 to this batch
#     shell 120 s before the time limit) is forwarded to the launcher, which
#     relays it to every rank;
#   - when the trainer exits with RT_REQUEUE_EXIT (75, EX_TEMPFAIL: "checkpoint
#     written, run me again"), the job requeues itself with `scontrol requeue`.
#
# The trainer's side (ringtrain train --stop-signals, default TERM,USR1): on
# the signal every rank finishes its step, the ranks agree at the step
# boundary, rank 0 writes a checkpoint of the exact position to
# --checkpoint-dir, and every rank exits 75. The restart resumes bit-exactly.

rt_log() { echo "ringtrain-sbatch[${SLURM_JOB_ID:-?}]: $*"; }
rt_fail() {
  rt_log "error: $*" >&2
  exit 1
}

# rt_config: the trainer's command line from env (and "$@": extra trainer args).
#   RT_BIN      trainer binary               default $RT_HOME/build/ringtrain
#   RT_MODEL    model spec                   default $RT_HOME/models/fashion_cnn.spec
#   RT_DATA     training set (HDF5)          required
#   RT_TEST_DATA test set (HDF5)             optional
#   RT_EPOCHS   epochs (total, also on resume) default 5
#   RT_BATCH    global batch size            default 64
#   CKPT_DIR    checkpoint directory         default $RT_HOME/runs/slurm-$SLURM_JOB_ID
# Sets RT_CMD (array). Exports OMP_NUM_THREADS = cpus per task (ringtrain's
# --threads default) and OPENBLAS_NUM_THREADS = 1 (ringtrain splits its GEMMs
# over its own threads). Ranks x threads per node: launch/split.sh.
rt_config() {
  RT_HOME=${RT_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
  RT_BIN=${RT_BIN:-$RT_HOME/build/ringtrain}
  RT_MODEL=${RT_MODEL:-$RT_HOME/models/fashion_cnn.spec}
  CKPT_DIR=${CKPT_DIR:-$RT_HOME/runs/slurm-${SLURM_JOB_ID:-0}}
  RT_REQUEUE_EXIT=${RT_REQUEUE_EXIT:-75}
  [ -x "$RT_BIN" ] || rt_fail "trainer $RT_BIN not found; build it or set RT_BIN"
  [ -n "${RT_DATA:-}" ] || rt_fail "set RT_DATA to the HDF5 training set (sbatch --export=ALL,RT_DATA=...)"
  [ -r "$RT_DATA" ] || rt_fail "RT_DATA $RT_DATA is not readable"
  [ -r "$RT_MODEL" ] || rt_fail "RT_MODEL $RT_MODEL is not readable"
  mkdir -p "$CKPT_DIR" || rt_fail "cannot create CKPT_DIR $CKPT_DIR"
  # One compute thread per core the rank owns; never more threads than cores.
  export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
  export OPENBLAS_NUM_THREADS=1
  RT_CMD=("$RT_BIN" train --model "$RT_MODEL" --data "$RT_DATA"
    --epochs "${RT_EPOCHS:-5}" --batch-size "${RT_BATCH:-64}" --checkpoint-dir "$CKPT_DIR")
  [ -z "${RT_TEST_DATA:-}" ] || RT_CMD+=(--test-data "$RT_TEST_DATA")
  if [ -f "$CKPT_DIR/latest" ]; then
    rt_log "resuming from $CKPT_DIR ($(cat "$CKPT_DIR/latest")), restart ${SLURM_RESTART_COUNT:-0}"
    RT_CMD+=(--resume "$CKPT_DIR")
  fi
  RT_CMD+=("$@")
}

# rt_run LAUNCHER...: runs the launcher (srun/mpirun + RT_CMD) in the background
# so that this shell can take signals while it waits; forwards SIGUSR1/SIGUSR2
# to it. SIGTERM (scancel, time limit, preemption) reaches every step process
# from Slurm directly; this shell only notes it and keeps waiting, so that a
# trainer that checkpoints and exits 75 within KillWait is still requeued.
# Sets RT_STATUS to the launcher's exit status.
rt_run() {
  rt_log "$(date -u +%FT%TZ) on ${SLURM_JOB_NODELIST:-?}: $*"
  "$@" &
  RT_LAUNCHER_PID=$!
  trap 'rt_log "got SIGUSR1, forwarding to the ranks"; kill -USR1 "$RT_LAUNCHER_PID" 2>/dev/null' USR1
  trap 'rt_log "got SIGUSR2, forwarding to the ranks"; kill -USR2 "$RT_LAUNCHER_PID" 2>/dev/null' USR2
  trap 'rt_log "got SIGTERM (cancel, time limit or preemption)"' TERM
  # wait returns early (status > 128) when a trapped signal arrives; the
  # launcher is then still our unreaped child (kill -0 succeeds, even on a
  # zombie) and we wait again. Once wait has reaped it, its status is final.
  while :; do
    wait "$RT_LAUNCHER_PID"
    RT_STATUS=$?
    if [ "$RT_STATUS" -le 128 ] || ! kill -0 "$RT_LAUNCHER_PID" 2>/dev/null; then break; fi
  done
  trap - USR1 USR2 TERM
}

# rt_finish: requeue on RT_REQUEUE_EXIT, otherwise exit with the trainer's status.
rt_finish() {
  if [ "$RT_STATUS" -eq "$RT_REQUEUE_EXIT" ]; then
    rt_log "trainer exited $RT_REQUEUE_EXIT (checkpointed, wants a restart): scontrol requeue $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || rt_fail "scontrol requeue $SLURM_JOB_ID failed; resubmit with CKPT_DIR=$CKPT_DIR"
    exit 0
  fi
  rt_log "trainer exited $RT_STATUS"
  exit "$RT_STATUS"
}
