#!/usr/bin/env bash
# The collective watchdog: one rank stalls (test-only hook) before a bucket
# all-reduce or before the step's flag agreement; the job must end within --comm-timeout plus a margin, with a
# non-zero exit and a watchdog line naming the stalled rank - never a hang.
# Needs only the dist test program, not the dataset.
set -euo pipefail
BUILD=$1
PROG="$BUILD/tests/test_comm_watchdog"
[ -x "$PROG" ] || { echo "FAIL: $PROG not built" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
TIMEOUT=3
MARGIN=10 # start-up of mpirun and 3 steps, plus the watchdog's own margin

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# stall NP KIND OVERLAP STALL_RANK WANT_REGEX [FLAGS]: FLAGS=1 stalls before
# the flag agreement instead of inside bucket 0.
stall() {
  local np=$1 kind=$2 overlap=$3 srank=$4 want=$5 flags=${6:-0}
  local t0 t1 rc
  t0=$(date +%s.%N)
  set +e
  timeout -k 5 120 mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp \
    -x RINGTRAIN_TEST_STALL_RANK="$srank" -x RINGTRAIN_TEST_STALL_STEP=3 \
    -x RT_TEST_COMM_TIMEOUT="$TIMEOUT" -x RT_TEST_ALLREDUCE="$kind" -x RT_TEST_OVERLAP="$overlap" \
    -x RT_TEST_STALL_FLAGS="$flags" ${NODE_SIZE:+-x RINGTRAIN_TEST_NODE_SIZE=$NODE_SIZE} -np "$np" "$PROG" >"$work/out" 2>"$work/err"
  rc=$?
  set -e
  t1=$(date +%s.%N)
  local took
  took=$(echo "$t1 - $t0" | bc)
  [ "$rc" -ne 0 ] || fail "$kind np=$np: exit 0 despite a stalled rank"
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "$kind np=$np: hung (killed by timeout)"
  echo "$took < $TIMEOUT + $MARGIN" | bc | grep -q 1 ||
    fail "$kind np=$np: took $took s, more than $TIMEOUT + $MARGIN s"
  grep -q "TEST HOOK: stalling" "$work/err" || fail "$kind np=$np: the stall hook did not run"
  grep -Eq "$want" "$work/err" ||
    fail "$kind np=$np: no line matching '$want' in: $(cat "$work/err")"
  echo "ok: $kind np=$np overlap=$overlap: exit $rc after ${took}s: $(grep -E "$want" "$work/err" | head -1)"
}

wd='watchdog: all-reduce of step 3 bucket 0 of [0-9]+ \([^)]*\) has not completed after [0-9.]+ s; waiting on'
stall 2 ring 1 1 "\[rank 0\] $wd rank 1"
stall 2 hier 1 1 "\[rank 0\] $wd rank 1"
stall 2 ring 0 1 "\[rank 0\] $wd rank 1"
stall 3 ring 1 1 "\[rank [02]\] $wd rank 1"
stall 2 mpi 1 1 "\[rank [01]\] $wd"
# Alone, the stalled rank's compute thread catches its own comm thread.
stall 1 ring 1 0 "\[rank 0\] $wd rank 0's own comm thread"
# The flag agreement: through the node's shared window when the job is one
# node, whatever the backend (it names the rank it waits on); through MPI
# across "nodes" (NODE_SIZE: the test-only grouping).
fw='watchdog: the flag agreement at step 3 has not completed after [0-9.]+ s; waiting on'
stall 3 hier 0 2 "\[rank [01]\] $fw rank 2" 1
stall 2 ring 1 1 "\[rank 0\] $fw rank 1" 1
NODE_SIZE=2 stall 3 hier 0 2 "\[rank [01]\] $fw an unknown peer" 1
