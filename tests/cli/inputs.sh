#!/usr/bin/env bash
# tests/cli/inputs.sh: inputs stay inside their bounds, and everything checkable is checked before
# the expensive work (issue 9, items 5 and 6).
#
# - Image paths of an annotation file resolve inside --images: '..' escapes (to files that exist
#   or not), absolute paths, symlinks to files and directories outside; --allow-outside-root lifts
#   it. Messages never echo a file's contents (a text file named as an image).
# - --max-pixels refuses an image from its header.
# - Every verb that reads a data set checks all of its images (the bad one is the LAST pair) and its
#   output location before the first forward pass: MF_TEST_PAUSE=batch:1 would create a flag file
#   at the first batch read (io/fs.h mf_fs_test_pause), so the flag must not exist afterwards.
# - Duplicate sparsities after normalisation are refused when the options are parsed.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

M=$SRC/data/models/blip-tiny
SH=$SRC/data/shapes
IMG=$TMP/img
mkdir -p "$IMG" "$TMP/outside"
cp "$SH"/images/000[1-4].png "$IMG/"
printf 'root:x:0:0:SECRET-CONTENT:/root:/bin/bash\n' >"$TMP/outside/secret.png"
cp "$SH/images/0005.png" "$TMP/outside/ok.png"
ln -s "$TMP/outside/secret.png" "$IMG/link-file.png"
ln -s "$TMP/outside" "$IMG/link-dir"

# ann FILE IMAGE: four good pairs, then one whose image is IMAGE
ann() {
    jq --arg im "$2" '.[0:4] | map(.image |= sub("^images/"; "")) + [{"image": $im, "caption": "a red square"}]' \
        "$SH/annotations.json" >"$1"
}

# before_forward NAME NEEDLES VERB-ARGS...: an error naming NEEDLES, and no batch was ever read
before_forward() {
    local name=$1 needles=$2
    shift 2
    rm -f "$TMP/flag"
    MF_TEST_PAUSE=batch:1 MF_TEST_PAUSE_FILE=$TMP/flag expect_error "$name" "$needles" "$@"
    check "$name: failed before the first forward pass" test ! -e "$TMP/flag"
    if grep -q SECRET-CONTENT "$ERR"; then fail "$name: the message shows the file's contents"; fi
}

# --- paths outside the root -----------------------------------------------------------------------
i=0
for im in ../outside/ok.png ../../../../../../../etc/passwd ../outside/missing.png "$TMP/outside/ok.png" \
    link-file.png link-dir/ok.png; do
    i=$((i + 1))
    ann "$TMP/esc$i.json" "$im"
    before_forward "outside-root-$i" "esc$i.json: record 5|outside the image root|--allow-outside-root" \
        "$MF" score --model "$M" --data "$TMP/esc$i.json" --images "$IMG"
done
# allowed: ok.png outside the root scores; the secret file is refused as not an image, unquoted
ann "$TMP/allowed.json" "$TMP/outside/ok.png"
run_cmd allowed "$MF" score --model "$M" --data "$TMP/allowed.json" --images "$IMG" --allow-outside-root
check "--allow-outside-root accepts an image outside the root ($(head -c 200 "$ERR"))" test "$RC" -eq 0
n=$(jq '[.[] | .caption | if type == "array" then length else 1 end] | add' "$TMP/allowed.json")
check "and scores all $n pairs" test "$(wc -l <"$OUT")" -eq "$n"
ann "$TMP/secret.json" link-file.png
before_forward secret-not-echoed "link-file.png|not a PNG or JPEG file" \
    "$MF" score --model "$M" --data "$TMP/secret.json" --images "$IMG" --allow-outside-root
# without --images the root is the current directory
ann "$TMP/cwd.json" "$IMG/0001.png"
run_cmd cwd-root bash -c 'cd "$1" && "$2" score --model "$3" --data "$4"' _ "$IMG" "$MF" "$M" "$TMP/cwd.json"
check "no --images: paths inside the current directory are fine ($(head -c 200 "$ERR"))" test "$RC" -eq 0
expect_error cwd-root-outside "record 5|outside the image root" \
    bash -c 'cd "$1" && "$2" score --model "$3" --data "$4"' _ "$IMG" "$MF" "$M" "$TMP/esc4.json"

# --- pixel limit from the header --------------------------------------------------------------------
ann "$TMP/good.json" 0004.png
before_forward max-pixels "0001.png|more than the limit of 1000|--max-pixels" \
    "$MF" score --model "$M" --data "$TMP/good.json" --images "$IMG" --max-pixels 1000
expect_error max-pixels-range "max-pixels" "$MF" score --model "$M" --data "$TMP/good.json" --images "$IMG" \
    --max-pixels 0

# --- every verb: the last image is bad, or the output cannot be written: nothing runs --------------
printf 'not an image' >"$IMG/bad.png"
ann "$TMP/lastbad.json" bad.png
A=(--data "$TMP/lastbad.json" --images "$IMG" --threads 1 --quiet)
before_forward stats-lastbad "record 5|bad.png|not a PNG" "$MF" stats --model "$M" "${A[@]}" --out "$TMP/s.st"
before_forward grad-lastbad "record 5|bad.png" "$MF" grad --model "$M" "${A[@]}" --out "$TMP/g.st"
before_forward prune-lastbad "record 5|bad.png" "$MF" prune --model "$M" "${A[@]}" --method multiflow \
    --sparsity 50 --out "$TMP/p"
before_forward itersnip-lastbad "record 5|bad.png" "$MF" prune --model "$M" "${A[@]}" --method itersnip \
    --sparsity 50 --out "$TMP/p"
before_forward finetune-lastbad "record 5|bad.png" "$MF" finetune --model "$M" "${A[@]}" --task retrieval \
    --steps 2 --batch 2 --out "$TMP/f"
before_forward eval-lastbad "record 5|bad.png" "$MF" eval retrieval --model "$M" "${A[@]}"
before_forward score-lastbad "record 5|bad.png" "$MF" score --model "$M" "${A[@]}"
check "nothing written" test -z "$(ls -A "$TMP" | grep -E '^(s\.st|g\.st|p|f)$|^\.' || true)"

G=(--data "$TMP/good.json" --images "$IMG" --threads 1 --quiet)
before_forward stats-unwritable "$TMP/none/s.st" "$MF" stats --model "$M" "${G[@]}" --out "$TMP/none/s.st"
before_forward grad-unwritable "$TMP/none/g.st" "$MF" grad --model "$M" "${G[@]}" --out "$TMP/none/g.st"
before_forward prune-unwritable "$TMP/none/p" "$MF" prune --model "$M" "${G[@]}" --method multiflow \
    --sparsity 50 --out "$TMP/none/p"
before_forward chita-tmp-unwritable "$TMP/none" "$MF" prune --model "$M" "${G[@]}" --method chita \
    --sparsity 50 --out "$TMP/p" --tmp "$TMP/none"
before_forward finetune-unwritable "$TMP/none/f" "$MF" finetune --model "$M" "${G[@]}" --task retrieval \
    --steps 2 --batch 2 --out "$TMP/none/f"
check "no output directory left by the refused runs" test ! -e "$TMP/p"

# --- duplicate sparsities after normalisation: refused while parsing (no model is loaded) ----------
for sp in 63,0.63 0.5,50 10,10.0 0.25,25%; do
    expect_error "dup-sparsity-$sp" "--sparsity|twice" "$MF" prune --model "$TMP/no-model" --method omp \
        --sparsity "$sp" --out "$TMP/d"
done
cli_finish
