#!/usr/bin/env bash
# bench/cnn_vs_torch.sh: ringtrain against PyTorch on the tutorial CNN
# (models/fashion_cnn.spec), side by side in one run, on the same HDF5 file.
#
#   bench/cnn_vs_torch.sh [--build DIR] [--data FILE] [--rounds R] [--steps S] [--keep FILE]
#
# (--keep FILE: also save every run's raw figures, "key value" lines;
#  --quick: skip the start-up and whole-training-set RSS runs.)
# For each configuration it alternates ringtrain and PyTorch R times (the one
# that goes first swaps every round), S training steps each, and prints the
# medians and their ratio:
#   1 process x 1 thread, batch 64      ringtrain train  vs  torch_ref.py
#   1 process x 2 threads, batch 128    ringtrain train --threads 2  vs  torch_ref.py --threads 2
#                                       (and against ringtrain's own 2 ranks x 1 thread)
#   2 ranks x 1 thread, 64 per rank     mpirun -np 2 ringtrain (default all-reduce: hier)
#                                       vs  torch_ref.py --ddp 2 (DDP over gloo)
# PyTorch runs its fastest honest loop (torch_ref.py --loop resident: the
# shard resident as float32, batches sliced from it).
# plus: OpenBLAS SGEMM measured in the same run and the FLOP/s ringtrain's
# images/s amount to; bench_step (the step alone, no loader, no comm); peak
# resident memory per rank (GNU time for ringtrain, getrusage for PyTorch);
# start-up: a 1-step ringtrain run from exec to exit, PyTorch's process start
# to the end of its first step, and `python3 -c 'import torch'`. The per-round
# runs use the first steps*batch samples on both sides (--train-limit); one
# more set of runs reports peak RSS with the whole training set.
# Thread pools: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS = 1 for both, set
# before torch is imported; every rank of both is bound to its own core (the
# 2-thread runs to cores 0 and 1, ringtrain with --threads 2, PyTorch with
# OMP/OpenBLAS at 2).
# Needs: a build (cmake --build build), /usr/bin/python3 with torch and h5py,
# the dataset (datasets/fashion-mnist.sh data). Not a test; ctest never runs it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build
data=$here/data/fashion-mnist-train.h5
rounds=3
steps=300
py=/usr/bin/python3
keep=
quick=
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h | --help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "$0: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
rt=$build/ringtrain
bs=$build/bench/bench_step
model=$here/models/fashion_cnn.spec
for f in "$rt" "$bs"; do
    [ -x "$f" ] || { echo "$0: $f not found; build first (cmake -S . -B build && cmake --build build)" >&2; exit 1; }
done
[ -r "$data" ] || { echo "$0: $data not found; run datasets/fashion-mnist.sh data (or pass --data)" >&2; exit 1; }
"$py" -c 'import torch, h5py' 2>/dev/null || { echo "$0: $py cannot import torch and h5py (apt-get install python3-torch python3-h5py)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "$0: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }

mpi_flags=(-np 2 --bind-to core -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS=1)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
results=$tmp/results   # lines: key value
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# ringtrain prints "... | N img/s (T s)" after the epoch; GNU time adds one
# "rss_kib=K cpu_s=U S" line per rank. Images per CPU-second: the CPU time of
# an S-step run minus that of a 1-step run (start-up, first step) covers S-1
# steps; per rank, summed over ranks.
rt_exec() { # ranks global_batch steps out [threads]
    local ranks=$1 batch=$2 n=$3 out=$4 threads=${5:-1}
    local args=(train --model "$model" --data "$data" --epochs 1 --batch-size "$batch"
        --train-limit $((n * batch)) --log-every 0 --threads "$threads")
    local tf="rss_kib=%M cpu_s=%U %S"
    if [ "$ranks" -eq 1 ]; then
        taskset -c "0-$((threads - 1))" /usr/bin/time -f "$tf" "$rt" "${args[@]}" >"$out" 2>&1
    else
        mpirun "${mpi_flags[@]}" /usr/bin/time -f "$tf" "$rt" "${args[@]}" >"$out" 2>&1
    fi || { cat "$out" >&2; echo "$0: ringtrain failed" >&2; exit 1; }
}

