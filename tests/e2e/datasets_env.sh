#!/usr/bin/env bash
# datasets/*.sh find their converter by one convention (datasets/lib.sh):
# RT_BIN is the trainer binary everywhere (as launch/ uses it), RT_BUILD the
# build directory. With RT_BIN exported for the trainer, as a cluster user
# does, both scripts must still find their converter.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
work=$(mktemp -d "$BUILD/datasets.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export RT_BIN="$BUILD/ringtrain"

# A tiny stand-in for Debian's fortunes: four files of '%'-separated entries.
mkdir fortunes
for f in computers definitions songs-poems science; do
  for i in $(seq 40); do printf 'A %s fortune, number %d, about this and that.\n%%\n' "$f" "$i"; done >"fortunes/$f"
done
FORTUNES_DIR=$work/fortunes bash "$SRC/datasets/fortunes.sh" text >fortunes.log 2>&1 ||
  fail "fortunes.sh with RT_BIN=the trainer: $(cat fortunes.log)"
[ -s text/fortunes-train.h5 ] && [ -s text/fortune-class-train.h5 ] || fail "fortunes.sh wrote $(ls text)"
echo "ok: fortunes.sh finds rt_text2h5 next to \$RT_BIN"
unset RT_BIN
RT_BUILD=$BUILD FORTUNES_DIR=$work/fortunes bash "$SRC/datasets/fortunes.sh" text2 >f2.log 2>&1 ||
  fail "fortunes.sh with RT_BUILD: $(cat f2.log)"
echo "ok: fortunes.sh takes RT_BUILD"
set +e
RT_BIN=$BUILD bash "$SRC/datasets/fortunes.sh" text3 >f3.log 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "RT_BIN names the trainer binary (e.g. build/ringtrain); set RT_BUILD=" f3.log ||
  fail "RT_BIN set to a directory: exit $rc, $(cat f3.log)"
echo "ok: RT_BIN=a directory says to set RT_BUILD"

if [ -r /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  RT_BIN="$BUILD/ringtrain" bash "$SRC/datasets/fashion-mnist.sh" fm >fm.log 2>&1 ||
    fail "fashion-mnist.sh with RT_BIN=the trainer: $(cat fm.log)"
  h5dump -H fm/fashion-mnist-test.h5 | grep -q "( 10000, 1, 28, 28 )" || fail "fashion-mnist-test.h5"
  echo "ok: fashion-mnist.sh finds rt_idx2h5 next to \$RT_BIN"
  RT_BUILD=$BUILD bash "$SRC/datasets/fashion-mnist.sh" fm2 >fm2.log 2>&1 || fail "$(cat fm2.log)"
  echo "ok: fashion-mnist.sh takes RT_BUILD"
else
  echo "note: dataset-fashion-mnist not installed; fashion-mnist.sh not run"
fi
echo "PASS: datasets_env"
