#!/usr/bin/env bash
# bench/run_prune.sh: one command for the pruning benchmark (bench/README.md, "Pruning").
#
# Builds bench_prune (Release, in $BUILD), runs it once per method (a fresh process each, so that
# each method's peak RSS is its own), then runs bench_prune_torch.py with the same sizes and thread
# counts (after the C processes have exited: the two never hold memory at once), and prints one
# table: per method and thread count, C scoring + selection seconds (mf_prune_compute_masks), its
# peak RSS against the f32 weights, PyTorch total (the reference's computation: torch.kthvalue and
# `<=`), the speed-up, and how many weights over floor(s * n) the reference prunes (ties).
# Does not assert on time and does not pin CPUs: read the ratios, which come from the same run.
#
# Environment (defaults): THREADS=2  SPARSITY=0.63  LAYERS=12 (1..12; 12 = BLIP-base, 226,492,416
#   weights, about 2.1 GB for C and 7 GB for PyTorch)  METHODS=omp,lmp,l2,lamp,rand,multiflow
#   BUILD=<repo>/build-bench  LOG=<temp file> (raw output, kept)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
THREADS=${THREADS:-2}
SPARSITY=${SPARSITY:-0.63}
LAYERS=${LAYERS:-12}
METHODS=${METHODS:-omp,lmp,l2,lamp,rand,multiflow}
PY=/usr/bin/python3 # the python3 first on PATH has no torch
LOG=${LOG:-$(mktemp /tmp/mf-bench-prune-XXXXXX.log)}
export OMP_WAIT_POLICY=PASSIVE

BIN=$BUILD/bench/bench_prune
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
       cmake --build "$BUILD" -j2 --target bench_prune >/dev/null; }; then
    if [ -x "$BIN" ]; then
        echo "run_prune.sh: build failed, using the existing $BIN" >&2
    else
        echo "run_prune.sh: build failed and there is no $BIN" >&2
        exit 1
    fi
fi

echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs" | tee "$LOG"
args=(--threads "$THREADS" --sparsity "$SPARSITY" --layers "$LAYERS")
for m in ${METHODS//,/ }; do
    "$BIN" "${args[@]}" --methods "$m" | sed 's/^RESULT/C_RESULT/' | tee -a "$LOG" || echo "C_FAILED $m" | tee -a "$LOG"
done
args+=(--methods "$METHODS")
"$PY" "$ROOT/bench/bench_prune_torch.py" "${args[@]}" | sed 's/^RESULT/T_RESULT/' | tee -a "$LOG" ||
    echo "TORCH_FAILED" | tee -a "$LOG"

echo
awk '
function val(line, key,    i, n, f, kv) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
/^C_RESULT/ { k = $2 " " val($0, "threads"); c[k] = $0; order[++no] = k }
/^T_RESULT/ { k = $2 " " val($0, "threads"); t[k] = $0 }
/^PEAK_RSS_MB/ { m = val($0, "methods"); peak[m] = $2; ratio[m] = val($0, "ratio_to_weights"); wmb = val($0, "weights_mb") }
END {
    printf "| method | threads | C score+select s | exact | C peak RSS MiB (fresh process) | RSS / f32 weights | PyTorch total s | speed-up | reference over-prunes |\n"
    printf "|---|---|---|---|---|---|---|---|---|\n"
    for (i = 1; i <= no; i++) {
        k = order[i]; split(k, mt, " ")
        ct = val(c[k], "total_s"); tt = (k in t) ? val(t[k], "total_s") : ""
        over = (k in t) ? val(t[k], "pruned") - val(t[k], "k") : ""
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", mt[1], mt[2], ct, val(c[k], "exact"),
            peak[mt[1]], ratio[mt[1]], tt, (tt != "" && ct > 0) ? sprintf("%.1fx", tt / ct) : "-", over
    }
    print ""
    print "f32 weights: " wmb " MiB"
}' "$LOG"
echo "(raw output: $LOG)"
