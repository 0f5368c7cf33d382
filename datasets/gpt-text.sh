#!/usr/bin/env bash
# datasets/gpt-text.sh: the BPE token files of models/gpt_small.spec, from
# Debian's King James Bible (apt-get install bible-kjv bible-kjv-text: the
# `bible` program and its 4.3 MB text) followed by the fortune cookies
# (apt-get install fortunes: 2.6 MB), tokenized with ringtrain's BPE.
#
#   datasets/gpt-text.sh OUTDIR [path/to/rt_text2h5]
#
# Writes OUTDIR/kjv.txt (the Bible as plain text, Genesis 1:1 to Revelation
# 22:21) and, with the last 5 % of every file held out for validation,
# OUTDIR/gpt-text-{train,val}.h5: BPE tokens, vocabulary VOCAB (default 8192,
# merges learned on the training text only).
# Environment: VOCAB, BIBLE_TEXT (a text file to use instead of running
# `bible`), FORTUNES_DIR (default /usr/share/games/fortunes).
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 OUTDIR [path/to/rt_text2h5]" >&2
    exit 2
fi
out=$1
conv=${2:-${RT_BIN:-build}/rt_text2h5}
[ -d "$conv" ] && conv="$conv/rt_text2h5"
vocab=${VOCAB:-8192}
fortunes=${FORTUNES_DIR:-/usr/share/games/fortunes}
if [ ! -x "$conv" ]; then
    echo "$0: converter '$conv' not found; build it (cmake --build build) or pass its path" >&2
    exit 1
fi
mkdir -p "$out"
if [ -n "${BIBLE_TEXT:-}" ]; then
    cp "$BIBLE_TEXT" "$out/kjv.txt"
elif command -v bible >/dev/null && [ -f /usr/lib/bible.data ]; then
    bible Gen1:1-Rev22:21 >"$out/kjv.txt.tmp"
    mv "$out/kjv.txt.tmp" "$out/kjv.txt"
else
    echo "$0: no Bible text; install it with: apt-get install bible-kjv bible-kjv-text" >&2
    exit 1
fi
mapfile -t files < <(find "$fortunes" -maxdepth 1 -type f ! -name '*.dat' 2>/dev/null | LC_ALL=C sort)
if [ "${#files[@]}" -eq 0 ]; then
    echo "$0: no fortune files in $fortunes; install them with: apt-get install fortunes" >&2
    exit 1
fi
"$conv" --out "$out/gpt-text" --tokenizer bpe --vocab-size "$vocab" --val-fraction 0.05 \
    "$out/kjv.txt" "${files[@]}"
