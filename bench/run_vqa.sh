#!/usr/bin/env bash
# BLIP-mini VQA fine-tuning step, C (`multiflow finetune --task vqa`) against PyTorch
# (bench_vqa_torch.py) in one run on the same random BLIP-mini (multiflow init), the same world
# questions (first STEPS+1 batches, in order for PyTorch; the C run shuffles, same shapes) and the
# same thread counts. Usage:
#   bench/run_vqa.sh BUILD_DIR [BATCH] [STEPS] [THREADS]
set -euo pipefail
B=${1:?build dir}
BATCH=${2:-16}
STEPS=${3:-4}
THREADS=${4:-1,2}
MF=$B/multiflow
DIR=$(mktemp -d "${TMPDIR:-/tmp}/mf-bench-vqa.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
echo "# $(date -u +%FT%TZ) $(uname -m) $(nproc) cores; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
"$MF" world --out "$DIR/w" --pretrain 8 --calib 2 --train $(((STEPS + 1) * BATCH / 5 + 1)) --test 2 --novel 2 --quiet >/dev/null
"$MF" init --config "$(dirname "$0")/../data/configs/blip-mini.json" --vocab "$DIR/w/vocab.txt" --out "$DIR/m" \
    --quiet >/dev/null
# same questions as PyTorch's first step: --pairs BATCH, one step (the loss is a mean over the batch,
# so the C run's shuffle does not change it)
"$MF" finetune --task vqa --model "$DIR/m" --data "$DIR/w/vqa_train.json" --images "$DIR/w" --batch "$BATCH" \
    --pairs "$BATCH" --steps 1 --threads 1 --out "$DIR/ft0" --quiet --json >/dev/null
echo "C     first-batch loss $(python3 -c 'import json,sys; print("%.6f" % json.load(open(sys.argv[1]))["log"][0]["loss"])' \
    "$DIR/ft0/finetune.json")"
# time per step: a run of STEPS+1 steps minus a run of 1 step (load, warm-up and writing cancel)
for t in ${THREADS//,/ }; do
    for n in 1 $((STEPS + 1)); do
        "$MF" finetune --task vqa --model "$DIR/m" --data "$DIR/w/vqa_train.json" --images "$DIR/w" --batch "$BATCH" \
            --steps "$n" --threads "$t" --out "$DIR/ft$t-$n" --quiet --json >/dev/null
    done
    python3 - "$DIR/ft$t-1/finetune.json" "$DIR/ft$t-$((STEPS + 1))/finetune.json" "$t" "$BATCH" "$STEPS" <<'PY'
import json, sys
a, b = (json.load(open(p))["seconds"] for p in sys.argv[1:3])
t, B, S = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
print("C     threads %s: %d steps of %d questions, %.2f questions/s (%.3f s/step)" % (t, S, B, B * S / (b - a), (b - a) / S))
PY
done
OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$(dirname "$0")/bench_vqa_torch.py" --model "$DIR/m" \
    --data "$DIR/w/vqa_train.json" --images "$DIR/w" --batch "$BATCH" --steps "$STEPS" --threads "$THREADS" 2>&1 |
    grep -v UserWarning | grep -v 'super(AdamW'
echo "# loadavg after $(cut -d' ' -f1-3 /proc/loadavg)"
