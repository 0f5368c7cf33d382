#!/usr/bin/env bash
# datasets/fortunes.sh: the text corpora of docs/SEQUENCE_MODELS.md, made from
# the fortune cookie files of Debian's 'fortunes' package
# (apt-get install fortunes; 43 files, 2.6 MB of English text under
# /usr/share/games/fortunes).
#
#   datasets/fortunes.sh OUTDIR [path/to/rt_text2h5]
#
# The converter: the second argument, else $RT_BUILD/rt_text2h5 (RT_BUILD:
# the build directory), else rt_text2h5 next to the trainer $RT_BIN, else
# build/rt_text2h5 (datasets/lib.sh). FORTUNES_DIR changes the source
# directory.
#
# Writes, with the last 5 % of every file held out for validation:
#   OUTDIR/fortunes-{train,val}.h5        character tokens (vocabulary 114)
#   OUTDIR/fortunes-bpe-{train,val}.h5    byte-pair encoding, vocabulary 512
#   OUTDIR/fortune-class-{train,test}.h5  classification: computers, definitions,
#                                         songs-poems or science, from the first
#                                         128 characters of a fortune (5 % test)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 OUTDIR [path/to/rt_text2h5]" >&2
    exit 2
fi
out=$1
rt_converter rt_text2h5 "${2:-}"
src=${FORTUNES_DIR:-/usr/share/games/fortunes}
if [ ! -f "$src/computers" ]; then
    echo "$0: no fortune files in $src; install them with: apt-get install fortunes" >&2
    exit 1
fi
mkdir -p "$out"
# every text file of the package, in name order (not the .dat indexes or .u8 links)
mapfile -t files < <(find "$src" -maxdepth 1 -type f ! -name '*.dat' | LC_ALL=C sort)
"$conv" --out "$out/fortunes" --tokenizer char --val-fraction 0.05 "${files[@]}"
"$conv" --out "$out/fortunes-bpe" --tokenizer bpe --vocab-size 512 --val-fraction 0.05 "${files[@]}"
"$conv" --classify --out "$out/fortune-class" --length 128 --test-fraction 0.05 \
    "$src/computers" "$src/definitions" "$src/songs-poems" "$src/science"
