#!/usr/bin/env bash
# multiflow prune / apply / stats end to end on the bundled tiny BLIP (original layout: decoder,
# tied copies, momentum copies) and the bundled shapes data: outputs, exact sparsity, loadability,
# reuse of statistics, and bad input (clear error, nothing written).
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

M=$SRC/data/models/blip-tiny
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes")
O=$TMP/pruned

run_cmd prune "$MF" prune --model "$M" "${D[@]}" --method multiflow,omp,lmp,l2,lamp,rand \
    --sparsity 63,75,0.9 --out "$O" --save-stats --save-scores --threads 2 --quiet
check "prune exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
for f in summary.json sparsity.svg stats.safetensors; do check "$f written" test -s "$O/$f"; done
check "summary lists 18 runs" test "$(jq '.runs | length' "$O/summary.json")" -eq 18
for meth in multiflow omp lmp l2 lamp rand; do
    for pct in 63 75 90; do
        R=$O/$meth-$pct
        for f in model.safetensors masks.safetensors report.json vocab.txt scores.safetensors; do
            check "$meth-$pct/$f" test -s "$R/$f"
        done
        # exact-k per scope: global methods prune floor(s * n) overall; lmp floor(s * n_l) per tensor;
        # multiflow floor(s * n_m) per modality
        n=$(jq '.overall.params' "$R/report.json")
        p=$(jq '.overall.pruned' "$R/report.json")
        case $meth in
        lmp) want=$(jq "[.tensors[] | (.shape[0] * .shape[1] * $pct / 100 | floor)] | add" "$R/report.json") ;;
        multiflow) want=$(jq "[.modalities[] | (.params * $pct / 100 | floor)] | add" "$R/report.json") ;;
        *) want=$((n * pct / 100)) ;;
        esac
        check "$meth-$pct: pruned $p == $want (exact k over its scopes)" test "$p" -eq "$want"
        if [ "$meth" = lmp ]; then
            bad=$(jq "[.tensors[] | select(.pruned != (.shape[0] * .shape[1] * $pct / 100 | floor))] | length" "$R/report.json")
            check "lmp-$pct: every tensor at floor(s * n_l)" test "$bad" -eq 0
        fi
        # the pruned checkpoint loads and inspect sees the same sparsity
        run_cmd "inspect-$meth-$pct" "$MF" inspect --model "$R" --json
        check "$meth-$pct loads" test "$RC" -eq 0
        z=$(jq '[.tensors[] | select(.prunable) | .sparsity] | length' "$OUT")
        check "$meth-$pct: inspect lists prunable tensors" test "$z" -gt 0
        s=$(jq '.params.sparsity' "$OUT")
        check "$meth-$pct: inspect sparsity $s ~ $pct%" \
            awk -v s="$s" -v p="$pct" 'BEGIN { exit !(s >= p / 100 - 1e-3 && s <= p / 100 + 1e-3) }'
    done
done
# multiflow: every modality at s (per-modality budget)
for pct in 63 75 90; do
    for mod in vision text; do
        n=$(jq ".modalities.$mod.params" "$O/multiflow-$pct/report.json")
        p=$(jq ".modalities.$mod.pruned" "$O/multiflow-$pct/report.json")
        check "multiflow-$pct $mod: $p == floor($pct% of $n)" test "$p" -eq $((n * pct / 100))
    done
done
# momentum and tied decoder copies carry the mask: the pruned model's inspect counts zeros there
run_cmd score-pruned "$MF" score --model "$O/multiflow-63" "${D[@]}" --pairs 4
check "pruned checkpoint scores" test "$RC" -eq 0 -a "$(wc -l <"$OUT")" -eq 4
run_cmd eval-pruned "$MF" eval retrieval --model "$O/multiflow-63" "${D[@]}" --k 16 --json
check "eval retrieval on the pruned model" test "$RC" -eq 0

# --stats reuses the saved statistics: identical masks
run_cmd reuse "$MF" prune --model "$M" --stats "$O/stats.safetensors" --method multiflow --sparsity 75 \
    --out "$TMP/reuse" --quiet
check "prune --stats exits 0" test "$RC" -eq 0
check "prune --stats gives the same masks" cmp -s "$O/multiflow-75/masks.safetensors" "$TMP/reuse/multiflow-75/masks.safetensors"

