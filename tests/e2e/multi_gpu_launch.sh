#!/usr/bin/env bash
# launch/multi-gpu.sh's arguments, with a fake nvidia-smi (4 GPUs, each near 8
# cores) and a fake mpirun (prints its arguments) on PATH: NGPUS from the
# argument, CUDA_VISIBLE_DEVICES (not nvidia-smi -L) or nvidia-smi -L; `train`
# given twice; each rank's cores from nvidia-smi topo -m's CPU Affinity (of
# the GPUs CUDA_VISIBLE_DEVICES names), else an even split; NCCL_* passed to
# every rank; and the rank-side binding itself (taskset) on this machine.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
work=$(mktemp -d "$BUILD/multigpu.XXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
cat >"$work/bin/nvidia-smi" <<'EOF'
#!/usr/bin/env bash
case "$1" in
-L) for g in 0 1 2 3; do echo "GPU $g: NVIDIA H200 (UUID: GPU-$g)"; done ;;
topo)
  [ -z "${FAKE_NO_TOPO:-}" ] || exit 9
  printf '\033[4m\tGPU0\tGPU1\tGPU2\tGPU3\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\033[0m\n'
  for g in 0 1 2 3; do
    printf 'GPU%d\t X \tNV18\tNV18\tNV18\t%d-%d\t%d\t\tN/A\n' $g $((g * 8)) $((g * 8 + 7)) $((g / 2))
  done ;;
*) exit 2 ;;
esac
EOF
cat >"$work/bin/mpirun" <<'EOF'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_MPIRUN_ARGS"
EOF
chmod +x "$work/bin/nvidia-smi" "$work/bin/mpirun"
args="$work/args"

# launch ARGS...: the launcher with the fakes first on PATH; $args holds mpirun's arguments
launch() {
  rm -f "$args"
  PATH="$work/bin:$PATH" FAKE_MPIRUN_ARGS="$args" RINGTRAIN_BIN=/opt/rt \
    bash "$SRC/launch/multi-gpu.sh" "$@" >"$work/out" 2>&1
}
# has LINE: mpirun got exactly this argument
has() { grep -qxF -- "$1" "$args" || fail "mpirun lacks '$1': $(tr '\n' ' ' <"$args")"; }
# after X Y: argument Y follows argument X
after() { grep -A1 -xF -- "$1" "$args" | tail -1 | grep -qxF -- "$2" ||
  fail "'$1' not followed by '$2': $(tr '\n' ' ' <"$args")"; }

unset CUDA_VISIBLE_DEVICES NCCL_DEBUG
launch 4 train --model m.spec --data d.h5 || fail "4 train: $(cat "$work/out")"
after -np 4
[ "$(grep -cx train "$args")" -eq 1 ] || fail "train twice: $(tr '\n' ' ' <"$args")"
after train --device
after --data d.h5
has "RINGTRAIN_GPU_CPUS=0-7;8-15;16-23;24-31"
has "NCCL_DEBUG"
has "CUDA_DEVICE_ORDER=PCI_BUS_ID"
echo "ok: 4 train ...: $(tr '\n' ' ' <"$args")"

launch --model m.spec || fail "no NGPUS: $(cat "$work/out")"
after -np 4
echo "ok: NGPUS from nvidia-smi -L"

CUDA_VISIBLE_DEVICES=1,3 NCCL_IB_DISABLE=1 NCCL_SOCKET_IFNAME=eth0 launch train --model m.spec ||
  fail "CUDA_VISIBLE_DEVICES=1,3: $(cat "$work/out")"
after -np 2
has "RINGTRAIN_GPU_CPUS=8-15;24-31"
has NCCL_IB_DISABLE
has NCCL_SOCKET_IFNAME
[ "$(grep -cx train "$args")" -eq 1 ] || fail "train twice (no NGPUS)"
echo "ok: CUDA_VISIBLE_DEVICES=1,3: 2 ranks on GPU 1's and GPU 3's cores, NCCL_* passed"

FAKE_NO_TOPO=1 launch 2 --model m.spec || fail "no topo: $(cat "$work/out")"
n=$(nproc)
per=$((n / 2 > 0 ? n / 2 : 1))
has "RINGTRAIN_GPU_CPUS=0-$((per - 1));$((per % n))-$((per % n + per - 1))"
echo "ok: without nvidia-smi topo: an even split of $n cores"

RINGTRAIN_BIND=none launch 2 --model m.spec || fail "bind none"
grep -q RINGTRAIN_GPU_CPUS "$args" && fail "RINGTRAIN_BIND=none still binds"
after --bind-to none
echo "ok: RINGTRAIN_BIND=none"

set +e
CUDA_VISIBLE_DEVICES= launch --model m.spec
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q "no GPU found" "$work/out" || fail "empty CUDA_VISIBLE_DEVICES: $rc $(cat "$work/out")"
echo "ok: CUDA_VISIBLE_DEVICES empty: $(cat "$work/out")"

# The rank side: local rank 1 of "0;1" runs on core 1 (when this machine has 2).
if [ "$n" -ge 2 ] && command -v taskset >/dev/null; then
  got=$(OMPI_COMM_WORLD_LOCAL_RANK=1 RINGTRAIN_GPU_CPUS="0;1" bash "$SRC/launch/multi-gpu.sh" \
    --bind-exec grep Cpus_allowed_list /proc/self/status | awk '{ print $2 }')
  [ "$got" = 1 ] || fail "local rank 1 bound to '$got', expected core 1"
  echo "ok: local rank 1 runs on core 1"
fi
echo "multi_gpu_launch: ok"
