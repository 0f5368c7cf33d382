#!/usr/bin/env bash
# Many ranks on one node: 8 and 16 (oversubscribed in CI, so the results are
# checked, not the speed). A small CNN, global batch 32 (2 samples per rank
# at 16), one epoch of 512 samples:
#   - hier's shared-memory all-reduce with the sharded optimizer step (each
#     rank updates 1/8 or 1/16 of the parameters) and overlap gives the same
#     checkpoint, bit for bit, as the plain path: every rank updating all
#     parameters, no overlap;
#   - the same with the node split into "nodes" of 4 ranks (test-only
#     RINGTRAIN_TEST_NODE_SIZE: node sums plus the leaders' ring);
#   - unbound ranks share the node's CPUs: 1 compute thread each.
# (The loaders of 8 and 16 ranks together: ctest mpi.loader.np8, np16; the
# backends and the sharded step's pieces: mpi.comm.np8, np16.)
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
fashion_subset 2000 500
work=$(mktemp -d "$BUILD/manyranks.XXXX")
trap 'rm -rf "$work"' EXIT
printf 'input 1 28 28\nconv 4 3 same relu\nmaxpool 2\nconv 8 3 same relu\nmaxpool 2\nflatten\ndense 10\nloss softmax_cross_entropy\n' >"$work/small.spec"
args=(train --model "$work/small.spec" --data "$TRAIN_H5" --train-limit 512 --epochs 1 --seed 5
  --batch-size 32 --log-every 0 --progress none --bucket-mib 0.01 --first-bucket-mib 0.002)
ckpt=ckpt-000000016.h5

for np in 8 16; do
  rt_mpirun "$np" "${args[@]}" --checkpoint-dir "$work/sh$np" >"$work/sh$np.log" 2>&1 ||
    fail "$np ranks: $(cat "$work/sh$np.log")"
  grep -q "optimizer step sharded over the $np rank(s) of each node" "$work/sh$np.log" ||
    fail "$np ranks did not shard the optimizer step: $(cat "$work/sh$np.log")"
  [ "$(nproc)" -ge "$np" ] || grep -q "^cpu: .*, 1 thread(s) per rank (the node's CPUs shared" \
    "$work/sh$np.log" || fail "$np unbound ranks: $(grep '^cpu:' "$work/sh$np.log")"
  rt_mpirun "$np" "${args[@]}" --shard-optimizer off --overlap off \
    --checkpoint-dir "$work/plain$np" >"$work/plain$np.log" 2>&1 ||
    fail "$np ranks, plain: $(cat "$work/plain$np.log")"
  h5diff -q "$work/sh$np/$ckpt" "$work/plain$np/$ckpt" ||
    fail "$np ranks: sharded + overlap differ from the plain path"
  echo "ok: $np ranks: sharded step and overlap bitwise equal to the plain path"
done
RINGTRAIN_TEST_NODE_SIZE=4 rt_mpirun 16 "${args[@]}" --checkpoint-dir "$work/nodes4" \
  >"$work/nodes4.log" 2>&1 || fail "16 ranks in nodes of 4: $(cat "$work/nodes4.log")"
RINGTRAIN_TEST_NODE_SIZE=4 rt_mpirun 16 "${args[@]}" --shard-optimizer off --overlap off \
  --checkpoint-dir "$work/nodes4p" >"$work/nodes4p.log" 2>&1 ||
  fail "16 ranks in nodes of 4, plain: $(cat "$work/nodes4p.log")"
h5diff -q "$work/nodes4/$ckpt" "$work/nodes4p/$ckpt" ||
  fail "16 ranks in nodes of 4: sharded + overlap differ from the plain path"
echo "ok: 16 ranks in nodes of 4 bitwise equal to the plain path"
