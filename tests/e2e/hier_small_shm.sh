#!/usr/bin/env bash
# hier's zero-copy path keeps the gradients in an MPI-3 shared window, which
# Open MPI backs with a file in /dev/shm (containers often give it 64 MiB).
# Open MPI does not fail a window that does not fit: it warns, then the job
# hangs or dies of SIGBUS. In a private mount namespace with a 12 MiB /dev/shm:
#   - 2 ranks train the CNN anyway: ONE warning line naming /dev/shm, the
#     gradients summed through hier's staging slots, and the parameters
#     bitwise those of the zero-copy run with the normal /dev/shm (both paths
#     sum in local rank order);
#   - `bench allreduce` falls back to private memory with one warning;
#   - with a 22 MiB /dev/shm the gradients fit but the sharded optimizer
#     step's parameters do not: ONE warning line, the whole step on every
#     rank, and the same parameters again.
# Needs root for the mount namespace; exit 77 = skipped.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
args=(train --model "$SRC/models/fashion_cnn.spec" --data "$TRAIN_H5" --train-limit 640 --epochs 1
  --batch-size 64 --seed 3 --log-every 0 --progress none)

if [ "${3:-}" = inner ]; then
  work=$4
  mount -t tmpfs -o size=12m tmpfs /dev/shm || fail "mounting a 12 MiB /dev/shm"
  rt_mpirun 2 "${args[@]}" --checkpoint-dir "$work/small" >"$work/small.log" 2>&1 ||
    fail "training with a small /dev/shm: $(cat "$work/small.log")"
  rt_mpirun 2 bench allreduce --sizes 1M,16M --iters 3 >"$work/bench.log" 2>&1 ||
    fail "bench allreduce with a small /dev/shm: $(cat "$work/bench.log")"
  umount /dev/shm
  mount -t tmpfs -o size=22m tmpfs /dev/shm || fail "mounting a 22 MiB /dev/shm"
  rt_mpirun 2 "${args[@]}" --checkpoint-dir "$work/mid" >"$work/mid.log" 2>&1 ||
    fail "training with a 22 MiB /dev/shm: $(cat "$work/mid.log")"
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "skip: needs root for a mount namespace"; exit 77; }
unshare -m true 2>/dev/null || { echo "skip: unshare -m not permitted here"; exit 77; }
work=$(mktemp -d "$BUILD/smallshm.XXXX")
trap 'rm -rf "$work"' EXIT

rt_mpirun 2 "${args[@]}" --checkpoint-dir "$work/normal" >"$work/normal.log" 2>&1 ||
  fail "training with the normal /dev/shm: $(cat "$work/normal.log")"
! grep -q "staging slots" "$work/normal.log" || fail "normal /dev/shm fell back to staging"
unshare -m bash "$0" "$BUILD" "$SRC" inner "$work"

n=$(grep -c "warning: hier: /dev/shm has .* free; the 2 rank(s) of this node need .*staging slots instead" \
  "$work/small.log" || true)
[ "$n" = 1 ] || fail "expected one warning line about /dev/shm, got $n: $(cat "$work/small.log")"
grep -q '^final:' "$work/small.log" || fail "no final line: $(cat "$work/small.log")"
h5diff -q "$work/normal/$(cat "$work/normal/latest")" "$work/small/$(cat "$work/small/latest")" \
  /params /params || fail "staging and zero-copy runs end with different parameters"
echo "ok: small /dev/shm: one warning, staging path, parameters identical to the zero-copy run"

n=$(grep -c "warning: bench allreduce: /dev/shm has" "$work/bench.log" || true)
[ "$n" = 1 ] || fail "bench allreduce: expected one warning, got $n: $(cat "$work/bench.log")"
[ "$(grep -cE '^ +(1.0|16.0) MiB .* yes .* yes .* yes' "$work/bench.log")" = 2 ] ||
  fail "bench allreduce rows missing or wrong: $(cat "$work/bench.log")"
echo "ok: bench allreduce falls back to private memory with one warning"

n=$(grep -c "warning: sharded optimizer step: /dev/shm has .* free; .*every rank updates all parameters instead" \
  "$work/mid.log" || true)
[ "$n" = 1 ] || fail "expected one warning line about the sharded step, got $n: $(cat "$work/mid.log")"
! grep -q "staging slots" "$work/mid.log" || fail "22 MiB /dev/shm: the gradients fell back to staging"
! grep -q "optimizer step sharded" "$work/mid.log" || fail "22 MiB /dev/shm: still sharded"
grep -q "optimizer step sharded" "$work/normal.log" || fail "normal /dev/shm: not sharded"
h5diff -q "$work/normal/$(cat "$work/normal/latest")" "$work/mid/$(cat "$work/mid/latest")" \
  /params /params || fail "whole and sharded optimizer steps end with different parameters"
echo "ok: room for the gradients only: one warning, the whole optimizer step, parameters identical"
