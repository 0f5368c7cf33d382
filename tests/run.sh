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

# Sanitizers and fuzzing: the unit tests again, built by clang with
# AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on), and the
# libFuzzer targets for a bounded time each (docs/HARDENING.md). Skipped
# when a filter was given to ctest above, or with RINGTRAIN_HARDENING=0.
if [ $# -eq 0 ] && [ "${RINGTRAIN_HARDENING:-1}" = 1 ]; then
  san=${build}-asan
  # The CUDA engine is compiled (and checked) by the main build above; nvcc's
  # host compiler takes neither clang's sanitizer nor its fuzzer flags.
  CC=clang cmake -S . -B "$san" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGTRAIN_WERROR=ON \
    -DRINGTRAIN_SANITIZE=ON -DRINGTRAIN_FUZZ=ON -DRINGTRAIN_CUDA=OFF \
    -DRINGTRAIN_FUZZ_SECONDS="${RINGTRAIN_FUZZ_SECONDS:-20}" >/dev/null
  cmake --build "$san" -j"$(nproc)"
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$san" --output-on-failure -R '^(unit|fuzz)\.'
  # The communication tests at 1-5 ranks under the same sanitizers (found the
  # shared window's misaligned hier counters); leak detection off, for Open
  # MPI's own allocations at exit.
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$san" --output-on-failure -R '^mpi\.(comm|dist)\.'
  # valgrind cannot decode -march=native's AVX-512: a portable build.
  vg=${build}-valgrind
  cmake -S . -B "$vg" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGTRAIN_WERROR=ON \
    -DRINGTRAIN_NATIVE=OFF -DRINGTRAIN_CUDA=OFF >/dev/null
  cmake --build "$vg" -j"$(nproc)" --target ringtrain rt_mkh5
  bash tests/valgrind/run.sh "$vg"
fi
