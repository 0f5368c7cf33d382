#!/usr/bin/env bash
# datasets/fashion-mnist.sh: converts Debian's Fashion-MNIST (package
# dataset-fashion-mnist) into the ringtrain HDF5 schema (docs/DATA_FORMAT.md).
#
#   datasets/fashion-mnist.sh OUTDIR [CONVERTER]
#
# Writes OUTDIR/fashion-mnist-train.h5 (60000 samples) and
# OUTDIR/fashion-mnist-test.h5 (10000). The converter is CONVERTER, else
# $RT_BUILD/rt_idx2h5 (RT_BUILD: the build directory), else rt_idx2h5 next to
# the trainer $RT_BIN, else build/rt_idx2h5 (datasets/lib.sh). The source
# directory can be changed with FASHION_MNIST_DIR (default
# /usr/share/datasets/fashion-mnist).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 OUTDIR [path/to/rt_idx2h5]" >&2
    exit 2
fi
out=$1
rt_converter rt_idx2h5 "${2:-}"
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}

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
