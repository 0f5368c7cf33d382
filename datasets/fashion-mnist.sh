#!/usr/bin/env bash
# datasets/fashion-mnist.sh: converts Debian's Fashion-MNIST (package
# dataset-fashion-mnist) into the ringtrain HDF5 schema (docs/DATA_FORMAT.md).
#
#   datasets/fashion-mnist.sh OUTDIR [CONVERTER]
#
# Writes OUTDIR/fashion-mnist-train.h5 (60000 samples) and
# OUTDIR/fashion-mnist-test.h5 (10000). The converter is CONVERTER, else
# $RT_BIN/rt_idx2h5 if RT_BIN is a directory (or $RT_BIN itself if it is the
# program), else build/rt_idx2h5. The source directory can be changed with
# FASHION_MNIST_DIR (default /usr/share/datasets/fashion-mnist).
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 OUTDIR [path/to/rt_idx2h5]" >&2
    exit 2
fi
out=$1
conv=${2:-}
if [ -z "$conv" ]; then
    if [ -n "${RT_BIN:-}" ] && [ -d "$RT_BIN" ]; then
        conv=$RT_BIN/rt_idx2h5
    else
        conv=${RT_BIN:-build/rt_idx2h5}
    fi
fi
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}

if [ ! -x "$conv" ]; then
    echo "$0: converter '$conv' not found or not executable; build it (cmake --build build) or pass its path" >&2
    exit 1
fi
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    if [ ! -r "$src/$f" ]; then
        echo "$0: $src/$f not found; install it with 'apt-get install dataset-fashion-mnist' or set FASHION_MNIST_DIR" >&2
        exit 1
    fi
done
mkdir -p "$out"
"$conv" --fashion --images "$src/train-images-idx3-ubyte.gz" --labels "$src/train-labels-idx1-ubyte.gz" \
    --out "$out/fashion-mnist-train.h5"
"$conv" --fashion --images "$src/t10k-images-idx3-ubyte.gz" --labels "$src/t10k-labels-idx1-ubyte.gz" \
    --out "$out/fashion-mnist-test.h5"
echo "wrote $out/fashion-mnist-train.h5 and $out/fashion-mnist-test.h5"
