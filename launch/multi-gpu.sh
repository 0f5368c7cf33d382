#!/usr/bin/env bash
# One node, several GPUs: one rank per GPU, rank r on the GPU of its local
# rank (the trainer picks device = local rank: OMPI_COMM_WORLD_LOCAL_RANK
# under mpirun, SLURM_LOCALID under srun, both seen through MPI's shared-memory
# communicator), gradients summed with NCCL.
#
#   launch/multi-gpu.sh [NGPUS] <ringtrain train args...>
#   e.g. launch/multi-gpu.sh 4 --model models/fashion_cnn.spec --data data/fashion-mnist-train.h5
#
# NGPUS defaults to the GPUs nvidia-smi lists. Under Slurm, use instead:
#   srun --mpi=pmix --ntasks-per-node=NGPUS --gpus-per-task=1 ringtrain train --device cuda --allreduce nccl ...
# (with --gpus-per-task=1 each rank sees one GPU, and a rank that sees exactly
# one GPU uses it whatever its local rank).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  ngpu=$1
  shift
else
  ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
[ "${ngpu:-0}" -ge 1 ] || { echo "multi-gpu: no GPU found (nvidia-smi -L lists none); pass NGPUS" >&2; exit 1; }
bin=${RINGTRAIN_BIN:-$here/build/ringtrain}
flags=(-np "$ngpu" --bind-to none -x OPENBLAS_NUM_THREADS=1 -x NCCL_DEBUG=${NCCL_DEBUG:-WARN})
[ "$(id -u)" -ne 0 ] || flags+=(--allow-run-as-root)
allreduce=(--allreduce nccl)
[ "$ngpu" -gt 1 ] || allreduce=()
exec mpirun "${flags[@]}" "$bin" train --device cuda "${allreduce[@]}" "$@"
