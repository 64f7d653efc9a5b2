#!/usr/bin/env bash
# bench/run_caption.sh: one command for the caption-generation benchmark (bench/README.md).
#
# Builds bench_caption, writes the BLIP-mini-shaped captioning checkpoint once
# (bench_caption_torch.py --make-model, into $MODEL), runs the C engine at --batch BATCH and at
# --batch 1 for THREADS, then the PyTorch peer (key/value-cached generation with blip_ref's
# transformers-4.15 search, one image at a time) for TORCH_THREADS on the same images; the PyTorch
# side first checks that its captions equal the C engine's. Prints the raw lines and the ratios.
# Does not assert on time; the machine is shared, so read the ratios of one run.
#
# Environment (defaults): BEAMS=3 MAX_LEN=20 MIN_LEN=5 N_IMAGES=16 BATCH=8 THREADS=1,2
#   TORCH_THREADS=1,2 REPS=3 BUILD=<repo>/build-bench MODEL=/tmp/mf-bench-caption-mini
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
MODEL=${MODEL:-/tmp/mf-bench-caption-mini}
BEAMS=${BEAMS:-3}
MAX_LEN=${MAX_LEN:-20}
MIN_LEN=${MIN_LEN:-5}
N_IMAGES=${N_IMAGES:-16}
BATCH=${BATCH:-8}
THREADS=${THREADS:-1,2}
TORCH_THREADS=${TORCH_THREADS:-1,2}
REPS=${REPS:-3}
PY=/usr/bin/python3
export OMP_WAIT_POLICY=PASSIVE

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target bench_caption >/dev/null
[ -f "$MODEL/model.safetensors" ] || "$PY" "$ROOT/bench/bench_caption_torch.py" --make-model "$MODEL"
LOG=$(mktemp /tmp/mf-bench-caption-XXXXXX.log)
GEN=(--beams "$BEAMS" --max-len "$MAX_LEN" --min-len "$MIN_LEN")
echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs" | tee "$LOG"
"$BUILD/bench/bench_caption" --model "$MODEL" "${GEN[@]}" --n-images "$N_IMAGES" --batch "$BATCH" \
    --threads "$THREADS" --reps "$REPS" --dump "$MODEL/dump.safetensors" | tee -a "$LOG"
"$BUILD/bench/bench_caption" --model "$MODEL" "${GEN[@]}" --n-images "$N_IMAGES" --batch 1 \
    --threads "$THREADS" --reps "$REPS" | tee -a "$LOG"
OPENBLAS_NUM_THREADS=1 "$PY" "$ROOT/bench/bench_caption_torch.py" --model "$MODEL" --dump "$MODEL/dump.safetensors" \
    "${GEN[@]}" --threads "$TORCH_THREADS" --reps "$REPS" | tee -a "$LOG"
"$PY" - "$LOG" <<'PYEOF'
import re, sys
kv = lambda l: dict(re.findall(r"(\w+)=(\S+)", l))
c = [kv(l) for l in open(sys.argv[1]) if l.startswith("RESULT")]
t = [kv(l) for l in open(sys.argv[1]) if l.startswith("TORCH")]
if t:
    best = max(t, key=lambda d: float(d["captions_per_s"]))
    print("| C threads | C batch | C captions/s | torch best captions/s (threads) | C/torch |")
    print("|---|---|---|---|---|")
    for d in c:
        print("| %s | %s | %s | %s (%s) | %.2f |" % (d["threads"], d["batch"], d["captions_per_s"], best["captions_per_s"],
              best["torch_threads"], float(d["captions_per_s"]) / float(best["captions_per_s"])))
PYEOF
echo "raw output: $LOG"
