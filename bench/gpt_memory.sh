#!/usr/bin/env bash
# bench/gpt_memory.sh: peak resident memory per rank of models/gpt_small.spec
# (AdamW) beside the memory plan each rank printed at start-up, at 2 and 4
# ranks (oversubscribed is fine: memory does not depend on speed), with and
# without --recompute blocks. Each rank runs under /usr/bin/time, whose
# maximum resident set size is the measured peak. --allreduce ring keeps the
# gradients in each rank's own memory (hier's node-shared pages would be
# counted by every rank that touches them, docs/MEMORY.md).
#
#   bash bench/gpt_memory.sh [BUILD_DIR] [DATA_PREFIX]
#   env: RANKS ("2 4"), BATCH (8, global), STEPS (2), OUT (runs/gpt_memory),
#        SHARD ("off all": --shard-optimizer), RECOMPUTE ("none blocks")
set -euo pipefail
BUILD=${1:-build}
PREFIX=${2:-data/gpt-text}
RANKS=${RANKS:-2 4}
BATCH=${BATCH:-8}
STEPS=${STEPS:-2}
OUT=${OUT:-runs/gpt_memory}
SHARD=${SHARD:-off all}
RECOMPUTE=${RECOMPUTE:-none blocks}
mkdir -p "$OUT"
BIN=$(cd "$BUILD" && pwd)/ringtrain
cat >"$OUT/rank.sh" <<SH
#!/usr/bin/env bash
exec /usr/bin/time -f "%M" -o "$OUT/rss.\$RT_TAG.\${OMPI_COMM_WORLD_RANK}" "$BIN" "\$@"
SH
chmod +x "$OUT/rank.sh"
kib_of() { # "1.2 GiB" -> KiB
    awk -v v="$1" -v u="$2" 'BEGIN { printf "%.0f", v * (u == "GiB" ? 1048576 : u == "MiB" ? 1024 : u == "KiB" ? 1 : 1 / 1024) }'
}
printf "| ranks | --shard-optimizer | --recompute | rank | plan: parameters / gradients / optimizer / activations / workspace / other | plan total | peak RSS | RSS / plan |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n" |
    tee "$OUT/table.md"
for np in $RANKS; do
    for sh in $SHARD; do
        for rc in $RECOMPUTE; do
            tag="np$np.$sh.$rc"
            RT_TAG=$tag mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp \
                -x OPENBLAS_NUM_THREADS=1 -x RT_TAG -np "$np" "$OUT/rank.sh" train \
                --model models/gpt_small.spec --data "$PREFIX-train.h5" \
                --train-limit $((STEPS * BATCH * 256)) --batch-size "$BATCH" --epochs 1 \
                --optimizer adamw --allreduce ring --recompute "$rc" --shard-optimizer "$sh" \
                --log-every 0 --progress none >"$OUT/$tag.log" 2>&1
            for ((r = 0; r < np; r++)); do
                line=$(awk -v r="$r" '
                    /^  ranks? [0-9]/ { split($0, w, /[ :]+/); n = split(w[3], g, "-"); lo = g[1]; hi = n > 1 ? g[2] : g[1]
                                       if (r + 0 >= lo + 0 && r + 0 <= hi + 0) { print; exit } }' "$OUT/$tag.log")
                part() { echo "$line" | grep -oE "$1 [0-9.]+ [KMG]?i?B" | awk '{ print $(NF-1), $NF }'; }
                read -r tv tu < <(part total)
                plan=$(kib_of "$tv" "$tu")
                rss=$(cat "$OUT/rss.$tag.$r")
                parts=""
                for p in parameters gradients "optimizer state" activations workspace; do
                    parts="$parts$(part "$p" | tr -d ' ') / "
                done
                printf "| %d | %s | %s | %d | %sloader+all-reduce+process the rest | %.1f MiB | %.1f MiB | %.3f |\n" \
                    "$np" "$sh" "$rc" "$r" "$parts" "$(echo "$plan / 1024" | bc -l)" \
                    "$(echo "$rss / 1024" | bc -l)" "$(echo "$rss / $plan" | bc -l)" | tee -a "$OUT/table.md"
            done
        done
    done
done
