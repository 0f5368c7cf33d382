#!/usr/bin/env bash
# A short 2-rank training run under valgrind memcheck (its second conv, 8 -> 8
# channels, runs by Winograd; the first by im2col): no invalid reads or
# writes, no use of uninitialised values and no definite leaks outside the
# suppressions for Open MPI / PMIx / HDF5 internals (ringtrain.supp).
#   tests/valgrind/run.sh BUILD_DIR
# BUILD_DIR: a build without -march=native (valgrind does not decode
# AVX-512), e.g. cmake -DRINGTRAIN_NATIVE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo,
# holding ringtrain and tests/rt_mkh5. Three runs: training with a test set
# and checkpoints, a resume from them, and a failing resume (a truncated
# checkpoint) so that an error path is checked for leaks and open handles.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 1; }
work=$(mktemp -d "$build/valgrind.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'input 1 6 6\nconv 8 3 same relu\nconv 8 3 same tanh\nmaxpool 2\nflatten\ndense 3\nloss softmax_cross_entropy\n' >tiny.spec
"$build/tests/rt_mkh5" create train.h5 images:u8:64x1x6x6:mod=11 labels:u8:64
"$build/tests/rt_mkh5" create test.h5 images:f32:20x1x6x6:mod=5 labels:u8:20

vg() { # vg TAG WANT_RC ARGS...
    local tag=$1 want=$2
    shift 2
    set +e
    timeout -k 10 600 mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp \
        -x OPENBLAS_NUM_THREADS=1 -x OPENBLAS_CORETYPE=Haswell -np 2 \
        valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
        --show-leak-kinds=definite --errors-for-leak-kinds=definite --keep-debuginfo=yes \
        --num-callers=40 --suppressions="$here/ringtrain.supp" --log-file="$tag.%q{OMPI_COMM_WORLD_RANK}.vg" \
        "$build/ringtrain" train --model tiny.spec --data train.h5 --batch-size 8 --log-every 0 \
        --progress none "$@" >"$tag.out" 2>&1
    local rc=$?
    set -e
    local bad=0
    for log in "$tag".*.vg; do
        grep -q "ERROR SUMMARY: 0 errors" "$log" || { cat "$log"; bad=1; }
    done
    [ "$bad" -eq 0 ] && [ "$rc" -eq "$want" ] || {
        cat "$tag.out"
        echo "FAIL: valgrind run '$tag' exited $rc (expected $want)"
        exit 1
    }
    echo "ok: $tag: $(grep -h 'ERROR SUMMARY' "$tag".*.vg | sed 's/==[0-9]*== //' | sort | uniq -c | tr -s ' ')"
}
vg train 0 --epochs 1 --test-data test.h5 --checkpoint-dir ck --checkpoint-every 3
vg resume 0 --epochs 2 --checkpoint-dir ck --resume auto
cp "ck/$(cat ck/latest)" cut.h5
truncate -s 1000 cut.h5
vg bad_resume 1 --epochs 3 --resume cut.h5
echo "PASS: valgrind memcheck clean on 2 ranks (train, resume, failed resume)"
