# Shared by tests/e2e/*.sh: paths, an mpirun wrapper and the Fashion-MNIST
# subset the end-to-end tests train on. Sourced with BUILD and SRC set.
set -euo pipefail
BIN="$BUILD/ringtrain"
DATA="$BUILD/testdata"
FM=/usr/share/datasets/fashion-mnist
mkdir -p "$DATA"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# rt_mpirun NP ARGS...: ringtrain on NP ranks, one BLAS thread each, bounded in time.
rt_mpirun() {
  local np=$1
  shift
  timeout -k 10 "${RT_TIMEOUT:-300}" mpirun --oversubscribe --allow-run-as-root \
    --mca btl self,vader,tcp -x OPENBLAS_NUM_THREADS=1 -np "$np" "$BIN" "$@"
}

# The first N training and test samples of Fashion-MNIST as HDF5 (cached in the build dir).
fashion_subset() {
  local n_train=$1 n_test=$2
  TRAIN_H5="$DATA/fm-train-$n_train.h5"
  TEST_H5="$DATA/fm-test-$n_test.h5"
  [ -f "$TRAIN_H5" ] || "$BUILD/rt_idx2h5" --images "$FM/train-images-idx3-ubyte.gz" \
    --labels "$FM/train-labels-idx1-ubyte.gz" --limit "$n_train" --out "$TRAIN_H5" >/dev/null
  [ -f "$TEST_H5" ] || "$BUILD/rt_idx2h5" --images "$FM/t10k-images-idx3-ubyte.gz" \
    --labels "$FM/t10k-labels-idx1-ubyte.gz" --limit "$n_test" --out "$TEST_H5" >/dev/null
}

# rt_stop_by_signal PID DIR LOG: SIGUSR1 to every rank of the background run
# PID that checkpoints into DIR (what `scancel --signal=USR1` does); the run
# must stop with exit 75 (LOG is shown if not).
rt_stop_by_signal() {
  local pid=$1 dir=$2 log=$3 ranks rc
  ranks=$(pgrep -f "^$BIN train .*$dir" || true)
  [ -n "$ranks" ] || fail "no ranks found to signal"
  kill -USR1 $ranks
  set +e
  wait "$pid"
  rc=$?
  set -e
  [ "$rc" -eq 75 ] || fail "signalled run exited $rc, expected 75: $(cat "$log")"
}

# rt_same_final DIR_A DIR_B WHAT: the newest checkpoints of two runs are of
# the same step, with bitwise-equal parameters and optimizer state.
rt_same_final() {
  local a b
  a="$1/$(cat "$1/latest")"
  b="$2/$(cat "$2/latest")"
  [ "$(basename "$a")" = "$(basename "$b")" ] || fail "final steps differ: $a vs $b"
  h5diff -q "$a" "$b" /params /params || fail "parameters differ after $3"
  h5diff -q "$a" "$b" /optim /optim || fail "optimizer state differs after $3"
}

# expect_error WANT_SUBSTRING WANT_EXIT -- ringtrain args: the job (NP ranks,
# default 2; RT_WRAP runs before timeout) ends with exit WANT_EXIT, exactly
# one stderr line starting with "ringtrain" that contains WANT_SUBSTRING, no
# crash and no hang. Leaves stdout in ./out and stderr in ./err; counts
# successes in n_ok.
n_ok=0
expect_error() {
  local want=$1 want_rc=$2
  shift 3
  set +e
  # shellcheck disable=SC2086
  ${RT_WRAP:-} timeout -k 10 60 mpirun --oversubscribe --allow-run-as-root \
    --mca btl self,vader,tcp -x OPENBLAS_NUM_THREADS=1 -np "${NP:-2}" "$BIN" "$@" >out 2>err
  local rc=$?
  set -e
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "timed out (hang) on: $*"
  [ "$rc" -eq "$want_rc" ] || fail "exit $rc, expected $want_rc on: $* ($(cat err))"
  ! grep -q -e 'Segmentation fault' -e 'Process received signal' -e 'Sanitizer' err ||
    fail "crash on: $* ($(cat err))"
  local lines
  lines=$(grep -c '^ringtrain' err || true)
  [ "$lines" -eq 1 ] || fail "expected one ringtrain line, got $lines on: $*: $(cat err)"
  grep -qF -- "$want" err || fail "message lacks '$want': $(cat err)"
  n_ok=$((n_ok + 1))
  echo "ok: $(grep '^ringtrain' err)"
}
