# tests/cli/lib/common.bash: helpers shared by the CLI tests (sourced, not a test itself: the ctest
# glob is tests/cli/*.sh). Each test calls cli_setup "$@" first and cli_finish last.
#
# What it gives: $MF (the multiflow binary, absolute), $SRC (source tree), $TMP (a fresh temporary
# directory removed on exit), check helpers that print what failed and count failures, and byte
# surgery on safetensors headers that keeps the header length unchanged.
# It deliberately does not parse JSON itself: tests use jq (apt-get install jq in CI).

cli_setup() {
    if [ $# -lt 2 ]; then
        echo "usage: bash $0 <path-to-multiflow> <source-dir>" >&2
        exit 2
    fi
    MF=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    SRC=$(cd "$2" && pwd)
    if [ ! -x "$MF" ]; then
        echo "FAIL: $MF is not an executable" >&2
        exit 1
    fi
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/mf-cli-test.XXXXXX")
    trap 'rm -rf "$TMP"' EXIT
    N_FAIL=0
    N_CHECK=0
}

need_jq() {
    if ! command -v jq >/dev/null 2>&1; then
        echo "FAIL: jq is required by this test (apt-get install jq)" >&2
        exit 1
    fi
}

fail() {
    echo "FAIL: $*" >&2
    N_FAIL=$((N_FAIL + 1))
}

ok() {
    N_CHECK=$((N_CHECK + 1))
}

# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what=$1
    shift
    if "$@"; then ok; else fail "$what"; fi
}

# run_cmd NAME COMMAND...: runs COMMAND with stdout/stderr in $TMP/NAME.out/.err, exit status in RC.
run_cmd() {
    local name=$1
    shift
    RC=0
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || RC=$?
    OUT="$TMP/$name.out"
    ERR="$TMP/$name.err"
}

# expect_error NAME 'needle1|needle2...' COMMAND...: the command must exit non-zero, print nothing on
# stdout, and its stderr must contain every '|'-separated needle (fixed strings, case-sensitive).
# It must also not crash (exit status >= 128: signal, e.g. an abort or a sanitizer trap).
expect_error() {
    local name=$1 needles=$2
    shift 2
    run_cmd "$name" "$@"
    local bad=0
    if [ "$RC" -eq 0 ]; then
        fail "$name: exit status 0, expected an error"
        bad=1
    elif [ "$RC" -ge 128 ]; then
        fail "$name: killed by a signal (exit status $RC)"
        bad=1
    fi
    if grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$ERR"; then
        fail "$name: a sanitizer reported an error"
        bad=1
    fi
    if [ -s "$OUT" ]; then
        fail "$name: stdout is not empty ($(wc -c <"$OUT") bytes): $(head -c 200 "$OUT")"
        bad=1
    fi
    local rest=$needles n
    while [ -n "$rest" ]; do
        n=${rest%%|*}
        if [ "$n" = "$rest" ]; then rest=""; else rest=${rest#*|}; fi
        if [ -n "$n" ] && ! grep -qF -- "$n" "$ERR"; then
            fail "$name: stderr does not mention '$n'"
            bad=1
        fi
    done
    if [ ! -s "$ERR" ]; then
        fail "$name: stderr is empty"
        bad=1
    fi
    if [ $bad -ne 0 ]; then
        echo "  command: $*" >&2
        echo "  exit status: $RC; stderr:" >&2
        sed 's/^/    /' "$ERR" | head -20 >&2
    else
        ok
        echo "ok: $name: $(head -n 1 "$ERR")"
    fi
}

# st_header_len FILE: the u64 little-endian header length of a safetensors file.
st_header_len() {
    od -An -tu8 -N8 "$1" | tr -d ' \n'
}

# st_json FILE: the JSON header of a safetensors file.
st_json() {
    local n
    n=$(st_header_len "$1")
    head -c $((8 + n)) "$1" | tail -c +9
}

# st_vals FILE NAME [FMT]: the values of tensor NAME, one per line (od type FMT, default f4 = F32).
st_vals() {
    local n b e
    n=$(st_header_len "$1")
    read -r b e < <(st_json "$1" | jq -r --arg k "$2" '.[$k].data_offsets | "\(.[0]) \(.[1])"')
    od -An -v -t "${3:-f4}" -j $((8 + n + b)) -N $((e - b)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}

# st_patch IN OUT SED_EXPR: copies a safetensors file, applying SED_EXPR to its JSON header only.
# The edited header must keep its byte length, so every offset stays valid; fails loudly otherwise.
st_patch() {
    local in=$1 out=$2 expr=$3 n
    n=$(st_header_len "$in")
    head -c 8 "$in" >"$out"
    head -c $((8 + n)) "$in" | tail -c +9 >"$TMP/.hdr"
    LC_ALL=C sed -e "$expr" "$TMP/.hdr" >"$TMP/.hdr2"
    if cmp -s "$TMP/.hdr" "$TMP/.hdr2"; then
        echo "st_patch: '$expr' changed nothing in the header of $in" >&2
        exit 1
    fi
    # GNU sed keeps a missing final newline, so an equal-length edit leaves the length unchanged.
    if [ "$(wc -c <"$TMP/.hdr2")" -ne "$n" ]; then
        echo "st_patch: '$expr' changed the header length of $in" >&2
        exit 1
    fi
    cat "$TMP/.hdr2" >>"$out"
    tail -c +$((9 + n)) "$in" >>"$out"
}

# st_set_header_len FILE N: overwrites the 8-byte header length with N (little-endian).
st_set_header_len() {
    local f=$1 n=$2 i b=""
    for i in 0 1 2 3 4 5 6 7; do
        b="$b$(printf '\\%03o' $(((n >> (8 * i)) & 255)))"
    done
    printf "$b" | dd of="$f" bs=1 count=8 conv=notrunc status=none
}

# copy_model NAME DEST: copies data/models/NAME to DEST (a directory) and prints nothing.
copy_model() {
    mkdir -p "$2"
    cp "$SRC/data/models/$1"/* "$2"/
}

cli_finish() {
    if [ "$N_FAIL" -ne 0 ]; then
        echo "$0: $N_FAIL check(s) failed, $N_CHECK passed" >&2
        exit 1
    fi
    echo "$0: all $N_CHECK checks passed"
}
