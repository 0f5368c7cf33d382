#!/usr/bin/env bash
# From a fresh clone: install the dependencies, build, convert Fashion-MNIST
# to HDF5 and train the tutorial CNN on 2 ranks, printing progress and the
# final test accuracy.  Extra arguments go to `ringtrain train`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash launch/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
[ -f data/fashion-mnist-train.h5 ] && [ -f data/fashion-mnist-test.h5 ] ||
  RT_BUILD=build bash datasets/fashion-mnist.sh data
bash launch/mpirun-local.sh 2 train \
  --model models/fashion_cnn.spec \
  --data data/fashion-mnist-train.h5 --test-data data/fashion-mnist-test.h5 \
  --epochs 5 --batch-size 64 --optimizer adam --lr 0.001 --seed 1 \
  --checkpoint-dir runs/fashion_cnn "$@"