rt_run() { # tag ranks global_batch [threads]
    local tag=$1 ranks=$2 batch=$3 threads=${4:-1}
    rt_exec "$ranks" "$batch" "$steps" "$tmp/rt.out" "$threads"
    rt_exec "$ranks" "$batch" 1 "$tmp/rt1.out" "$threads"
    echo "$tag.rt.ips $(sed -n 's/.*| *\([0-9.]*\) img\/s (.*/\1/p' "$tmp/rt.out" | tail -1)" >>"$results"
    echo "$tag.rt.rss $(sed -n 's/^rss_kib=\([0-9]*\).*/\1/p' "$tmp/rt.out" | sort -n | tail -1)" >>"$results"
    local cs c1
    cs=$(awk '/^rss_kib=/{split($2, a, "="); s += a[2] + $3} END{print s}' "$tmp/rt.out")
    c1=$(awk '/^rss_kib=/{split($2, a, "="); s += a[2] + $3} END{print s}' "$tmp/rt1.out")
    # images per CPU-second of an average rank (= the sum of per-rank rates)
    echo "$tag.rt.cpu_ips $(echo "$ranks * ($steps - 1) * $batch / ($cs - $c1)" | bc -l)" >>"$results"
}

torch_run() { # tag ranks [threads batch]
    local tag=$1 ranks=$2 threads=${3:-1} batch=${4:-64} out=$tmp/torch.out
    local args=(--data "$data" --steps "$steps" --batch "$batch" --threads "$threads"
        --train-limit $((steps * batch * ranks)))
    if [ "$ranks" -eq 1 ]; then
        taskset -c "0-$((threads - 1))" "$py" "$here/bench/torch_ref.py" "${args[@]}" >"$out" 2>&1
    else
        "$py" "$here/bench/torch_ref.py" "${args[@]}" --ddp "$ranks" --bind >"$out" 2>&1
    fi || { cat "$out" >&2; echo "$0: torch_ref.py failed" >&2; exit 1; }
    echo "$tag.torch.ips $(grep -o '\bimages_per_s=[0-9.]*' "$out" | cut -d= -f2)" >>"$results"
    echo "$tag.torch.cpu_ips $(grep -o 'cpu_images_per_s=[0-9.]*' "$out" | cut -d= -f2)" >>"$results"
    echo "$tag.torch.rss $(grep -o 'peak_rss_kib=[0-9]*' "$out" | cut -d= -f2)" >>"$results"
    echo "$tag.torch.first $(grep -o 'first_step_s=[0-9.]*' "$out" | cut -d= -f2)" >>"$results"
}

# ringtrain's own "start-up: first step begins X s after process start" line
# (process creation to the first step, from /proc/self/stat).
first_step_of() { sed -nE 's/.*start-up: first step begins ([0-9.]+) s after process start.*/\1/p' "$1" | sort -n | tail -1; }

