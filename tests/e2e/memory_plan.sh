#!/usr/bin/env bash
# End to end, the memory plan (docs/MEMORY.md) on 2 ranks: the start-up
# summary prints every rank's plan; a run whose plan exceeds --max-memory
# ends at start-up on EVERY rank (each exits 1) with one line naming the
# biggest part and the flag that shrinks it; --recompute blocks lowers the
# plan's activations and trains to the same bits; --train-limit on a token
# file says that it counts tokens.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
dir="$DATA/memplan"
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
for _ in $(seq 1500); do printf 'uncopyrightable JMQSVWXZ.\n'; done >tiny.txt
"$BUILD/rt_text2h5" --out tiny --tokenizer char --val-fraction 0.1 tiny.txt >/dev/null
cat >gpt.spec <<SPEC
input 64
embed 26 64
posenc learned
block transformer 4 causal
block transformer 4 causal
block transformer 4 causal
block transformer 4 causal
layernorm
linear 26
loss softmax_cross_entropy
SPEC
A=(train --model gpt.spec --data tiny-train.h5 --batch-size 64 --epochs 1 --log-every 0 --progress none --seed 3)

# every rank runs through a wrapper that records its own exit code
cat >rank.sh <<SH
#!/usr/bin/env bash
"$BIN" "\$@"
echo \$? >"rc.\${OMPI_COMM_WORLD_RANK}"
exit 0
SH
chmod +x rank.sh
run2() { # run2 ARGS...: 2 ranks, stdout > out, stderr > err
  rm -f rc.*
  set +e
  timeout -k 10 120 mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp \
    -x OPENBLAS_NUM_THREADS=1 -np 2 ./rank.sh "$@" >out 2>err
  local rc=$?
  set -e
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "timed out (hang) on: $*"
}
mib() { # mib PART: rank 0's planned MiB of PART from the start-up summary in out
  grep -m1 -E '^  ranks? 0' out | grep -oE "$1 [0-9.]+ [KMG]iB" | awk '{
    v = $(NF-1); u = $NF; printf "%.3f\n", v * (u == "GiB" ? 1024 : u == "KiB" ? 1/1024 : 1) }'
}

echo "--- the plan at start-up"
run2 "${A[@]}" --max-memory 4G
[ "$(cat rc.0) $(cat rc.1)" = "0 0" ] || fail "plain run failed: $(cat err)"
grep -q '^memory plan per rank (--max-memory 4.0 GiB)' out || fail "no plan header: $(cat out)"
grep -qE '^  ranks 0-1: parameters .*optimizer state .*activations .*workspace .*data loader .*all-reduce .*; total' out ||
  grep -qE '^  rank 1: parameters' out || fail "no per-rank plan: $(cat out)"
act_plain=$(mib activations)
total_plain=$(mib total)
loss_plain=$(grep -oE 'train loss [0-9.]+' out)
grep -qE 'tok/s \(' out || fail "epoch line does not count tokens: $(grep epoch out)"

echo "--- --recompute blocks: fewer activation bytes, the same training"
run2 "${A[@]}" --max-memory 4G --recompute blocks
[ "$(cat rc.0) $(cat rc.1)" = "0 0" ] || fail "recompute run failed: $(cat err)"
act_rec=$(mib activations)
total_rec=$(mib total)
awk -v a="$act_plain" -v b="$act_rec" 'BEGIN { exit !(b < 0.6 * a) }' ||
  fail "recompute did not lower the plan's activations: $act_plain -> $act_rec MiB"
[ "$(grep -oE 'train loss [0-9.]+' out)" = "$loss_plain" ] ||
  fail "recompute changed the loss: $loss_plain vs $(grep -oE 'train loss [0-9.]+' out)"
echo "ok: activations $act_plain -> $act_rec MiB, $loss_plain both"

echo "--- a plan above --max-memory: every rank exits 1 at start-up, one line"
# between the two plans: the plain one is refused, the recomputing one fits
limit=$(awk -v a="$total_plain" -v b="$total_rec" 'BEGIN { printf "%dM", (a + b) / 2 }')
run2 "${A[@]}" --max-memory "$limit"
[ "$(cat rc.0) $(cat rc.1)" = "1 1" ] || fail "exit codes $(cat rc.0) $(cat rc.1), expected 1 1: $(cat err)"
[ "$(grep -c '^ringtrain' err)" -eq 1 ] || fail "expected one line: $(cat err)"
grep -q "gpt.spec: the memory plan needs .*, more than --max-memory .*; the biggest part is activations (.* at micro-batch 32): lower --batch-size, raise --accumulate, or use --recompute blocks (saves" err ||
  fail "message: $(cat err)"
! grep -q 'epoch 1/1' out || fail "the refused run trained"
echo "ok: $(grep '^ringtrain' err)"

echo "--- the same limit with the flag the message names"
run2 "${A[@]}" --max-memory "$limit" --recompute blocks
[ "$(cat rc.0) $(cat rc.1)" = "0 0" ] || fail "recompute run under $limit failed: $(cat err)"

echo "--- --train-limit on a token file counts tokens"
run2 "${A[@]}" --train-limit 100
[ "$(cat rc.0) $(cat rc.1)" = "1 1" ] || fail "limit: exit codes $(cat rc.0) $(cat rc.1)"
grep -q -- "tiny-train.h5: --train-limit 100 counts tokens, and 100 tokens over 2 rank(s) leave rank 0 a part of 50, fewer than one window of 64 plus its next token; set it to at least 130 (2 x 65)" err ||
  fail "limit message: $(cat err)"
"$BIN" train --help >help.txt
grep -q -- '--train-limit N .*on a token file the first N TOKENS' help.txt ||
  fail "--help does not say --train-limit counts tokens"
echo "PASS: memory plan"
