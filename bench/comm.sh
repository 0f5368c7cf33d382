#!/usr/bin/env bash
# Communication benchmarks, side by side in one run (docs/COMMUNICATION.md):
#   1. `ringtrain bench allreduce`, 2 ranks: ring, mpi, hier per size, ratio to
#      MPI_Allreduce; then the same while a busy loop shares core 1 (a noisy
#      neighbour: every rank on that core is descheduled now and then);
#   1c. what the trainer's NaN/Inf check of the gradients costs on hier's
#      zero-copy path: unchecked, checked during the sum, scan then sum
#      (build/bench/bench_check), for the CNN's and the MLP's gradient sizes;
#   2. `ringtrain bench step` on a 22.6 M-parameter model, 2 ranks, hier (the
#      default) and ring: the share of communication hidden behind backward;
#   3. data-parallel scaling of the tutorial CNN: 1 rank vs 2 ranks with the same
#      per-rank batch (32), 2 epochs of 6,000 images, REPEATS alternating pairs,
#      median images/s and the median of the pairs' ratios to 2x; each rank bound
#      to one core (mpirun's default for up to 2 ranks), so --overlap auto runs
#      without the comm thread. Each pair also runs two independent 1-rank jobs
#      at once, one per core: what the two cores give without any
#      communication, the hardware's own ceiling for the 2-rank rate;
#   3b. `ringtrain bench scaling`, the same comparison inside one job: rounds
#      of 2 ranks together and each rank alone (the other asleep), a few
#      hundred ms apart, so that the VM's slow minutes hit both sides; ratios
#      to the sum of the two cores' 1-rank rates and to the slower core's.
# Usage: bench/comm.sh [BUILD_DIR] [REPEATS]   (not a test; prints a report)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
reps=${2:-9}
bin="$build/ringtrain"
mpi=(mpirun --allow-run-as-root --oversubscribe -x OPENBLAS_NUM_THREADS=1)
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== 1. all-reduce bus bandwidth, 2 ranks (medians of 20 calls per size)"
"${mpi[@]}" -np 2 "$bin" bench allreduce --sizes 4K,64K,1M,4M,16M,64M,256M --iters 20

echo "== 1b. the same, 1-64 MiB, while a busy loop shares core 1"
timeout 120 taskset -c 1 sh -c 'while :; do :; done' &
hog=$!
"${mpi[@]}" -np 2 "$bin" bench allreduce --sizes 1M,4M,16M,64M --iters 20
kill "$hog" 2>/dev/null || true
wait "$hog" 2>/dev/null || true

echo "== 1c. the non-finite check of the gradients, 2 ranks, hier zero-copy"
"${mpi[@]}" -np 2 "$build/bench/bench_check" --floats 421642 --iters 300
"${mpi[@]}" -np 2 "$build/bench/bench_check" --floats 22609930 --iters 20

for kind in hier ring; do
  echo "== 2. training step anatomy, 22.6 M parameters, 2 ranks, global batch 64, $kind"
  "${mpi[@]}" -np 2 "$bin" bench step --model "$here/models/mlp_22m.spec" --batch-size 64 \
    --steps 20 --allreduce "$kind"
done

echo "== 3. scaling of the tutorial CNN, 32 images per rank, $reps alternating pairs"
data="$build/testdata/fm-train-6000.h5"
if [ ! -f "$data" ]; then
  mkdir -p "$build/testdata"
  "$build/rt_idx2h5" --images /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
    --labels /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz --limit 6000 --out "$data" >/dev/null
fi
ips() { sed -nE 's/^final:.* ([0-9]+) images\/s.*/\1/p'; }
train=(train --model "$here/models/fashion_cnn.spec" --data "$data" --epochs 2 --log-every 0
  --progress none)
one=() two=() pair=() both=()
for _ in $(seq "$reps"); do
  a=$("${mpi[@]}" -np 1 "$bin" "${train[@]}" --batch-size 32 | ips)
  b=$("${mpi[@]}" -np 2 "$bin" "${train[@]}" --batch-size 64 | ips)
  "${mpi[@]}" -np 1 --bind-to none taskset -c 1 "$bin" "${train[@]}" --batch-size 32 | ips \
    >"$build/comm_sh_core1.txt" &
  c0=$("${mpi[@]}" -np 1 --bind-to none taskset -c 0 "$bin" "${train[@]}" --batch-size 32 | ips)
  wait
  c1=$(cat "$build/comm_sh_core1.txt")
  one+=("$a") two+=("$b") pair+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / (2 * a) }')")
  both+=("$(awk -v a="$a" -v c="$((c0 + c1))" 'BEGIN { printf "%.3f", c / (2 * a) }')")
done
med() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m1=$(med "${one[@]}") m2=$(med "${two[@]}") mp=$(med "${pair[@]}")
echo "1 rank:  ${one[*]} images/s (median $m1)"
echo "2 ranks: ${two[*]} images/s (median $m2)"
mb=$(med "${both[@]}")
echo "per pair (2 ranks / (2 x 1 rank), runs back to back): ${pair[*]}"
echo "two independent 1-rank jobs at once / (2 x 1 rank), same pairs: ${both[*]} (median $mb)"
awk -v a="$m1" -v b="$m2" -v p="$mp" 'BEGIN { printf "2-rank throughput = %.2f x (2 x 1-rank) (medians); median of the pairs %.2f\n", b / (2 * a), p }'
echo "== 3b. scaling inside one job (bench scaling), 32 per rank, synthetic data"
"${mpi[@]}" -np 2 "$bin" bench scaling --model "$here/models/fashion_cnn.spec" --batch-per-rank 32 \
  --rounds 15 --steps 20
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
