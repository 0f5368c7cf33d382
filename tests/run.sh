#!/usr/bin/env bash
# Runs every test: installs what is missing, builds with warnings as errors,
# and runs the whole suite with ctest (unit, MPI and end-to-end tests).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash launch/install-deps.sh
build=${RINGTRAIN_TEST_BUILD:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DRINGTRAIN_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
export OMPI_MCA_rmaps_base_oversubscribe=1
ctest --test-dir "$build" --output-on-failure -j"${RINGTRAIN_TEST_JOBS:-1}" "$@"