# stats split in two halves and merged == stats of the whole set (masks identical)
jq '.[0:32]' "$SRC/data/shapes/annotations.json" >"$TMP/a.json"
jq '.[32:]' "$SRC/data/shapes/annotations.json" >"$TMP/b.json"
run_cmd sa "$MF" stats --model "$M" --data "$TMP/a.json" --images "$SRC/data/shapes" --out "$TMP/a.st" --quiet
check "stats A" test "$RC" -eq 0
run_cmd sb "$MF" stats --model "$M" --data "$TMP/b.json" --images "$SRC/data/shapes" --out "$TMP/b.st" --quiet
check "stats B" test "$RC" -eq 0
run_cmd merge "$MF" stats --merge "$TMP/a.st" "$TMP/b.st" --out "$TMP/ab.st"
check "stats --merge" test "$RC" -eq 0
run_cmd merged "$MF" prune --model "$M" --stats "$TMP/ab.st" --method multiflow --sparsity 75 --out "$TMP/merged" --quiet
check "prune with merged stats" test "$RC" -eq 0
check "merged stats give the same masks as one pass" \
    cmp -s "$O/multiflow-75/masks.safetensors" "$TMP/merged/multiflow-75/masks.safetensors"

# apply: the masks of a run reproduce its checkpoint byte for byte
run_cmd apply "$MF" apply --model "$M" --masks "$O/lamp-75/masks.safetensors" --out "$TMP/applied" --quiet
check "apply exits 0" test "$RC" -eq 0
# same tensors byte for byte; only the metadata (method, sparsity) differs
data_of() { tail -c +$((9 + $(st_header_len "$1"))) "$1"; }
check "apply reproduces the pruned checkpoint's tensors" cmp -s <(data_of "$O/lamp-75/model.safetensors") <(data_of "$TMP/applied/model.safetensors")
check "apply copies the masks" cmp -s <(data_of "$O/lamp-75/masks.safetensors") <(data_of "$TMP/applied/masks.safetensors")

# HF layout (no decoder): prune works and keeps config.json
run_cmd hf "$MF" prune --model "$SRC/data/models/blip-tiny-hf" "${D[@]}" --pairs 16 --method multiflow,omp \
    --sparsity 50 --out "$TMP/hf" --quiet
check "prune HF layout" test "$RC" -eq 0
check "HF config.json copied" cmp -s "$SRC/data/models/blip-tiny-hf/config.json" "$TMP/hf/multiflow-50/config.json"

# bad input: clear error, nothing written
expect_error unknown-method "unknown method 'snipp'" "$MF" prune --model "$M" --method snipp --sparsity 50 --out "$TMP/x1"
check "nothing written (unknown method)" test ! -e "$TMP/x1"
expect_error sparsity-100 "--sparsity" "$MF" prune --model "$M" --method omp --sparsity 100 --out "$TMP/x2"
expect_error sparsity-neg "--sparsity" "$MF" prune --model "$M" --method omp --sparsity -5 --out "$TMP/x3"
expect_error no-data "needs calibration data" "$MF" prune --model "$M" --method multiflow --sparsity 50 --out "$TMP/x4"
check "nothing written (sparsity, data)" test ! -e "$TMP/x2" -a ! -e "$TMP/x3" -a ! -e "$TMP/x4"
expect_error exists "output directory exists" "$MF" prune --model "$M" --method omp --sparsity 50 --out "$O"
check "existing dir untouched" test "$(jq '.runs | length' "$O/summary.json")" -eq 18
expect_error other-stats "stats-hf.st" "$MF" prune --model "$M" --stats "$TMP/stats-hf.st" --method multiflow --sparsity 50 --out "$TMP/x5"
"$MF" stats --model "$SRC/data/models/blip-tiny-hf" "${D[@]}" --pairs 8 --out "$TMP/stats-hf.st" --quiet
expect_error other-model-stats "stats-hf.st" "$MF" prune --model "$M" --stats "$TMP/stats-hf.st" --method multiflow --sparsity 50 --out "$TMP/x5"
check "nothing written (stats of another model)" test ! -e "$TMP/x5"
head -c 300 "$O/omp-63/masks.safetensors" >"$TMP/corrupt.st"
expect_error corrupt-masks "corrupt.st" "$MF" apply --model "$M" --masks "$TMP/corrupt.st" --out "$TMP/x6"
check "nothing written (corrupt masks)" test ! -e "$TMP/x6"
expect_error wrong-masks "no mask for prunable tensor" "$MF" apply --model "$M" --masks "$TMP/stats-hf.st" --out "$TMP/x7"
check "nothing written (wrong masks)" test ! -e "$TMP/x7"

cli_finish
