#!/usr/bin/env bash
# Ranks and GPUs, without a GPU (docs/GPU.md, "Ranks and GPUs"): a rank uses
# GPU (local rank mod the GPUs it sees), and two ranks of a node on one GPU
# are refused before anything can block. The test-only RINGTRAIN_TEST_GPU_COUNT
# makes each rank "see" that many GPUs. 3 ranks seeing 2 GPUs must end, on
# every backend (nccl too, which hung on one GPU with 2 ranks), within 10 s
# with exit 1 and one line naming rank 2, its local rank and the GPUs it sees.
# RINGTRAIN_GPUS_SHARED=1 lifts the refusal for ring/hier/mpi, not for nccl;
# 3 ranks seeing 3 GPUs are not refused (the engine then reports that there is
# no GPU here).
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
work=$(mktemp -d "$BUILD/gpuranks.XXXX")
trap 'rm -rf "$work"' EXIT
"$BUILD/tests/rt_mkh5" create "$work/d.h5" images:f32:48x1x8x8 labels:u8:48:mod=10 ||
  fail "rt_mkh5"
cat >"$work/m.spec" <<'EOF'
input 1 8 8
flatten
dense 10
loss softmax_cross_entropy
EOF

# run NGPUS ARGS...: 3 ranks seeing NGPUS GPUs, at most 10 s; sets rc, line
run() {
  local ngpu=$1
  shift
  set +e
  RINGTRAIN_TEST_GPU_COUNT=$ngpu RT_TIMEOUT=10 rt_mpirun 3 train --model "$work/m.spec" \
    --data "$work/d.h5" --epochs 1 --batch-size 12 --device cuda "$@" >"$work/out" 2>"$work/err"
  rc=$?
  set -e
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "not ended within 10 s: $*: $(cat "$work/err")"
  [ "$rc" -ne 0 ] || fail "exit 0 without a GPU: $*"
  local n
  n=$(grep -c '^ringtrain' "$work/err" || true)
  [ "$n" -eq 1 ] || fail "expected one ringtrain line, got $n: $*: $(cat "$work/err")"
  line=$(grep '^ringtrain' "$work/err")
}

refusal="rank 2 (local rank 2 of 3 on its node) sees 2 GPU(s) (CUDA_VISIBLE_DEVICES unset) and would share GPU 0 with local rank 0"
unset CUDA_VISIBLE_DEVICES
for kind in nccl ring hier mpi; do
  run 2 --allreduce "$kind"
  [ "$rc" -eq 1 ] || fail "$kind: exit $rc, expected 1"
  grep -qF "$refusal" <<<"$line" || fail "$kind: not the refusal: $line"
  echo "ok: $kind, 3 ranks on 2 GPUs: $line"
done

RINGTRAIN_GPUS_SHARED=1 run 2 --allreduce nccl
grep -qF "$refusal" <<<"$line" || fail "nccl shared: not refused: $line"
echo "ok: RINGTRAIN_GPUS_SHARED=1 does not apply to nccl"

if nvidia-smi -L >/dev/null 2>&1; then
  echo "a GPU is present: the paths past the refusal need tests/gpu/run_ranks"
  exit 0
fi
RINGTRAIN_GPUS_SHARED=1 run 2 --allreduce ring
grep -q "share GPU" <<<"$line" && fail "ring shared: refused: $line"
grep -Eq "no CUDA device|built without CUDA" <<<"$line" || fail "ring shared: $line"
grep -q "GPUs shared by ranks of a node, from rank 2 on" "$work/out" ||
  fail "ring shared: no line about sharing: $(cat "$work/out")"
echo "ok: RINGTRAIN_GPUS_SHARED=1 with ring passes the check: $line"
run 3 --allreduce hier
grep -q "share GPU" <<<"$line" && fail "3 GPUs: refused: $line"
grep -Eq "no CUDA device|built without CUDA" <<<"$line" || fail "3 GPUs: $line"
echo "ok: 3 ranks on 3 GPUs pass the check: $line"
echo "gpu_ranks: ok"
