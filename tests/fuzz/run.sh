#!/usr/bin/env bash
# Runs libFuzzer targets for a bounded time on their seed corpus.
#   tests/fuzz/run.sh BIN_DIR [SECONDS] [TARGET...]   (default: 20 s, all four)
# BIN_DIR holds fuzz_<target> (a build with -DRINGTRAIN_FUZZ=ON, clang). New
# inputs go to a scratch corpus, not into the repository; a crash leaves its
# input as $BIN_DIR/fuzz-artifacts/<target>/crash-* and fails the run (add
# it to tests/fuzz/corpus/<target>/ once fixed). Prints executions and
# corpus size per target.
set -euo pipefail
bin_dir=$1
seconds=${2:-20}
shift $(($# >= 2 ? 2 : $#))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spec args dataset checkpoint)
here=$(cd "$(dirname "$0")" && pwd)
status=0
for t in "${targets[@]}"; do
    exe="$bin_dir/fuzz_$t"
    [ -x "$exe" ] || { echo "fuzz: $exe not built (-DRINGTRAIN_FUZZ=ON, clang)" >&2; exit 1; }
    work=$(mktemp -d "${TMPDIR:-/tmp}/rt-fuzz-$t.XXXX")
    art="$bin_dir/fuzz-artifacts/$t"
    mkdir -p "$art"
    set +e
    ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$art/" "$work" "$here/corpus/$t" >"$work.log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$' || echo 0)
    seeds=$(find "$here/corpus/$t" -type f | wc -l)
    found=$(find "$work" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        tail -n 60 "$work.log"
        echo "FAIL: fuzz_$t exited $rc after $execs executions; input saved in $art/"
        status=1
    else
        echo "ok: fuzz_$t ${seconds}s: $execs executions, $seeds seed inputs, $found new corpus inputs"
    fi
    rm -rf "$work" "$work.log"
done
exit $status
