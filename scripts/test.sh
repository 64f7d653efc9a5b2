#!/usr/bin/env bash
# The README's test command: builds and runs the whole suite (ctest), then the thread-count
# determinism tests under every OpenBLAS core type the CPU supports, then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer, then valgrind on `multiflow score` and friends,
# then every libFuzzer target (parsers of untrusted files) for FUZZ_SECONDS (default 10) each when
# clang is installed (scripts/install-deps.sh installs it).
# --fast skips the sanitizer, valgrind and fuzzing passes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
(cd build && ctest --output-on-failure -j2)
if [ "${1:-}" = "--fast" ]; then exit 0; fi
# The thread-count determinism tests (ctest label "determinism") once more under each OpenBLAS core
# type this CPU can run, and with the variable unset: other kernels tile differently, and results
# must not depend on --threads under any of them (README, "Determinism").
for ct in $(scripts/coretypes.sh) unset; do
    echo "test.sh: determinism tests with OPENBLAS_CORETYPE=$ct"
    if [ "$ct" = unset ]; then
        (cd build && env -u OPENBLAS_CORETYPE ctest --output-on-failure -j2 -L determinism)
    else
        (cd build && OPENBLAS_CORETYPE=$ct ctest --output-on-failure -j2 -L determinism)
    fi
done
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMF_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j2)
if [ -x scripts/check_valgrind.sh ]; then scripts/check_valgrind.sh build/multiflow; fi
if command -v clang >/dev/null; then
    scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
else
    echo "test.sh: clang not installed, fuzzing skipped (scripts/install-deps.sh installs it)"
fi
echo "test.sh: all passed"
