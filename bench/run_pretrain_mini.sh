#!/usr/bin/env bash
# BLIP-mini pretraining step, C (bench_train --config) against PyTorch (bench_train_torch.py
# --pretrain) in one run on the same random model and batch: first-step losses must agree (1e-3
# relative), then both are timed at the same thread counts. Usage:
#   bench/run_pretrain_mini.sh BUILD_DIR [CONFIG] [BATCH] [STEPS] [THREADS]
set -euo pipefail
B=${1:?build dir}
CFG=${2:-data/configs/blip-mini.json}
BATCH=${3:-32}
STEPS=${4:-4}
THREADS=${5:-1,2}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/mf-bench-pretrain.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
echo "# $(date -u +%FT%TZ) $(uname -m) $(nproc) cores; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
"$B/bench/bench_train" --config "$CFG" --model-dir "$DIR" --batch "$BATCH" --steps "$STEPS" --threads "$THREADS" \
    --max-tokens 30 --dump "$DIR/dump.safetensors"
OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$(dirname "$0")/bench_train_torch.py" --model-dir "$DIR" \
    --dump "$DIR/dump.safetensors" --threads "$THREADS" --steps "$STEPS" --pretrain 2>&1 | grep -v UserWarning | grep -v 'super(AdamW'
echo "# loadavg after $(cut -d' ' -f1-3 /proc/loadavg)"
