#!/usr/bin/env bash
# bench/node16.sh: the CPU-speed table of issue 16 re-measured on one node
# (docs/PERFORMANCE.md, "A 16-core node"), in one script of about 4 minutes:
# builds ringtrain, makes a synthetic Fashion-MNIST-shaped training set (no
# network, no dataset package needed), and runs, each 3 times (median):
#   - bench step, tutorial CNN, batch 64, 1 thread: OpenBLAS's own kernel
#     (--blas-coretype openblas) and the one ringtrain corrects it to;
#   - 16 ranks x 1 thread, global batch 1024 and 256, both kernels;
#   - 1 rank x 16 threads, batch 256, both kernels;
#   - PyTorch (bench/torch_ref.py, resident float32 loop), 16 threads, batch
#     256 and 1024;
#   - bench scaling, 16 ranks (when time is left).
# Prints a table to stdout and, when $OUT is set, to $OUT/node16.txt.
#
#   bench/node16.sh                    on the node (16 cores expected)
#   NODE16_QUICK=1 bench/node16.sh     tiny settings, any core count (a check of the script)
# Environment: NODE16_BUILD=DIR (use this build instead of building one),
# NODE16_RANKS (default min(16, cores)), NODE16_BUDGET_S (200: no new
# repetition starts after it), PYTHON (python3).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
t_start=$(date +%s)
quick=${NODE16_QUICK:-0}
budget=${NODE16_BUDGET_S:-200}
py=${PYTHON:-python3}
cores=$(nproc)
ranks=${NODE16_RANKS:-$((cores < 16 ? cores : 16))}
reps=3
if [ "$quick" = 1 ]; then
  n_train=4096 s_step=3 s1024=4 s256=4 s_torch=4
else
  n_train=60000 s_step=10 s1024=30 s256=60 s_torch=40
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/node16.XXXX")
trap 'rm -rf "$work"' EXIT
log() { echo "node16: $*" >&2; }
elapsed() { echo $(($(date +%s) - t_start)); }

# ---- build (only the two programs needed) ----
build=${NODE16_BUILD:-$work/build}
if [ ! -x "$build/ringtrain" ] || [ ! -x "$build/rt_idx2h5" ]; then
  log "building in $build"
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRINGTRAIN_CUDA=OFF \
    -DRINGTRAIN_WERROR=OFF >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
  cmake --build "$build" -j "$cores" --target ringtrain rt_idx2h5 >"$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log" >&2; exit 1; }
fi
rt=$build/ringtrain
model=$here/models/fashion_cnn.spec

# ---- data: random 28x28 uint8 images and labels in Fashion-MNIST's idx format ----
log "writing $n_train synthetic samples"
"$py" - "$work" "$n_train" <<'PYEOF'
import gzip, os, random, struct, sys
d, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(16)
with gzip.open(os.path.join(d, "images.gz"), "wb", compresslevel=1) as f:
    f.write(struct.pack(">IIII", 0x803, n, 28, 28))
    f.write(rng.randbytes(n * 784))
with gzip.open(os.path.join(d, "labels.gz"), "wb", compresslevel=1) as f:
    f.write(struct.pack(">II", 0x801, n))
    f.write(bytes(rng.randrange(10) for _ in range(n)))
PYEOF
"$build/rt_idx2h5" --images "$work/images.gz" --labels "$work/labels.gz" --out "$work/train.h5" >/dev/null
data=$work/train.h5

# one rank per CPU nproc counts: hardware threads when the cores have several
tpc=$(lscpu | awk -F: '/^Thread\(s\) per core/ { gsub(/ /, "", $2); print $2 }')
bind=(--bind-to core)
[ "${tpc:-1}" -le 1 ] || bind=(--use-hwthread-cpus --bind-to hwthread)
mpi=(mpirun -np "$ranks" "${bind[@]}" -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS=1)
[ "$(id -u)" -ne 0 ] || mpi+=(--allow-run-as-root)
[ "$ranks" -le "$cores" ] || mpi+=(--oversubscribe)
res=$work/results # lines: key value
export OPENBLAS_NUM_THREADS=1

kernel_of() { sed -n 's/^cpu: OpenBLAS kernel \([^ ]*\) .*/\1/p' "$1" | head -1; }

# step KEY CORETYPE: bench step ms/step (the 1-rank step is the "overlap off" row)
step_run() {
  local key=$1 ct=$2 out=$work/out
  taskset -c 0 "$rt" bench step --model "$model" --batch-size 64 --threads 1 --steps "$s_step" \
    --warmup 2 ${ct:+--blas-coretype "$ct"} >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
  echo "$key $(awk '/^overlap off/ { print $NF }' "$out")" >>"$res"
  echo "$key.kernel $(kernel_of "$out")" >>"$res"
}

# train KEY NP THREADS BATCH STEPS CORETYPE: images/s of the trainer's epoch line
train_run() {
  local key=$1 np=$2 th=$3 batch=$4 steps=$5 ct=$6 out=$work/out
  local args=(train --model "$model" --data "$data" --epochs 1 --batch-size "$batch"
    --train-limit $((batch * steps)) --log-every 0 --progress none --threads "$th"
    ${ct:+--blas-coretype "$ct"})
  if [ "$np" -eq 1 ]; then
    taskset -c "0-$((th - 1))" "$rt" "${args[@]}" >"$out" 2>&1
  else
    "${mpi[@]}" "$rt" "${args[@]}" >"$out" 2>&1
  fi || { cat "$out" >&2; exit 1; }
  echo "$key $(sed -n 's/.*| *\([0-9.]*\) img\/s (.*/\1/p' "$out" | tail -1)" >>"$res"
  echo "$key.kernel $(kernel_of "$out")" >>"$res"
}

