#!/usr/bin/env bash
# Never a silently slow BLAS kernel (docs/PERFORMANCE.md, "The BLAS kernel").
# OpenBLAS is forced onto its generic Prescott kernel with OPENBLAS_CORETYPE,
# and RINGTRAIN_TEST_BLAS_NOT_USER=1 tells ringtrain that the variable is the
# test's, not the user's: ringtrain must then treat Prescott as OpenBLAS's own
# wrong choice, restart once with the CPU's kernel and say so in one line.
#   - 2 ranks train: each runs the corrected kernel ("cpu:" line), ONE "BLAS:"
#     line, the run succeeds;
#   - the user's own OPENBLAS_CORETYPE is respected (no restart);
#   - --blas-coretype NAME runs NAME (openblas: OpenBLAS's own choice, left
#     uncorrected); an unknown NAME is one usage line, exit 2;
#   - the restart guard: a process that was already restarted never restarts
#     again, and says in one warning line that the kernel is still old.
# Skipped (77) on a CPU without AVX or an OpenBLAS without DYNAMIC_ARCH.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
work=$(mktemp -d "$BUILD/blas.XXXX")
trap 'rm -rf "$work"' EXIT
step=(bench step --model "$SRC/models/fashion_cnn.spec" --batch-size 4 --steps 1 --warmup 0)

# kernel LOG: the kernel named by the run's "cpu:" start-up line
kernel() { sed -n 's/^cpu: OpenBLAS kernel \([^ ]*\) .*/\1/p' "$1" | sort -u; }

"$BIN" "${step[@]}" --threads 1 >"$work/plain.log" 2>&1 || fail "bench step: $(cat "$work/plain.log")"
grep -q '^cpu: OpenBLAS kernel .*(CPU: no AVX)' "$work/plain.log" && { echo "skip: no AVX"; exit 77; }
OPENBLAS_CORETYPE=Prescott "$BIN" "${step[@]}" --threads 1 >"$work/user.log" 2>&1 ||
  fail "bench step with the user's OPENBLAS_CORETYPE: $(cat "$work/user.log")"
[ "$(kernel "$work/user.log")" = Prescott ] || { echo "skip: OPENBLAS_CORETYPE has no effect"; exit 77; }
best=$(kernel "$work/plain.log")
[ "$best" != Prescott ] || fail "OpenBLAS's own choice on this CPU is Prescott: $(cat "$work/plain.log")"
grep -q '^BLAS:' "$work/user.log" && fail "the user's OPENBLAS_CORETYPE was overridden: $(cat "$work/user.log")"

fashion_subset 2000 500
# (local ranks inherit mpirun's environment)
OPENBLAS_CORETYPE=Prescott RINGTRAIN_TEST_BLAS_NOT_USER=1 rt_mpirun 2 train \
  --model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" --train-limit 256 --epochs 1 \
  --batch-size 64 --log-every 0 --progress none >"$work/forced.log" 2>&1 ||
  fail "training with a forced Prescott kernel: $(cat "$work/forced.log")"
[ "$(grep -c '^BLAS:' "$work/forced.log")" = 1 ] || fail "expected one BLAS: line: $(cat "$work/forced.log")"
grep -q "^BLAS: OpenBLAS chose its Prescott kernel on a CPU with .*; restarted with OPENBLAS_CORETYPE=$best " \
  "$work/forced.log" || fail "the correction line: $(cat "$work/forced.log")"
[ "$(kernel "$work/forced.log")" = "$best" ] || fail "kernel after the correction: $(cat "$work/forced.log")"
grep -q '^final: ' "$work/forced.log" || fail "no final line: $(cat "$work/forced.log")"

# --blas-coretype runs the named kernel (Sandybridge: any AVX CPU has it).
"$BIN" "${step[@]}" --blas-coretype Sandybridge >"$work/flag.log" 2>&1 ||
  fail "--blas-coretype Sandybridge: $(cat "$work/flag.log")"
[ "$(kernel "$work/flag.log")" = Sandybridge ] || fail "--blas-coretype: $(cat "$work/flag.log")"
grep -q '^BLAS:' "$work/flag.log" && fail "--blas-coretype was corrected: $(cat "$work/flag.log")"

# --blas-coretype openblas: OpenBLAS's own choice, even an outdated one.
OPENBLAS_CORETYPE=Prescott RINGTRAIN_TEST_BLAS_NOT_USER=1 "$BIN" "${step[@]}" --threads 1 \
  --blas-coretype openblas >"$work/own.log" 2>&1 || fail "--blas-coretype openblas: $(cat "$work/own.log")"
[ "$(kernel "$work/own.log")" = Prescott ] || fail "--blas-coretype openblas: $(cat "$work/own.log")"

set +e
rt_mpirun 2 "${step[@]}" --blas-coretype Bogus >"$work/bogus.out" 2>"$work/bogus.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "--blas-coretype Bogus exited $rc: $(cat "$work/bogus.err")"
[ "$(grep -c "^ringtrain" "$work/bogus.err")" = 1 ] || fail "expected one ringtrain line: $(cat "$work/bogus.err")"
grep -q '^ringtrain bench: --blas-coretype Bogus: this OpenBLAS has no such kernel' "$work/bogus.err" ||
  fail "--blas-coretype Bogus: $(cat "$work/bogus.err")"

# The guard: already restarted once, so no second restart, one warning line.
RINGTRAIN_BLAS_REEXEC=Prescott OPENBLAS_CORETYPE=Prescott RINGTRAIN_TEST_BLAS_NOT_USER=1 \
  "$BIN" "${step[@]}" --threads 1 >"$work/guard.out" 2>"$work/guard.err" ||
  fail "restart guard: $(cat "$work/guard.err")"
[ "$(kernel "$work/guard.out")" = Prescott ] || fail "restarted twice: $(cat "$work/guard.out")"
[ "$(grep -c . "$work/guard.err")" = 1 ] &&
  grep -q '^ringtrain: warning: OpenBLAS runs its Prescott kernel on a CPU with' "$work/guard.err" ||
  fail "restart guard warning: $(cat "$work/guard.err")"
echo "ok: Prescott corrected to $best"
