#!/usr/bin/env bash
# What the momentum path of the pretraining losses costs: `multiflow grad` on a BLIP-base-shaped
# original-layout checkpoint with momentum copies and full-size queues (57600), --momentum on vs
# off, alternating: wall time, CPU time (user + system: steadier than wall time on a shared
# machine), peak RSS, and the bytes of the working copy the state reports (momentum_bytes).
#
#   [REPS=2] bench/run_momentum.sh BUILD_DIR [WORK_DIR] [PAIRS] [BATCH] [THREADS] [RES]
#
# Writes (or reuses) WORK_DIR/src (bench_forward --mode calib) and WORK_DIR/m (bench/add_momentum.py).
# Times include loading and the image decoding of data/shapes; both modes pay the same for those.
set -euo pipefail
B=${1:?build dir}
W=${2:-/tmp/mf-mom-bench}
PAIRS=${3:-8}
BATCH=${4:-4}
THREADS=${5:-2}
RES=${6:-224}
REPS=${REPS:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$W/src"
if [ ! -f "$W/src/model.safetensors" ]; then
    OPENBLAS_NUM_THREADS=1 "$B/bench/bench_forward" --mode calib --res "$RES" --batch 1 --reps 1 --threads 1 \
        --no-peak --model-dir "$W/src" >/dev/null
fi
if [ ! -f "$W/m/model.safetensors" ]; then
    /usr/bin/python3 "$ROOT/bench/add_momentum.py" "$W/src" "$W/m"
fi
echo "# multiflow grad, BLIP-base orig layout with momentum copies, $RES px, $PAIRS pairs, batch $BATCH, $THREADS threads"
for rep in $(seq "$REPS"); do
    for mo in off on; do
        /usr/bin/time -f "%e %U %S %M" -o "$W/time.txt" "$B/multiflow" grad --model "$W/m" \
            --data "$ROOT/data/shapes/annotations.json" --images "$ROOT/data/shapes" --pairs "$PAIRS" \
            --batch "$BATCH" --threads "$THREADS" --max-tokens 30 --itm-negatives hardest --momentum "$mo" \
            --out "$W/grad-$mo.safetensors" --force --json --quiet >"$W/out-$mo.json"
        read -r secs us ss kb <"$W/time.txt"
        cpu=$(awk -v u="$us" -v s="$ss" 'BEGIN { printf "%.1f", u + s }')
        echo "RESULT momentum=$mo rep=$rep wall_s=$secs cpu_s=$cpu peak_rss_mib=$((kb / 1024)) $(cat "$W/out-$mo.json")"
    done
done