torch_run() { # KEY BATCH STEPS
  local key=$1 batch=$2 s_torch=$3 out=$work/out
  taskset -c "0-$((ranks - 1))" "$py" "$here/bench/torch_ref.py" --idx "$work/images.gz,$work/labels.gz" \
    --steps "$s_torch" --batch "$batch" --threads "$ranks" --train-limit $((batch * (s_torch + 5))) \
    >"$out" 2>&1 || { cat "$out" >&2; echo "node16: torch_ref.py failed" >&2; return 0; }
  echo "$key $(grep -o '\bimages_per_s=[0-9.]*' "$out" | cut -d= -f2)" >>"$res"
}

have_torch=1
"$py" -c 'import torch, numpy' 2>/dev/null || { have_torch=0; log "no torch in $py: the PyTorch column stays empty"; }
done_reps=0
for r in $(seq "$reps"); do
  if [ "$r" -gt 1 ] && [ "$(elapsed)" -gt "$budget" ]; then
    log "time budget ${budget} s reached after $done_reps repetition(s)"
    break
  fi
  log "repetition $r/$reps ($(elapsed) s)"
  step_run step.own openblas
  step_run step.fix ""
  train_run r1024.own "$ranks" 1 1024 "$s1024" openblas
  train_run r1024.fix "$ranks" 1 1024 "$s1024" ""
  train_run r256.own "$ranks" 1 256 "$s256" openblas
  train_run r256.fix "$ranks" 1 256 "$s256" ""
  train_run t256.own 1 "$ranks" 256 "$s256" openblas
  train_run t256.fix 1 "$ranks" 256 "$s256" ""
  if [ "$have_torch" = 1 ]; then
    torch_run torch256 256 "$s_torch"
    torch_run torch1024 1024 $((s_torch / 3 + 1))
  fi
  done_reps=$r
done
if [ "$ranks" -ge 2 ] && [ "$(elapsed)" -lt "$budget" ]; then
  log "bench scaling, $ranks ranks ($(elapsed) s)"
  "${mpi[@]}" "$rt" bench scaling --model "$model" --batch-per-rank 64 --rounds 3 \
    --steps "$s_step" --threads 1 >"$work/scaling.out" 2>&1 || cat "$work/scaling.out" >&2
  echo "scaling $(sed -n "s/^$ranks-rank throughput = \([0-9.]*\) x the sum.*/\1/p" "$work/scaling.out")" >>"$res"
fi

table=$work/node16.txt
{
  echo "# bench/node16.sh, $(date -u '+%Y-%m-%d %H:%M UTC')$([ "$quick" = 1 ] && echo ', NODE16_QUICK=1 (tiny settings)')"
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $cores cores, $(free -g | awk '/Mem:/{print $2}') GiB;" \
    "flags: $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "software: $("$rt" --version), $(mpirun --version 2>/dev/null | head -1);" \
    "torch $("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)"
  echo "runs: $done_reps repetition(s), medians; $ranks ranks; synthetic data, $n_train samples; $(elapsed) s"
  "$py" - "$res" "$ranks" <<'PYEOF'
import statistics, sys
vals, kern = {}, {}
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) != 2:
        continue
    if p[0].endswith(".kernel"):
        kern[p[0][:-7]] = p[1]
    else:
        vals.setdefault(p[0], []).append(float(p[1]))
R = int(sys.argv[2])
def m(k):
    return statistics.median(vals[k]) if vals.get(k) else float("nan")
def runs(k):
    return " ".join("%.0f" % v for v in vals.get(k, [])) or "-"
def k(key):
    return kern.get(key, "?")
print()
print("| run | ringtrain | reference |")
print("| --- | --- | --- |")
print("| `bench step`, batch 64, 1 thread, OpenBLAS's own choice (%s) | %.1f ms/step | |" % (k("step.own"), m("step.own")))
print("| same, corrected by ringtrain (%s) | %.1f ms/step | speed-up **%.2fx** |" % (k("step.fix"), m("step.fix"), m("step.own") / m("step.fix")))
for b in (1024, 256):
    print("| %d ranks x 1 thread, global batch %d, OpenBLAS's own choice (%s) | %.0f img/s (%s) | PyTorch, %d threads, batch %d: %.0f img/s (%s) |"
          % (R, b, k("r%d.own" % b), m("r%d.own" % b), runs("r%d.own" % b), R, b, m("torch%d" % b), runs("torch%d" % b)))
    print("| same, corrected (%s) | %.0f img/s (%s), %.2fx PyTorch | |"
          % (k("r%d.fix" % b), m("r%d.fix" % b), runs("r%d.fix" % b), m("r%d.fix" % b) / m("torch%d" % b)))
print("| 1 rank x %d threads, batch 256, OpenBLAS's own choice (%s) | %.0f img/s (%s) | PyTorch %.0f img/s |"
      % (R, k("t256.own"), m("t256.own"), runs("t256.own"), m("torch256")))
print("| same, corrected (%s) | %.0f img/s (%s), %.2fx PyTorch, %.2fx of %d ranks x 1 | |"
      % (k("t256.fix"), m("t256.fix"), runs("t256.fix"), m("t256.fix") / m("torch256"),
         m("t256.fix") / m("r256.fix"), R))
if vals.get("scaling"):
    print("| `bench scaling`, %d ranks x 1 thread, 64 per rank | %.2f x the sum of the 1-rank throughputs | |" % (R, m("scaling")))
PYEOF
} >"$table"
cat "$table"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$table" "$OUT/node16.txt"
fi
