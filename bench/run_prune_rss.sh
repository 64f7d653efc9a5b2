#!/usr/bin/env bash
# bench/run_prune_rss.sh: peak RSS of the whole `multiflow prune --method multiflow` (calibration
# forward passes, statistics, scoring, selection, writing the pruned checkpoint) at two calibration
# sizes on a BLIP-base-shaped checkpoint; issue target: the two peaks within 5 % of each other.
#
# The checkpoint and the annotation files are bench_stats_rss's (original layout, width 768, FFN
# 3072, LAYERS layers per tower, 224 px, random weights; pair p = data/shapes image p mod 64 with its
# first caption), written to DIR once and reused. Each size runs in its own process under
# /usr/bin/time (maximum resident set size, GNU time's %M in KiB); the outputs go to a temporary
# directory that is removed afterwards. Does not assert on time.
#
# Environment (defaults): PAIRS=64,1024  LAYERS=12  THREADS=2  BATCH=8  DIR=/tmp/mf-prune-rss-<LAYERS>
#   BUILD=<repo>/build-bench
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
PAIRS=${PAIRS:-64,1024}
LAYERS=${LAYERS:-12}
THREADS=${THREADS:-2}
BATCH=${BATCH:-8}
DIR=${DIR:-/tmp/mf-prune-rss-$LAYERS}

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target multiflow bench_stats_rss >/dev/null
mkdir -p "$DIR"
missing=0
[ -f "$DIR/model.safetensors" ] || missing=1
for n in ${PAIRS//,/ }; do [ -f "$DIR/pairs-$n.jsonl" ] || missing=1; done
if [ "$missing" = 1 ]; then
    # writes the checkpoint and the pairs files (and measures the statistics pass alone)
    "$BUILD/bench/bench_stats_rss" --src "$ROOT" --layers "$LAYERS" --pairs "$PAIRS" --threads "$THREADS" \
        --batch "$BATCH" --dir "$DIR"
fi

echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs;" \
    "multiflow prune --method multiflow --sparsity 63, $LAYERS layers per tower, batch $BATCH, $THREADS threads"
tmp=$(mktemp -d /tmp/mf-prune-rss-run-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
first=""
for n in ${PAIRS//,/ }; do
    /usr/bin/time -f "%M %e" -o "$tmp/time" "$BUILD/multiflow" prune --model "$DIR/model.safetensors" \
        --vocab "$DIR/vocab.txt" --method multiflow --sparsity 63 --data "$DIR/pairs-$n.jsonl" \
        --images "$ROOT" --batch "$BATCH" --threads "$THREADS" --out "$tmp/out-$n" >/dev/null
    read -r kib secs <"$tmp/time"
    mib=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')
    printf '%6s pairs: peak RSS %8s MiB  %7.1f s\n' "$n" "$mib" "$secs"
    jq -r '"        report: pruned " + (.overall.sparsity | tostring) + " overall, calibration " +
           (.calibration.pairs | tostring) + " pairs"' "$tmp/out-$n/multiflow-63/report.json" 2>/dev/null || true
    rm -rf "$tmp/out-$n"
    if [ -z "$first" ]; then first=$kib; else
        awk -v a="$first" -v b="$kib" 'BEGIN { r = b / a; printf "peak RSS ratio: %.4f (target within 5 %%: %s)\n", r,
            (r <= 1.05 && r >= 0.95) ? "met" : "NOT met" }'
    fi
done
