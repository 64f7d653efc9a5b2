#!/usr/bin/env bash
# tests/cli/signals.sh: interrupted runs leave nothing behind (issue 9, item 4).
#
# Each writing verb (prune, stats, grad, finetune, apply) is stopped by SIGINT, SIGTERM and SIGHUP
# at two points: during the forward passes (MF_TEST_PAUSE=batch:N, the N-th batch of pairs read;
# apply has no forward, so its first point is the first output file) and while writing
# (MF_TEST_PAUSE=commit:N, the N-th output file written but not yet renamed). The hook (io/fs.h
# mf_fs_test_pause) creates a flag file and sleeps; the test waits for the flag, sends the signal
# and checks: exit status 128+signo, the message on stderr, nothing on stdout, and an empty output
# directory (no hidden temporaries). No timing is involved: the signal always lands at the hook.
# Then: SIGXFSZ from 'ulimit -f' (status 153, message, no debris), the same limit with SIGXFSZ
# ignored (the write fails with EFBIG: 'File too large', status 1, no debris), and a run killed by
# SIGKILL, whose temporary directory the next run writing the same output removes.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"

M=$SRC/data/models/blip-tiny
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes")
if ! env --default-signal=INT true 2>/dev/null; then
    echo "FAIL: env --default-signal is required (coreutils >= 8.31)" >&2
    exit 1
fi

# make_masks: masks for apply, from one data-free run
"$MF" prune --model "$M" --method omp --sparsity 50 --out "$TMP/masks" --quiet >/dev/null
MASKS=$TMP/masks/omp-50/masks.safetensors

# verb_cmd VERB OUT: the command line of one verb writing OUT
verb_cmd() {
    case $1 in
    prune) CMD=("$MF" prune --model "$M" "${D[@]}" --method multiflow,omp --sparsity 50,60 --out "$2") ;;
    stats) CMD=("$MF" stats --model "$M" "${D[@]}" --out "$2") ;;
    grad) CMD=("$MF" grad --model "$M" "${D[@]}" --pairs 24 --out "$2") ;;
    finetune) CMD=("$MF" finetune --model "$M" "${D[@]}" --task retrieval --steps 3 --out "$2") ;;
    apply) CMD=("$MF" apply --model "$M" --masks "$MASKS" --out "$2") ;;
    esac
    CMD+=(--threads 2 --quiet "${EXTRA[@]}")
}
EXTRA=()

# interrupt NAME SIGNAL POINT VERB: runs VERB until the hook POINT, sends SIGNAL, checks the result.
interrupt() {
    local name=$1 sig=$2 point=$3 verb=$4 w=$TMP/w/$1
    mkdir -p "$w"
    rm -f "$TMP/flag"
    verb_cmd "$verb" "$w/out"
    # background jobs of a script start with SIGINT ignored: give the child the default back
    MF_TEST_PAUSE=$point MF_TEST_PAUSE_FILE=$TMP/flag env --default-signal=INT "${CMD[@]}" \
        >"$TMP/$name.out" 2>"$TMP/$name.err" &
    local pid=$! i rc=0
    for i in $(seq 1200); do
        [ -e "$TMP/flag" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ ! -e "$TMP/flag" ]; then
        wait "$pid" || true
        fail "$name: never reached the hook $point ($(head -c 300 "$TMP/$name.err"))"
        return
    fi
    kill -s "$sig" "$pid"
    { wait "$pid"; } 2>/dev/null || rc=$?
    local want=$((128 + $(kill -l "$sig"))) bad=0
    if [ "$rc" -ne "$want" ]; then fail "$name: exit status $rc, expected $want"; bad=1; fi
    if ! grep -q "(SIG$sig)" "$TMP/$name.err" || ! grep -q "temporary output removed" "$TMP/$name.err"; then
        fail "$name: stderr does not say $sig and that the temporary output was removed: $(cat "$TMP/$name.err")"
        bad=1
    fi
    if [ -s "$TMP/$name.out" ]; then fail "$name: stdout not empty"; bad=1; fi
    local left
    left=$(ls -A "$w" | grep -vx "${interrupt_keep:-}" || true)
    if [ -n "$left" ]; then fail "$name: left behind: $(echo $left)"; bad=1; fi
    [ $bad -eq 0 ] && ok && echo "ok: $name: status $rc, $(head -n 1 "$TMP/$name.err")"
    return 0
}