startup_run() {
    local t0 t1
    rm -rf "$tmp/su1" "$tmp/su2" # fresh directories: a second round is not refused
    t0=$(date +%s.%N)
    taskset -c 0 "$rt" train --model "$model" --data "$data" --epochs 1 --batch-size 64 \
        --train-limit 64 --log-every 0 >"$tmp/su.out" 2>&1
    t1=$(date +%s.%N)
    echo "startup.rt $(echo "$t1 - $t0" | bc)" >>"$results"
    echo "startup.rt_first $(first_step_of "$tmp/su.out")" >>"$results"
    # the whole training set in memory (the shard is read before step 1)
    cat "$data" >/dev/null # in the page cache, as for the other runs
    timeout 60 taskset -c 0 "$rt" train --model "$model" --data "$data" --epochs 1 \
        --batch-size 64 --log-every 0 --checkpoint-dir "$tmp/su1" >"$tmp/su.out" 2>&1 || true
    echo "startup.rt_full_first $(first_step_of "$tmp/su.out")" >>"$results"
    timeout 60 mpirun --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 -np 2 "$rt" train \
        --model "$model" --data "$data" --epochs 1 --batch-size 128 --log-every 0 \
        --checkpoint-dir "$tmp/su2" >"$tmp/su.out" 2>&1 || true
    echo "startup.rt2_full_first $(first_step_of "$tmp/su.out")" >>"$results"
    t0=$(date +%s.%N)
    taskset -c 0 "$py" -c 'import torch' >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "startup.import_torch $(echo "$t1 - $t0" | bc)" >>"$results"
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(getconf _NPROCESSORS_ONLN) cores, $(free -g | awk '/Mem:/{print $2}') GiB;" \
    "OpenBLAS $(dpkg-query -W -f '${Version}' libopenblas0-pthread 2>/dev/null || echo '?');" \
    "torch $("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "steps per run: $steps; rounds: $rounds (alternating; the first to run swaps each round)"

taskset -c 0 "$bs" --model "$model" --batch 64 --steps 50 --sgemm >"$tmp/bs.out"
sed -n 's/^\(sgemm_[a-z0-9_]*\)=/\1 /p; s/^\(gflops\|images_per_s\|mflop_per_image\|ms_per_step_median\|cpu_ms_per_step_median\)=/bench_step.\1 /p' \
    "$tmp/bs.out" >>"$results"

for r in $(seq "$rounds"); do
    echo "round $r/$rounds ..." >&2
    if [ $((r % 2)) -eq 1 ]; then
        rt_run 1x1 1 64; torch_run 1x1 1
        rt_run 1x2 1 128 2; torch_run 1x2 1 2 128
        rt_run 2x1 2 128; torch_run 2x1 2
    else
        torch_run 1x1 1; rt_run 1x1 1 64
        torch_run 1x2 1 2 128; rt_run 1x2 1 128 2
        torch_run 2x1 2; rt_run 2x1 2 128
    fi
    [ -n "$quick" ] || startup_run
done

[ -n "$keep" ] && cp "$results" "$keep"
# Peak RSS with the whole training set: ringtrain's loader holds the shard in
# memory up to its cap (default 256 MiB), else streams it; PyTorch holds it.
if [ -z "$quick" ]; then
    echo "whole training set: RSS runs ..." >&2
    args=(train --model "$model" --data "$data" --epochs 1 --batch-size 64 --log-every 0)
    taskset -c 0 /usr/bin/time -f "rss_kib=%M" "$rt" "${args[@]}" >"$tmp/full.out" 2>&1
    echo "full.rt.rss $(sed -n 's/^rss_kib=//p' "$tmp/full.out")" >>"$results"
    taskset -c 0 /usr/bin/time -f "rss_kib=%M" "$rt" "${args[@]}" --loader-mem 16 >"$tmp/full.out" 2>&1
    echo "full.rt16.rss $(sed -n 's/^rss_kib=//p' "$tmp/full.out")" >>"$results"
    taskset -c 0 "$py" "$here/bench/torch_ref.py" --data "$data" --steps 50 --batch 64 --threads 1 >"$tmp/full.out" 2>&1
    echo "full.torch.rss $(grep -o 'peak_rss_kib=[0-9]*' "$tmp/full.out" | cut -d= -f2)" >>"$results"
fi

[ -n "$keep" ] && cp "$results" "$keep"
"$py" - "$results" <<'EOF'
import collections, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 2:  # a run whose figure could not be read leaves "key" alone
        vals.setdefault(parts[0], []).append(float(parts[1]))
med = collections.defaultdict(lambda: float("nan"),
                              {k: statistics.median(v) for k, v in vals.items()})
def runs(k):
    return " ".join("%.0f" % v for v in vals.get(k, []))
mflop = med["bench_step.mflop_per_image"]
peak = med["sgemm_square2048_gflops"]
conv = med["sgemm_conv2_fwd_gflops"]
print()
print("SGEMM, 1 thread, this run: %.1f GFLOP/s at 2048^3; conv2 shapes fwd %.1f, dW %.1f, dX %.1f"
      % (peak, conv, med["sgemm_conv2_dw_gflops"], med["sgemm_conv2_dx_gflops"]))
print("model: %.2f MFLOP per training image (forward + backward, no input gradient for conv1)" % mflop)
print()
print("| configuration | ringtrain img/s | PyTorch img/s | ratio | GFLOP/s per core, ringtrain / PyTorch (% of SGEMM 2048^3) | per CPU-second: ringtrain / PyTorch, ratio |")
print("| --- | --- | --- | --- | --- | --- |")
for tag, name in (("1x1", "1 process x 1 thread, batch 64"),
                  ("1x2", "1 process x 2 threads, batch 128"),
                  ("2x1", "2 ranks x 1 thread, 64 per rank (ringtrain hier vs DDP gloo)")):
    a, b = med[tag + ".rt.ips"], med[tag + ".torch.ips"]
    cores = 1 if tag == "1x1" else 2
    gfa, gfb = a * mflop / 1e3 / cores, b * mflop / 1e3 / cores
    ca, cb = med[tag + ".rt.cpu_ips"], med[tag + ".torch.cpu_ips"]
    print("| %s | %.0f (%s) | %.0f (%s) | **%.2fx** | %.1f / %.1f (%.0f%% / %.0f%%) | %.0f / %.0f, %.2fx |"
          % (name, a, runs(tag + ".rt.ips"), b, runs(tag + ".torch.ips"), a / b, gfa, gfb,
             100 * gfa / peak, 100 * gfb / peak, ca, cb, ca / cb))
cpu_ips = 64 / (med["bench_step.cpu_ms_per_step_median"] / 1e3)
print("| step alone (bench_step, no loader/comm), batch 64 | %.0f | | | %.1f (%.0f%%) | %.0f |"
      % (med["bench_step.images_per_s"], med["bench_step.gflops"],
         100 * med["bench_step.gflops"] / peak, cpu_ips))
print()
print("ringtrain 1 process x 2 threads / its own 2 ranks x 1 thread: **%.2fx** (rounds: %s)"
      % (med["1x2.rt.ips"] / med["2x1.rt.ips"],
         " ".join("%.2f" % (p / q) for p, q in zip(vals.get("1x2.rt.ips", []),
                                                    vals.get("2x1.rt.ips", [])))))
print()
print("| peak RSS per rank | ringtrain | PyTorch | ratio |")
print("| --- | --- | --- | --- |")
for tag in ("1x1", "2x1"):
    a, b = med[tag + ".rt.rss"] / 1024, med[tag + ".torch.rss"] / 1024
    print("| %s | %.1f MiB | %.1f MiB | %.2f |" % (tag, a, b, a / b))
if "full.rt.rss" in vals:
    a, b, c = med["full.rt.rss"] / 1024, med["full.rt16.rss"] / 1024, med["full.torch.rss"] / 1024
    print("| 1x1, whole training set (60,000 samples) | %.1f MiB (loader in memory); %.1f MiB "
          "(--loader-mem 16: streaming) | %.1f MiB | %.2f; %.2f |" % (a, b, c, a / c, b / c))
print()
print("| start-up | seconds (median) |")
print("| --- | --- |")
if "startup.rt" in vals:
    print("| ringtrain: exec to exit of a 1-step run (`--train-limit 64`) | %.3f |"
          % med["startup.rt"])
    print("| ringtrain: process start to first step, same run | %.3f |" % med["startup.rt_first"])
    print("| ringtrain: process start to first step, whole training set (60,000) in memory, 1 rank | %.3f |"
          % med["startup.rt_full_first"])
    print("| ringtrain: process start to first step, whole training set, 2 ranks under mpirun (slower rank) | %.3f |"
          % med["startup.rt2_full_first"])
print("| PyTorch (torch_ref.py, 1x1): process start to end of first step | %.3f |"
      % med["1x1.torch.first"])
if "startup.import_torch" in vals:
    print("| python3 -c 'import torch' | %.3f |" % med["startup.import_torch"])
EOF
