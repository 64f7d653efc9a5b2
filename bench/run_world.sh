#!/usr/bin/env bash
# bench/run_world.sh: the world generator's images per second against Python peers, in one run
# (bench/README.md "World generator").
#
# Builds bench_world (incrementally; an existing binary if the build fails), runs it (C: the parts on
# one thread, the whole generator at each thread count, same content hash checked), then
# bench/world_peer.py on the same scenes with Debian's /usr/bin/python3: a numpy re-implementation
# of docs/world.md that must reproduce every pixel, and plain Pillow ImageDraw drawing. Does not
# assert on time or pin CPUs: on a shared machine read the CPU-time figures and the ratios.
#
# Environment (defaults): IMAGES=5000 (C)  PEER_IMAGES=1000 (Python)  SIZE=64  THREADS=1,2  REPS=2
#   BUILD=<repo>/build-bench  DIR=/tmp/mf-bench-world (the C world, kept for the peer)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
IMAGES=${IMAGES:-5000}
PEER_IMAGES=${PEER_IMAGES:-1000}
SIZE=${SIZE:-64}
THREADS=${THREADS:-1,2}
REPS=${REPS:-2}
DIR=${DIR:-/tmp/mf-bench-world}
PY=/usr/bin/python3 # the python3 first on PATH has no numpy/PIL

BIN=$BUILD/bench/bench_world
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
       cmake --build "$BUILD" -j2 --target bench_world >/dev/null; }; then
    [ -x "$BIN" ] || { echo "run_world.sh: build failed and there is no $BIN" >&2; exit 1; }
    echo "run_world.sh: build failed, using the existing $BIN" >&2
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
C_OUT=$("$BIN" --images "$IMAGES" --size "$SIZE" --threads "$THREADS" --reps "$REPS" --dir "$DIR")
echo "$C_OUT"
P_OUT=$("$PY" "$ROOT/bench/world_peer.py" "$DIR" "$PEER_IMAGES")
echo "$P_OUT"
# CPU-time figures: the machine is shared, and both sides run one thread here
cc=$(echo "$C_OUT" | sed -n 's/^generate, 1 thread: .* \([0-9]*\) images\/s per CPU-second.*/\1/p')
pe=$(echo "$P_OUT" | sed -n 's/^peer exact.* \([0-9]*\) images\/s per CPU-second.*/\1/p')
pp=$(echo "$P_OUT" | sed -n 's/^peer pillow.* \([0-9]*\) images\/s per CPU-second.*/\1/p')
if [ -n "$cc" ] && [ -n "$pp" ] && [ -n "$pe" ]; then
    awk -v k="$cc" -v e="$pe" -v p="$pp" 'BEGIN {
        printf "ratio, images per CPU-second, 1 thread each: C %.1fx the Pillow peer, %.1fx the exact numpy peer\n", k / p, k / e }'
fi
