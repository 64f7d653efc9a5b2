#!/usr/bin/env bash
# scripts/check_sanitize.sh: builds the whole project with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DMF_SANITIZE=ON) in its own build folder and runs the complete ctest suite there (C tests and the
# CLI tests, whose multiflow binary is then sanitized too). Exits non-zero if the build fails, any
# test fails, or a sanitizer reports anything (leaks included: LeakSanitizer is on).
#
#   scripts/check_sanitize.sh [extra ctest arguments, e.g. -R cli_ or -E bench]
#   MF_ASAN_BUILD=/tmp/build-asan MF_JOBS=2 scripts/check_sanitize.sh
#
# Does not: run the fuzzers (scripts/fuzz.sh) or valgrind (scripts/check_valgrind.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MF_ASAN_BUILD:-$root/build-asan}"
jobs="${MF_JOBS:-2}"

# Sanitizer failures exit with 86, so a test that expects an ordinary error exit (1 or 2) cannot
# mistake one for it; halt on the first UBSan report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=86}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-exitcode=86}"

echo "== configure $build (MF_SANITIZE=ON)"
cmake -S "$root" -B "$build" -DMF_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
echo "== build"
cmake --build "$build" -j"$jobs"
echo "== ctest"
status=0
(cd "$build" && ctest --output-on-failure -j"$jobs" "$@") || status=$?
if [ "$status" -ne 0 ]; then
    echo "check_sanitize: FAILED (ctest exit $status); see the output above and $build/Testing/Temporary/LastTest.log" >&2
    exit 1
fi
echo "check_sanitize: all tests passed under ASan+UBSan"
