#!/usr/bin/env bash
# --device cuda without a usable GPU (CI, this machine): every rank ends with
# ONE clear line and exit 1, never a crash or a hang. With a GPU the real
# checks are tests/gpu/run (docs/GPU.md); this test then only checks usage.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/devcuda.XXXX")
trap 'rm -rf "$work"' EXIT
spec="$SRC/models/fashion_cnn.spec"

NP=2
run() {
  set +e
  RT_TIMEOUT=60 rt_mpirun "$NP" train --model "$spec" --data "$TRAIN_H5" --epochs 1 "$@" \
    >"$work/out" 2>"$work/err"
  rc=$?
  set -e
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "timed out (hang) on: $*"
  lines=$(grep -c '^ringtrain' "$work/err" || true)
  [ "$lines" -eq 1 ] || fail "expected one ringtrain line, got $lines: $(cat "$work/err")"
  echo "ok ($rc): $(grep '^ringtrain' "$work/err")"
}

run --precision bf16
[ "$rc" -eq 2 ] && grep -q -- "--precision bf16 needs --device cuda" "$work/err" || fail "bf16 on cpu"
run --precision tf32
[ "$rc" -eq 2 ] && grep -q -- "--precision tf32 needs --device cuda" "$work/err" || fail "tf32 on cpu"
run --device cuda --precision fp16
[ "$rc" -eq 2 ] && grep -q -- "--precision: expected 'fp32', 'tf32' or 'bf16', got 'fp16'" "$work/err" ||
  fail "bad precision"
run --device tpu
[ "$rc" -eq 2 ] && grep -q -- "--device: expected 'cpu' or 'cuda'" "$work/err" || fail "bad device"

if nvidia-smi -L >/dev/null 2>&1; then
  echo "a GPU is present: the no-GPU failure paths are not tested here (run tests/gpu/run)"
  exit 0
fi
NP=1 run --device cuda
[ "$rc" -eq 1 ] || fail "exit $rc, expected 1"
grep -Eq "no CUDA device|built without CUDA" "$work/err" || fail "unclear message: $(cat "$work/err")"
run --device cuda --allreduce ring
[ "$rc" -eq 1 ] || fail "2 ranks, ring: exit $rc, expected 1"
grep -Eq "no CUDA device|built without CUDA" "$work/err" || fail "2 ranks, ring: $(cat "$work/err")"
run --allreduce nccl
[ "$rc" -ne 0 ] && grep -Eq "needs the GPU engine|built without NCCL" "$work/err" ||
  fail "nccl on the cpu engine: $(cat "$work/err")"
echo "device_cuda: ok"
