#!/usr/bin/env bash
# End to end, datasets/gpt-text.sh on a small corpus (a generated "Bible"
# and two fortune files instead of the packages): one command writes the
# plain text and BPE token files with the asked vocabulary, the token
# stream decodes back to the corpus (Bible first, then the fortunes), the
# learned merges are those of the training text, and a tiny GPT trains on
# the files for a few steps on 2 ranks, counting tokens.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
dir="$DATA/gpt_text"
rm -rf "$dir" && mkdir -p "$dir/fortunes" && cd "$dir"
for v in $(seq 1 400); do
  printf '  %d In the beginning was the word, and the word was with the corpus.\n' "$v"
done >bible.txt
for f in alpha beta; do
  for i in $(seq 1 60); do printf 'Fortune %s number %d: never test in production.\n%%\n' "$f" "$i"; done \
    >"fortunes/$f"
done
printf 'not a fortune' >fortunes/alpha.dat # the index files are skipped
BIBLE_TEXT=bible.txt FORTUNES_DIR=fortunes VOCAB=300 bash "$SRC/datasets/gpt-text.sh" out "$BUILD" >log ||
  fail "gpt-text.sh failed: $(cat log)"
grep -q '3 files, .* bpe vocabulary of 300' log || fail "unexpected summary: $(cat log)"
cmp -s bible.txt out/kjv.txt || fail "kjv.txt is not the Bible text"
/usr/bin/python3 - <<'PY' || fail "token files do not decode to the corpus"
import h5py
def text(path):
    f = h5py.File(path, "r")
    assert f.attrs["tokenizer"] in (b"bpe", "bpe"), f.attrs["tokenizer"]
    assert int(f.attrs["vocab_size"]) == 300, f.attrs["vocab_size"]
    assert f["vocab/merges"].shape == (44, 2), f["vocab/merges"].shape
    b, o, t = f["vocab/bytes"][:], f["vocab/offsets"][:], f["tokens"][:]
    assert t.max() < 300
    return b"".join(bytes(b[o[i]:o[i + 1]]) for i in t), len(t)
train, n = text("out/gpt-text-train.h5")
val, _ = text("out/gpt-text-val.h5")
parts = [open(p, "rb").read() for p in ("bible.txt", "fortunes/alpha", "fortunes/beta")]
cut = [len(p) - int(len(p) * 0.05) for p in parts]  # the last 5 % of every file held out
assert train == b"".join(p[:c] for p, c in zip(parts, cut)), "train text differs"
assert val == b"".join(p[c:] for p, c in zip(parts, cut)), "validation text differs"
assert n < len(train) / 2, (n, len(train))  # BPE at least halves the byte count here
PY
cat >gpt.spec <<SPEC
input 32
embed 300 32
posenc learned
block transformer 4 causal
block transformer 4 causal
layernorm
linear 300
loss softmax_cross_entropy
SPEC
rt_mpirun 2 train --model gpt.spec --data out/gpt-text-train.h5 --test-data out/gpt-text-val.h5 \
  --batch-size 8 --epochs 1 --optimizer adamw --lr-schedule cosine --warmup-steps 5 \
  --clip-norm 1.0 --accumulate 2 --progress plain --log-every 20 >train.log 2>&1 ||
  fail "training on the token files failed: $(cat train.log)"
grep -qE 'epoch 1/1  train loss [0-9.]+ .*tok/s' train.log || fail "no epoch line in tokens: $(cat train.log)"
grep -qE 'step 20/.* tok/s' train.log || fail "no progress line in tokens: $(cat train.log)"
grep -q 'final: .* tokens/s' train.log || fail "final line not in tokens: $(cat train.log)"
echo "PASS: gpt-text.sh"
