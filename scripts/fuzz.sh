#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan, then runs each
# for a bounded time with its seed corpus and dictionary when present. Exits non-zero on the first
# target that crashes, leaks or trips a sanitizer (the reproducer is left in the artifacts folder).
#
#   scripts/fuzz.sh [seconds per target, default 30] [target names... (default: all)]
#   FUZZ_BUILD=build-fuzz FUZZ_JOBS=2 scripts/fuzz.sh 60 safetensors
#
# New inputs found while fuzzing go to <build>/fuzz-work/<name>/, never into the committed corpus.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-30}"
shift || true
build="${FUZZ_BUILD:-$root/build-fuzz}"
jobs="${FUZZ_JOBS:-2}"

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DMF_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$jobs" --target fuzz

if [ "$#" -gt 0 ]; then
    names=("$@")
else
    names=()
    for src in "$root"/tests/fuzz/fuzz_*.c; do
        n="$(basename "$src" .c)"
        names+=("${n#fuzz_}")
    done
fi

status=0
for name in "${names[@]}"; do
    exe="$build/tests/fuzz/fuzz_$name"
    if [ ! -x "$exe" ]; then
        echo "fuzz.sh: no target fuzz_$name" >&2
        exit 2
    fi
    work="$build/fuzz-work/$name"
    art="$build/fuzz-artifacts/$name/"
    mkdir -p "$work" "$art"
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$art" -print_final_stats=1)
    [ -f "$root/tests/fuzz/$name.dict" ] && args+=(-dict="$root/tests/fuzz/$name.dict")
    dirs=("$work")
    [ -d "$root/tests/fuzz/corpus/$name" ] && dirs+=("$root/tests/fuzz/corpus/$name")
    echo "== fuzz_$name for ${secs}s (corpus: ${dirs[*]})"
    if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$exe" "${args[@]}" "${dirs[@]}"; then
        echo "fuzz.sh: fuzz_$name FAILED; reproducer(s) in $art" >&2
        status=1
        break
    fi
done
exit $status
