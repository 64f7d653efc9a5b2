#!/usr/bin/env bash
# bench/run_forward.sh: one command for the forward-throughput benchmark (bench/README.md).
#
# Builds bench_forward (incrementally; falls back to an existing binary if the build fails because
# someone's file is half-written), then for every case MODE:RES runs the C bench at THREADS and the
# PyTorch bench (torch threads TORCH_THREADS, OpenBLAS 2 threads, OMP_WAIT_POLICY=PASSIVE) on the
# same checkpoint and inputs, and prints one table. The PyTorch side first checks that its outputs
# equal the C engine's; a row whose check failed is marked and should not be read as a speed-up.
# Does not assert on time, and does not pin CPUs (the machine is shared: read the ratios, which
# come from the same run, not the absolute numbers).
#
# Environment (defaults): CASES="itm:224 itm:384 calib:224 calib:384"  THREADS=1,2  TORCH_THREADS=1,2
#   REPS=2 (timed batches after one warm-up)  BATCH=8  BUILD=<repo>/build-bench
#   MODEL_ROOT=/tmp (checkpoints go to $MODEL_ROOT/mf-bench-<mode>-<res>, reused between runs; about
#   0.9 GB for itm, 1.0 GB for calib)  LOG=<temp file> (raw output, kept)
#   PROFILE=1: also a per-phase breakdown of the C forward with perf (GEMM / attention / ...)
#   ROUNDS=1: repeat every case (C, then PyTorch) this many times; the table keeps the best of
#   all rounds for each side, which interleaves the two in time on a machine with changing load
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
CASES=${CASES:-"itm:224 itm:384 calib:224 calib:384"}
THREADS=${THREADS:-1,2}
TORCH_THREADS=${TORCH_THREADS:-1,2}
REPS=${REPS:-2}
BATCH=${BATCH:-8}
MODEL_ROOT=${MODEL_ROOT:-/tmp}
ROUNDS=${ROUNDS:-1}
PY=/usr/bin/python3 # the python3 first on PATH has no torch
LOG=${LOG:-$(mktemp /tmp/mf-bench-forward-XXXXXX.log)}
export OMP_WAIT_POLICY=PASSIVE

BIN=$BUILD/bench/bench_forward
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
       cmake --build "$BUILD" -j2 --target bench_forward >/dev/null; }; then
    if [ -x "$BIN" ]; then
        echo "run_forward.sh: build failed, using the existing $BIN" >&2
    else
        echo "run_forward.sh: build failed and there is no $BIN" >&2
        exit 1
    fi
fi

echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs" | tee "$LOG"
for round in $(seq "$ROUNDS"); do
for case in $CASES; do
    mode=${case%%:*}
    res=${case##*:}
    dir=$MODEL_ROOT/mf-bench-$mode-$res
    echo "# round $round/$ROUNDS: $mode $res px" | tee -a "$LOG"
    "$BIN" --mode "$mode" --res "$res" --threads "$THREADS" --batch "$BATCH" --reps "$REPS" \
        --model-dir "$dir" --dump "$dir/dump.safetensors" | tee -a "$LOG" || echo "C_FAILED mode=$mode res=$res" | tee -a "$LOG"
    OPENBLAS_NUM_THREADS=2 "$PY" "$ROOT/bench/bench_forward_torch.py" --model-dir "$dir" \
        --dump "$dir/dump.safetensors" --threads "$TORCH_THREADS" --reps "$REPS" | tee -a "$LOG" ||
        echo "TORCH_FAILED mode=$mode res=$res" | tee -a "$LOG"
done
done

# Optional per-phase breakdown of the C forward (PROFILE=1): perf samples of one warm-up + REPS
# batches at the last thread count of THREADS, without the SGEMM peak, grouped by kernel.
if [ "${PROFILE:-0}" = 1 ]; then
    for case in $CASES; do
        mode=${case%%:*}
        res=${case##*:}
        dir=$MODEL_ROOT/mf-bench-$mode-$res
        data=$(mktemp /tmp/mf-bench-perf-XXXXXX.data)
        perf record -q -F 499 -o "$data" "$BIN" --mode "$mode" --res "$res" --threads "${THREADS##*,}" \
            --batch "$BATCH" --reps "$REPS" --model-dir "$dir" --no-peak >/dev/null 2>&1
        perf report -i "$data" --stdio --sort dso,symbol 2>/dev/null |
            "$PY" "$ROOT/bench/perf_phases.py" "$mode $res px, ${THREADS##*,} threads" | tee -a "$LOG"
        rm -f "$data"
    done
fi

echo
echo "raw output: $LOG"
"$PY" - "$LOG" <<'EOF'
import re, sys
kv = lambda line: dict(re.findall(r"(\w+)=(\S+)", line))
cbest, torch, bad = {}, {}, set()
for line in open(sys.argv[1]):
    if line.startswith("RESULT "):
        d = kv(line)  # best round per (mode, res, threads); the peak is the best seen in any round
        key = (d["mode"], d["res"], d["threads"])
        old = cbest.get(key)
        peak = max(float(d["sgemm_peak_gflops"]), float(old["sgemm_peak_gflops"]) if old else 0.0)
        if old is None or float(d["pairs_per_s"]) > float(old["pairs_per_s"]):
            cbest[key] = d
        cbest[key]["sgemm_peak_gflops"] = "%.1f" % peak
        cbest[key]["pct_peak"] = "%.1f" % (100 * float(cbest[key]["gflops"]) / peak)
    elif line.startswith("TORCH "):
        d = kv(line)
        key = (d["mode"], d["res"], d["torch_threads"])
        if key not in torch or float(d["pairs_per_s"]) > float(torch[key]["pairs_per_s"]):
            torch[key] = d
    elif line.startswith("CHECK") and "FAIL" in line:
        bad.add(line)
    elif line.startswith(("C_FAILED", "TORCH_FAILED")):
        d = kv(line)
        bad.add((d["mode"], d["res"]))
hdr = ("mode", "res", "threads", "C pairs/s", "torch pairs/s (best)", "C/torch", "C GFLOP/s", "SGEMM peak", "% peak")
rows = []
for r in cbest.values():
    key = (r["mode"], r["res"])
    t = max((d for k, d in torch.items() if k[:2] == key), key=lambda d: float(d["pairs_per_s"]), default=None)
    tp = "%s (t=%s)" % (t["pairs_per_s"], t["torch_threads"]) if t else "-"
    ratio = "%.2f" % (float(r["pairs_per_s"]) / float(t["pairs_per_s"])) if t else "-"
    if key in bad:
        ratio += " (!)"
    rows.append((r["mode"], r["res"], r["threads"], r["pairs_per_s"], tp, ratio, r["gflops"],
                 r["sgemm_peak_gflops"], r["pct_peak"]))
w = [max(len(h), *(len(x[i]) for x in rows)) if rows else len(h) for i, h in enumerate(hdr)]
fmt = "| " + " | ".join("%%-%ds" % n for n in w) + " |"
print(fmt % hdr)
print("|" + "|".join("-" * (n + 2) for n in w) + "|")
for x in rows:
    print(fmt % x)
for key in sorted({k[:2] for k in torch}):
    print("torch %s %s px: " % key + ", ".join("%s pairs/s at torch_threads=%s" % (d["pairs_per_s"], d["torch_threads"])
                                               for k, d in sorted(torch.items()) if k[:2] == key))
for b in sorted(map(str, bad)):
    print("FAILED:", b.strip())
EOF
