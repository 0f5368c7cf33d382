#!/usr/bin/env bash
# One node, several GPUs: one rank per GPU, gradients summed with NCCL. Rank r
# uses GPU (local rank mod the GPUs it sees) - the trainer's rule, the same for
# the CUDA engine and NCCL (docs/GPU.md, "Ranks and GPUs") - and runs on the
# cores nearest that GPU.
#
#   launch/multi-gpu.sh [NGPUS] [train] <ringtrain train args...>
#   e.g. launch/multi-gpu.sh 4 --model models/fashion_cnn.spec --data data/fashion-mnist-train.h5
#
# NGPUS defaults to the GPUs this process may use: the entries of
# CUDA_VISIBLE_DEVICES when it is set, else the GPUs `nvidia-smi -L` lists.
# Binding: rank r's cores are GPU r's "CPU Affinity" in `nvidia-smi topo -m`
# (GPU r counted in CUDA_VISIBLE_DEVICES when it lists indices; CUDA numbers
# GPUs in PCI order here, as nvidia-smi does), else an even split of this
# machine's cores; RINGTRAIN_BIND=none turns binding off. Every NCCL_*
# variable set here is passed to every rank (mpirun -x), and NCCL_DEBUG
# defaults to WARN. MPIRUN_ARGS adds options to mpirun (e.g. a hostfile).
# Under Slurm, use instead (each rank then sees one GPU, as device 0):
#   srun --mpi=pmix --ntasks-per-node=NGPUS --gpus-per-task=1 --cpu-bind=cores \
#     ringtrain train --device cuda --allreduce nccl ...
set -euo pipefail

# Inside each rank (mpirun starts this script again): bind, then run.
if [ "${1:-}" = --bind-exec ]; then
  shift
  lr=${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-${MPI_LOCALRANKID:-0}}}
  IFS=';' read -ra sets <<<"${RINGTRAIN_GPU_CPUS:-}"
  if [ "${#sets[@]}" -gt 0 ] && command -v taskset >/dev/null; then
    exec taskset -c "${sets[$((lr % ${#sets[@]}))]}" "$@"
  fi
  exec "$@"
fi

here=$(cd "$(dirname "$0")/.." && pwd)
self="$here/launch/$(basename "$0")"
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  ngpu=$1
  shift
elif [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
  IFS=',' read -ra vis <<<"$CUDA_VISIBLE_DEVICES"
  ngpu=${#vis[@]}
else
  ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
[ "${1:-}" != train ] || shift # `multi-gpu.sh 4 train ...` reads as the trainer's own command line
[ "${ngpu:-0}" -ge 1 ] || {
  echo "multi-gpu: no GPU found (CUDA_VISIBLE_DEVICES lists none, or nvidia-smi -L lists none); pass NGPUS" >&2
  exit 1
}

# cpus_near PHYSICAL_GPU: that GPU's CPU affinity from nvidia-smi topo -m, or nothing
cpus_near() {
  nvidia-smi topo -m 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | awk -F'\t' -v gpu="GPU$1" '
    NR == 1 { for (i = 1; i <= NF; i++) { h = $i; gsub(/^ +| +$/, "", h); if (h == "CPU Affinity") col = i } }
    NR > 1 && col { g = $1; gsub(/^ +| +$/, "", g)
      if (g == gpu) { c = $col; gsub(/^ +| +$/, "", c); if (c ~ /^[0-9][0-9,-]*$/) print c; exit } }'
}

# One core set per GPU, ';'-separated, in local rank order.
bind_sets() {
  local ncpu per sets="" g phys c
  ncpu=$(nproc)
  per=$((ncpu / ngpu > 0 ? ncpu / ngpu : 1))
  IFS=',' read -ra vis <<<"${CUDA_VISIBLE_DEVICES:-}"
  for ((g = 0; g < ngpu; g++)); do
    phys=$g
    [ "${#vis[@]}" -eq 0 ] || phys=${vis[$((g % ${#vis[@]}))]}
    c=""
    [[ "$phys" =~ ^[0-9]+$ ]] && c=$(cpus_near "$phys")
    [ -n "$c" ] || c="$(((g * per) % ncpu))-$((((g * per) % ncpu) + per - 1))"
    sets+="${sets:+;}$c"
  done
  echo "$sets"
}

bin=${RINGTRAIN_BIN:-$here/build/ringtrain}
flags=(-np "$ngpu" --bind-to none -x OPENBLAS_NUM_THREADS=1 -x CUDA_DEVICE_ORDER=PCI_BUS_ID)
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
for v in $(compgen -e | grep '^NCCL_' || true); do
  flags+=(-x "$v")
done
[ "$(id -u)" -ne 0 ] || flags+=(--allow-run-as-root)
run=("$bin")
if [ "${RINGTRAIN_BIND:-cores}" != none ]; then
  flags+=(-x "RINGTRAIN_GPU_CPUS=$(bind_sets)")
  run=(bash "$self" --bind-exec "$bin")
fi
allreduce=(--allreduce nccl)
[ "$ngpu" -gt 1 ] || allreduce=()
# shellcheck disable=SC2086 # MPIRUN_ARGS is a list of options
exec mpirun "${flags[@]}" ${MPIRUN_ARGS:-} "${run[@]}" train --device cuda "${allreduce[@]}" "$@"
