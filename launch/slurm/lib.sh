# shellcheck shell=bash
# Shared by launch/slurm/train.sbatch and train-mpirun.sbatch (Slurm copies only
# the batch script itself, so they find this file through RT_HOME, default the
# directory sbatch was run from: submit from the repository root or set RT_HOME).
#
# The job, from the outside:
#   - the trainer runs as one job step (srun, or mpirun inside the allocation);
#   - resumes from $CKPT_DIR when it holds a checkpoint (`--resume auto`: a
#     requeued run, or a resubmission with the same CKPT_DIR);
#   - the early-warning signal (sbatch --signal=B:USR1@120: SIGUSR1 to this batch
#     shell 120 s before the time limit) is forwarded to the launcher, which
#     relays it to every rank;
#   - when the trainer exits with RT_REQUEUE_EXIT (75, EX_TEMPFAIL: "checkpoint
#     written, run me again"), the job requeues itself with `scontrol requeue`,
#     unless Slurm has already requeued it (scontrol requeue, preemption) or
#     the job was cancelled (SIGTERM to this shell: scancel, the time limit);
#     a cancelled job ends with exit 75 and is not requeued.
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
  # --resume auto: the trainer decides under the directory's lock, so a run
  # that died between writing a checkpoint and its `latest` pointer resumes too
  [ ! -f "$CKPT_DIR/latest" ] ||
    rt_log "resuming from $CKPT_DIR ($(cat "$CKPT_DIR/latest")), restart ${SLURM_RESTART_COUNT:-0}"
  RT_CMD+=(--resume auto "$@")
}

# rt_run LAUNCHER...: runs the launcher (srun/mpirun + RT_CMD) in the background
# so that this shell can take signals while it waits; forwards SIGUSR1/SIGUSR2
# to it and notes them in RT_SIGNALS. SIGTERM (scancel, scontrol requeue,
# preemption, the time limit) reaches every process of the job from Slurm
# directly; this shell only notes it and keeps waiting, so that the trainer's
# checkpoint and stop line are complete before the job step ends.
# Sets RT_STATUS to the launcher's exit status.
rt_run() {
  RT_SIGNALS=""
  rt_log "$(date -u +%FT%TZ) on ${SLURM_JOB_NODELIST:-?}: $*"
  "$@" &
  RT_LAUNCHER_PID=$!
  trap 'RT_SIGNALS+=" USR1"; rt_log "got SIGUSR1, forwarding to the ranks"; kill -USR1 "$RT_LAUNCHER_PID" 2>/dev/null' USR1
  trap 'RT_SIGNALS+=" USR2"; rt_log "got SIGUSR2, forwarding to the ranks"; kill -USR2 "$RT_LAUNCHER_PID" 2>/dev/null' USR2
  trap 'RT_SIGNALS+=" TERM"; rt_log "got SIGTERM (scancel, scontrol requeue, preemption or the time limit)"' TERM
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

# rt_requeued_by_slurm: true when Slurm itself has requeued this job since it
# started (scontrol requeue by a user or admin, preemption with
# PreemptMode=REQUEUE): its restart count is above this run's.
rt_requeued_by_slurm() {
  local restarts
  restarts=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | grep -oE '(^| )Restarts=[0-9]+' | head -1 | cut -d= -f2)
  [ -n "$restarts" ] && [ "$restarts" -gt "${SLURM_RESTART_COUNT:-0}" ]
}

# rt_finish: after the trainer exited RT_REQUEUE_EXIT (it wrote a checkpoint):
#   - Slurm already requeued the job: say so; the next run resumes;
#   - this shell got SIGTERM (scancel, the time limit): stop for good, exit 75;
#   - otherwise (the USR1/USR2 warning, or a signal sent to the ranks only):
#     scontrol requeue.
# Any other status is the job's exit status.
rt_finish() {
  if [ "$RT_STATUS" -ne "$RT_REQUEUE_EXIT" ]; then
    rt_log "trainer exited $RT_STATUS"
    exit "$RT_STATUS"
  fi
  local done="trainer exited $RT_STATUS (checkpoint in $CKPT_DIR)"
  local requeued="Slurm has already requeued job $SLURM_JOB_ID (scontrol requeue or preemption): it will run again and resume from $CKPT_DIR"
  if rt_requeued_by_slurm; then
    rt_log "$done; $requeued"
    exit 0
  fi
  case " $RT_SIGNALS " in
  *" TERM "*)
    rt_log "$done; stopped by SIGTERM (scancel or the time limit), job $SLURM_JOB_ID not requeued; to continue, submit again with CKPT_DIR=$CKPT_DIR"
    exit "$RT_STATUS"
    ;;
  esac
  rt_log "$done, wants a restart: scontrol requeue $SLURM_JOB_ID"
  if ! scontrol requeue "$SLURM_JOB_ID"; then
    rt_requeued_by_slurm || rt_fail "scontrol requeue $SLURM_JOB_ID failed; resubmit with CKPT_DIR=$CKPT_DIR"
    rt_log "$requeued"
  fi
  exit 0
}
