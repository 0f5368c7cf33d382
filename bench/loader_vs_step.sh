#!/usr/bin/env bash
# bench/loader_vs_step.sh: does the loader keep up with training? Writes four
# copies of the training set (uint8 / float32, contiguous / chunked + gzip)
# with h5py, runs bench_loader on each (in memory, and streaming under a
# 16 MiB cap), and sets samples/s beside what one training step consumes
# (bench_step images/s, batch 64, 1 thread).
#
#   bench/loader_vs_step.sh [--build DIR] [--data FILE] [--tmp DIR]
# Not a test; ctest never runs it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build
data=$here/data/fashion-mnist-train.h5
work=
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --tmp) work=$2; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "$0: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
for f in "$build/bench/bench_loader" "$build/bench/bench_step"; do
    [ -x "$f" ] || { echo "$0: $f not found; build first" >&2; exit 1; }
done
[ -r "$data" ] || { echo "$0: $data not found" >&2; exit 1; }
if [ -z "$work" ]; then work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
mkdir -p "$work"
export OPENBLAS_NUM_THREADS=1

/usr/bin/python3 - "$data" "$work" <<'PY'
import sys, h5py, numpy as np
src, out = sys.argv[1], sys.argv[2]
with h5py.File(src, "r") as f:
    x, y = f["images"][:], f["labels"][:]
for name, arr in (("u8", x), ("f32", (x.astype(np.float32) / 255.0))):
    for layout, kw in (("contig", {}), ("gzip", dict(chunks=(1024,) + arr.shape[1:], compression="gzip", compression_opts=4))):
        with h5py.File(f"{out}/{name}-{layout}.h5", "w") as g:
            g.create_dataset("images", data=arr, **kw)
            g.create_dataset("labels", data=y)
PY

step=$(taskset -c 0 "$build/bench/bench_step" --model "$here/models/fashion_cnn.spec" --steps 40 | sed -n 's/^images_per_s=//p')
echo "training consumes (bench_step, batch 64, 1 thread): $step images/s"
echo
echo "| file | loader in memory: samples/s (x training) | streaming, --loader-mem 16: samples/s (x training) | file size |"
echo "| --- | --- | --- | --- |"
for v in u8-contig u8-gzip f32-contig f32-gzip; do
    f=$work/$v.h5
    a=$(taskset -c 1 "$build/bench/bench_loader" --data "$f" --epochs 2 | sed -n 's/^samples_per_s=//p')
    b=$(taskset -c 1 "$build/bench/bench_loader" --data "$f" --epochs 2 --loader-mem 16 | sed -n 's/^samples_per_s=//p')
    printf "| %s | %s (%.1fx) | %s (%.1fx) | %s |\n" "$v" "$a" "$(echo "$a / $step" | bc -l)" "$b" \
        "$(echo "$b / $step" | bc -l)" "$(du -h "$f" | cut -f1)"
done
