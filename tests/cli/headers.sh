#!/usr/bin/env bash
# Every public header compiles on its own, as C11 and as C++ (STYLE.md "Compile each public header
# alone"), with warnings as errors.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
for h in "$SRC"/include/multiflow/*.h; do
    name=$(basename "$h")
    printf '#include <multiflow/%s>\nint main(void) { return 0; }\n' "$name" >"$TMP/t.c"
    check "$name alone as C11" ${CC:-cc} -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$SRC/include" "$TMP/t.c"
    if command -v ${CXX:-c++} >/dev/null 2>&1; then
        cp "$TMP/t.c" "$TMP/t.cpp"
        check "$name alone as C++" ${CXX:-c++} -std=c++11 -Wall -Wextra -Werror -fsyntax-only -I"$SRC/include" "$TMP/t.cpp"
    fi
done
cli_finish
