#!/usr/bin/env bash
# tests/cli/options.sh: the smaller items of issue 9 (item 7): what --sparsity values mean, options
# given twice, the unknown-method message, --json on stats/prune/apply, what stats and prune report
# on stdout, sparsity.svg's title, requested levels and tower labels, one caption length limit for
# score --text and annotation files, --heads overriding config.json as its help says, and README
# paths that resolve inside the repository.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

M=$SRC/data/models/blip-tiny
HF=$SRC/data/models/blip-tiny-hf
jqe() { jq -e "$@" >/dev/null; }
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes")

# --- --sparsity: a fraction below 1, a percentage from 1 (or with %) --------------------------------
run_cmd sp "$MF" prune --model "$M" --method omp --sparsity 1,0.5,63%,0.5% --out "$TMP/sp" --quiet
check "prune with 1,0.5,63%,0.5% ($(cat "$ERR"))" test "$RC" -eq 0
check "1 is 1 %, 0.5 is 50 %, 63% is 63 %, 0.5% is 0.5 %" \
    test "$(jq -r '[.runs[].name] | join(" ")' "$TMP/sp/summary.json")" = "omp-1 omp-50 omp-63 omp-0.5"
for r in 1:0.01 50:0.5 63:0.63 0.5:0.005; do
    s=$(jq ".overall.sparsity" "$TMP/sp/omp-${r%%:*}/report.json")
    check "omp-${r%%:*} achieved $s ~ ${r#*:}" awk -v s="$s" -v w="${r#*:}" 'BEGIN { exit !(s > w - 1e-4 && s < w + 1e-4) }'
done
check "--help says which is which" bash -c "'$MF' prune --help | grep -q 'so 1 = 1 %, not'"
expect_error sp-ambiguous "'1.0' is ambiguous" "$MF" prune --model "$M" --method omp --sparsity 1.0 --out "$TMP/x"
expect_error sp-100 "not below 100" "$MF" prune --model "$M" --method omp --sparsity 100 --out "$TMP/x"
expect_error sp-100pct "not below 100" "$MF" prune --model "$M" --method omp --sparsity 100% --out "$TMP/x"
expect_error sp-negative "--sparsity" "$MF" prune --model "$M" --method omp --sparsity -0.1 --out "$TMP/x"
expect_error sp-twice "--sparsity given twice" "$MF" prune --model "$M" --method omp --sparsity 50 \
    --sparsity 60 --out "$TMP/x"
expect_error method-twice "--method given twice" "$MF" prune --model "$M" --method omp --method l2 \
    --sparsity 50 --out "$TMP/x"
run_cmd unknown "$MF" prune --model "$M" --method nope --sparsity 50 --out "$TMP/x"
for meth in multiflow omp lmp l2 lamp rand snip itersnip tamt chita chita++; do
    check "unknown-method message lists $meth" grep -q "[ (]$meth[,)]" "$ERR"
done
check "nothing written by the refused runs" test ! -e "$TMP/x"

# --- what prune, stats and apply report; --json on each --------------------------------------------
run_cmd prune "$MF" prune --model "$M" "${D[@]}" --method multiflow,omp --sparsity 50,75 --out "$TMP/p" --quiet
check "prune exits 0" test "$RC" -eq 0
check "prune prints one line per run" test "$(wc -l <"$OUT")" -eq 4
for run in multiflow-50 multiflow-75 omp-50 omp-75; do
    pct=$(jq -r ".runs[] | select(.name == \"$run\") | .overall.sparsity * 100 | . * 1000 | round / 1000" "$TMP/p/summary.json")
    check "$run line: achieved sparsity and time" grep -qE "^$run +[0-9.]+ % of [0-9]+ prunable weights pruned .*, [0-9.]+ s" "$OUT"
    check "$run line matches summary.json ($pct)" \
        awk -v r="$run" -v p="$pct" '$1 == r { f = 1; if ($2 < p - 0.001 || $2 > p + 0.001) exit 1 } END { exit !f }' "$OUT"
