#!/usr/bin/env bash
# --progress auto under mpirun (docs/WORKFLOW.md): Open MPI gives every rank
# a pseudo-terminal, so rank 0's own stdout says nothing. `mpirun ... >
# log.txt` must get plain per-step lines (no carriage return, no escape
# code), and the same mpirun on a terminal (made with script(1)) the bar.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
work=$(mktemp -d "$BUILD/progress.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
"$BUILD/tests/rt_mkh5" create d.h5 images:f32:256x16:mod=5 labels:u8:256:mod=3
printf 'input 16\ndense 3\nloss softmax_cross_entropy\n' >tiny.spec
# 256 samples / global batch 32 = 8 steps an epoch, a line every 2 steps
args=(train --model tiny.spec --data d.h5 --epochs 2 --batch-size 32 --log-every 2)

TERM=xterm rt_mpirun 2 "${args[@]}" >log.txt 2>err.txt || fail "$(cat err.txt)"
! grep -q $'\r' log.txt || fail "carriage returns in the log: $(od -c log.txt | head -5)"
! grep -q $'\033' log.txt || fail "escape codes in the log"
steps=$(grep -c 'epoch [12]/2 step [0-9]*/8 ' log.txt || true)
[ "$steps" -eq 8 ] || fail "expected 8 per-step lines, got $steps: $(cat log.txt)"
echo "ok: mpirun > log.txt: $steps plain step lines, no carriage return or escape code"

TERM=xterm rt_mpirun 2 "${args[@]}" 2>err.txt | cat >piped.txt || fail "$(cat err.txt)"
! grep -q $'\r' piped.txt && [ "$(grep -c 'epoch [12]/2 step' piped.txt)" -eq 8 ] ||
  fail "mpirun | cat: not plain: $(od -c piped.txt | head -5)"
echo "ok: mpirun | cat: plain lines"

if command -v script >/dev/null; then
  # script(1) gives mpirun a terminal: then auto draws the bar.
  printf -v cmd '%q ' timeout -k 10 120 mpirun --oversubscribe --allow-run-as-root \
    --mca btl self,vader,tcp -x OPENBLAS_NUM_THREADS=1 -np 2 "$BIN" "${args[@]}"
  TERM=xterm script -qec "$cmd" /dev/null >tty.txt 2>&1 || fail "under script: $(cat tty.txt)"
  grep -q $'\repoch 1/2 \[' tty.txt || fail "no bar on a terminal: $(od -c tty.txt | head -8)"
  echo "ok: mpirun on a terminal draws the bar"
  printf -v cmd '%q ' timeout -k 10 120 "$BIN" "${args[@]}"
  TERM=xterm script -qec "$cmd" /dev/null >single.txt 2>&1 || fail "one rank under script: $(cat single.txt)"
  grep -q $'\repoch 1/2 \[' single.txt || fail "no bar without mpirun: $(od -c single.txt | head -8)"
  echo "ok: one rank without mpirun on a terminal draws the bar"
fi
echo "PASS: progress_mpirun"