for sig in INT TERM HUP; do
    interrupt "prune-forward-$sig" "$sig" batch:3 prune
    interrupt "prune-write-$sig" "$sig" commit:5 prune
    interrupt "stats-forward-$sig" "$sig" batch:2 stats
    interrupt "stats-write-$sig" "$sig" commit:1 stats
    interrupt "grad-forward-$sig" "$sig" batch:2 grad
    interrupt "grad-write-$sig" "$sig" commit:1 grad
    interrupt "finetune-forward-$sig" "$sig" batch:5 finetune
    interrupt "finetune-write-$sig" "$sig" commit:2 finetune
    interrupt "apply-first-file-$sig" "$sig" commit:1 apply
    interrupt "apply-write-$sig" "$sig" commit:3 apply
done

# --- file size limit: SIGXFSZ, and EFBIG when the signal is ignored -------------------------------
# limited NAME VERB STATUS NEEDLE PRELUDE: VERB under 'ulimit -f 8' (8 KiB) after PRELUDE
limited() {
    local name=$1 verb=$2 status=$3 needle=$4 prelude=$5 w=$TMP/w/$1
    mkdir -p "$w"
    verb_cmd "$verb" "$w/out"
    run_cmd "$name" bash -c "ulimit -f 8; $prelude exec \"\$@\"" _ "${CMD[@]}"
    check "$name: status $status (was $RC)" test "$RC" -eq "$status"
    check "$name: says '$needle' ($(cat "$ERR"))" grep -qF "$needle" "$ERR"
    check "$name: no temporary path in the message" bash -c "! grep -q '\.mf[0-9]' '$ERR'"
    check "$name: nothing left ($(ls -A "$w"))" test -z "$(ls -A "$w")"
}
for verb in prune stats grad finetune apply; do
    limited "xfsz-$verb" "$verb" 153 "file size limit exceeded (SIGXFSZ" ""
    limited "efbig-$verb" "$verb" 1 "File too large (the file size limit was reached" "trap '' XFSZ;"
done

# --- SIGKILL: the temporary directory stays, recognisable; the next run removes it -----------------
w=$TMP/w/kill
mkdir -p "$w"
rm -f "$TMP/flag"
verb_cmd prune "$w/out"
MF_TEST_PAUSE=commit:5 MF_TEST_PAUSE_FILE=$TMP/flag "${CMD[@]}" >/dev/null 2>&1 &
pid=$!
for i in $(seq 1200); do [ -e "$TMP/flag" ] && break; sleep 0.05; done
kill -KILL "$pid"
{ wait "$pid"; } 2>/dev/null || true
stale=$(ls -A "$w")
check "SIGKILL leaves .out.mf$pid-XXXXXX ($stale)" bash -c "[[ '$stale' =~ ^\.out\.mf$pid-[A-Za-z0-9]{6}$ ]]"
check "with its marker" test -f "$w/$stale/.multiflow-partial"
# a live process's temporary directory is never touched: a fake one with our (live) shell's pid
mkdir "$w/.out.mf$$-abcdef" && touch "$w/.out.mf$$-abcdef/.multiflow-partial"
# an unmarked directory with a dead pid is not ours either
mkdir "$w/.out.mf$pid-unmark"
run_cmd after-kill "$MF" prune --model "$M" --method omp --sparsity 50 --out "$w/out" --quiet
check "the next run succeeds ($(cat "$ERR"))" test "$RC" -eq 0
check "and removed the dead run's directory" test ! -e "$w/$stale"
check "but not a live process's" test -d "$w/.out.mf$$-abcdef"
check "nor an unmarked directory" test -d "$w/.out.mf$pid-unmark"
check "the committed output has no marker" test ! -e "$w/out/.multiflow-partial"

# --- --force over an existing output: interrupted while writing, the old output is unchanged -------
w=$TMP/w/force-INT
mkdir -p "$w"
"$MF" prune --model "$M" --method omp --sparsity 50 --out "$w/out" --quiet >/dev/null
before=$(cd "$w/out" && find . -type f -exec md5sum {} + | sort)
EXTRA=(--force)
interrupt_keep=out interrupt force-INT INT commit:5 prune
EXTRA=()
check "--force interrupted: the old output is intact" test "$(cd "$w/out" && find . -type f -exec md5sum {} + | sort)" = "$before"
cli_finish