done
run_cmd prune-json "$MF" prune --model "$M" --method omp --sparsity 50 --out "$TMP/pj" --quiet --json
check "prune --json prints summary.json" bash -c "jq -S . '$OUT' | cmp -s - <(jq -S . '$TMP/pj/summary.json')"
run_cmd stats "$MF" stats --model "$M" "${D[@]}" --out "$TMP/st" --quiet
n=$(jq length "$SRC/data/shapes/annotations.json")
check "stats reports what it wrote ($(cat "$OUT"))" grep -q "^$TMP/st: calibration statistics .* of [0-9]* prunable tensors from" "$OUT"
run_cmd stats-json "$MF" stats --model "$M" "${D[@]}" --out "$TMP/st2" --quiet --json
check "stats --json" jqe ".out == \"$TMP/st2\" and .tensors > 0 and .pairs >= $n" "$OUT"
run_cmd merge-json "$MF" stats --merge "$TMP/st" "$TMP/st2" --out "$TMP/st3" --json
check "stats --merge --json" jqe ".out == \"$TMP/st3\" and (.merged | length) == 2" "$OUT"
run_cmd apply-json "$MF" apply --model "$M" --masks "$TMP/p/omp-50/masks.safetensors" --out "$TMP/ap" --json
check "apply --json" jqe '.sparsity == 0.5 and .pruned * 2 == .params' "$OUT"

# --- sparsity.svg: the model, the requested levels, only the towers shown ---------------------------
SVG=$TMP/p/sparsity.svg
check "svg names the model" grep -q "Layer-wise sparsity per modality: $M<" "$SVG"
check "svg marks 50 % and 75 % in both panels" test "$(grep -c 'requested \(50\|75\) %' "$SVG")" -eq 4
check "the vision panel is labelled vision only" grep -q '>vision encoder layer<' "$SVG"
check "the text panel names the decoder it shows" grep -q '>text encoder layer, d = text decoder layer<' "$SVG"
run_cmd prune-hf "$MF" prune --model "$HF" --method omp --sparsity 50 --out "$TMP/phf" --quiet
check "a model without decoder: no decoder in the labels" bash -c "! grep -q decoder '$TMP/phf/sparsity.svg'"

# --- one caption length limit ------------------------------------------------------------------------
IMG=$SRC/data/shapes/images/0001.png
long=$(head -c 10001 /dev/zero | tr '\0' a)
expect_error text-empty "--text is empty|1 to 10000 bytes" "$MF" score --model "$M" --image "$IMG" --text ""
expect_error text-long "--text is too long|1 to 10000 bytes" "$MF" score --model "$M" --image "$IMG" --text "$long"
printf '[{"image": "images/0001.png", "caption": "%s"}]\n' "$long" >"$TMP/long.json"
expect_error caption-long "10001 bytes|10000-byte limit" "$MF" score --model "$M" --data "$TMP/long.json" \
    --images "$SRC/data/shapes"
run_cmd text-max "$MF" score --model "$M" --image "$IMG" --text "${long:1}"
check "--text of exactly 10000 bytes is accepted" test "$RC" -eq 0
expect_error image-before-model "nope.png" "$MF" score --model "$TMP/no-model" --image "$TMP/nope.png" --text "a"

# --- --heads overrides config.json, as its help says ----------------------------------------------
check "--help describes --heads as overriding config.json" bash -c "'$MF' inspect --help | grep -q 'overriding config.json'"
run_cmd heads "$MF" inspect --model "$HF" --heads 4 --json
check "--heads 4 on a checkpoint with config.json" jqe '.vision.heads == 4 and .text.heads == 4' "$OUT"
expect_error heads-bad "not divisible by 3 heads" "$MF" inspect --model "$HF" --heads 3

# --- README: every repository path it names exists; nothing outside the repository -----------------
check "README names no path outside the repository" bash -c "! grep -q '\.\./' '$SRC/README.md'"
for p in $(grep -o '`[A-Za-z0-9_.+-]*/[A-Za-z0-9_./+-]*`' "$SRC/README.md" | tr -d '`' | sort -u); do
    case $p in
    src/* | docs/* | tests/* | data/* | include/* | scripts/* | bench/* | tools/*) check "README path $p exists" test -e "$SRC/$p" ;;
    esac
done
cli_finish
