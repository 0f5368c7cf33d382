#!/usr/bin/env bash
# End to end, sequence models: a tiny generated corpus (a cyclic text in which
# every character has one successor) -> rt_text2h5 -> a tiny causal
# Transformer language model memorizes it on 1 and on 2 ranks (held-out loss
# below 0.05 nats/token; ln 26 = 3.3 at the start), an LSTM does on 2 ranks,
# and `ringtrain sample` continues a prompt from the checkpoint.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
dir="$DATA/seq"
rm -rf "$dir" && mkdir -p "$dir"
for _ in $(seq 200); do printf 'uncopyrightable JMQSVWXZ.\n'; done >"$dir/tiny.txt"
"$BUILD/rt_text2h5" --out "$dir/tiny" --tokenizer char --val-fraction 0.1 "$dir/tiny.txt"
cat >"$dir/tf.spec" <<SPEC
input 16
embed 26 32
posenc learned
block transformer 2 causal
layernorm
linear 26
loss softmax_cross_entropy
SPEC
cat >"$dir/lstm.spec" <<SPEC
input 16
embed 26 16
lstm 48
linear 26
loss softmax_cross_entropy
SPEC

check() { # LOG: test loss of the final line below 0.05
  local final loss
  final=$(grep '^final:' "$1") || fail "$1: no final line"
  loss=$(sed -E 's/.*test loss ([0-9.]+).*/\1/' <<<"$final")
  awk -v l="$loss" 'BEGIN { exit !(l < 0.05) }' || fail "$1: held-out loss $loss >= 0.05"
  echo "$1: held-out loss $loss"
}
for np in 1 2; do
  rt_mpirun $np train --model "$dir/tf.spec" --data "$dir/tiny-train.h5" --test-data "$dir/tiny-val.h5" \
    --batch-size 16 --lr 0.01 --epochs 12 --log-every 0 --checkpoint-dir "$dir/ckpt$np" >"$dir/tf$np.log" 2>&1 ||
    { cat "$dir/tf$np.log"; fail "transformer on $np ranks"; }
  check "$dir/tf$np.log"
done
rt_mpirun 2 train --model "$dir/lstm.spec" --data "$dir/tiny-train.h5" --test-data "$dir/tiny-val.h5" \
  --batch-size 16 --lr 0.01 --epochs 12 --log-every 0 >"$dir/lstm.log" 2>&1 ||
  { cat "$dir/lstm.log"; fail "lstm on 2 ranks"; }
check "$dir/lstm.log"

out=$("$BIN" sample --checkpoint "$dir/ckpt2" --prompt "uncopy" --length 40 --top-k 1)
echo "sample: $out"
grep -q '^uncopyrightable JMQSVWXZ\.$' <<<"$out" || fail "sample does not continue the corpus"
"$BIN" sample --checkpoint "$dir/ckpt2" --prompt "ünc" >/dev/null 2>"$dir/err" && fail "unknown byte accepted"
grep -q "is not in the 26-character vocabulary" "$dir/err" || fail "unclear error: $(cat "$dir/err")"
# --device cuda: the same text on a GPU; without one, one line and exit 1
if "$BIN" sample --checkpoint "$dir/ckpt2" --prompt "uncopy" --length 40 --top-k 1 --device cuda \
    >"$dir/gpu.out" 2>"$dir/err"; then
  [ "$(cat "$dir/gpu.out")" = "$out" ] || fail "sample --device cuda differs: $(cat "$dir/gpu.out")"
else
  [ "$(wc -l <"$dir/err")" = 1 ] && grep -qiE "cuda|gpu" "$dir/err" ||
    fail "sample --device cuda without a GPU: $(cat "$dir/err")"
  echo "sample --device cuda: $(cat "$dir/err")"
fi
"$BIN" sample --checkpoint "$dir/ckpt2" --device tpu >/dev/null 2>"$dir/err" && fail "--device tpu accepted"
grep -q "expected 'cpu' or 'cuda'" "$dir/err" || fail "unclear --device error: $(cat "$dir/err")"
echo "PASS"
