#!/usr/bin/env bash
# The README's test command: builds and runs the whole suite (ctest), then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer, then valgrind on `multiflow score`.
# --fast skips the sanitizer and valgrind passes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
(cd build && ctest --output-on-failure -j2)
if [ "${1:-}" = "--fast" ]; then exit 0; fi
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMF_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j2)
if [ -x scripts/check_valgrind.sh ]; then scripts/check_valgrind.sh build/multiflow; fi
echo "test.sh: all passed"
