#!/usr/bin/env bash
# multiflow world end to end: a small world is written with every file the issue lists; the same seed
# gives the same bytes at 1 and 2 threads and the committed file hash; world.json records seed, counts
# and version; the annotation files and images load in another verb (score, tiny model); an existing
# output is refused without --force and replaced with it; bad options fail with nothing written.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

W=(world --pretrain 50 --calib 10 --train 12 --test 20 --novel 8 --size 32)
# sha256 over every file's name and bytes (PNG bytes depend on zlib's deflate; Debian's zlib 1.2.13).
# Update together with tests/world/test_world.c SMALL_WORLD_HASH when the format changes.
FILES_HASH=4c45f9fbf73e3470316c0a5ae0acc3920a766471c239c8b57d25e8ae00749f58

tree_hash() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1); }

run_cmd w1 "$MF" "${W[@]}" --seed 5 --threads 1 --out "$TMP/w1"
check "world exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "summary on stdout" grep -q "^world: 100 images" "$OUT"
for f in pretrain.jsonl calib.jsonl retrieval_train.json retrieval_test.json caption_train.json caption_test.json \
         vqa_train.json vqa_test.json answers.json novel_test.json scenes.jsonl vocab.txt world.json; do
    check "$f written" test -s "$TMP/w1/$f"
done
for d in pretrain calib train test novel; do check "$d/ images" test -s "$TMP/w1/$d/000000.png"; done
check "50 pretrain images" test "$(ls "$TMP/w1/pretrain" | wc -l)" -eq 50
check "32 px PNG" test "$(od -An -tu1 -j16 -N4 "$TMP/w1/test/000003.png" | tr -s ' ')" = " 0 0 0 32"
check "pretrain.jsonl: two captions a line" test "$(jq -s '[.[].caption | length] | unique' "$TMP/w1/pretrain.jsonl" | jq -c .)" = "[2]"
check "retrieval_test: 20 images, 5 captions" test "$(jq '[length, (.[0].caption | length)] | @csv' -r "$TMP/w1/retrieval_test.json")" = "20,5"
check "vqa fields" test "$(jq -c '.[0] | keys' "$TMP/w1/vqa_test.json")" = '["answer","answer_type","image","question","question_id","question_type"]'
check "answers.json: 29 answers" test "$(jq length "$TMP/w1/answers.json")" -eq 29
check "world.json: version, seed, counts" test "$(jq -c '[.version, .seed, .counts.pretrain, .counts.test, .counts.novel]' "$TMP/w1/world.json")" = "[1,5,50,20,8]"
check "vocab.txt starts with [PAD] [UNK] [CLS] [SEP] [MASK]" test "$(head -5 "$TMP/w1/vocab.txt" | tr '\n' ' ')" = "[PAD] [UNK] [CLS] [SEP] [MASK] "
check "vocab.txt: no [DEC]/[ENC] lines (the loader appends them)" bash -c "! grep -q '^\[DEC\]\|^\[ENC\]' '$TMP/w1/vocab.txt'"

# determinism: threads, committed hash, JSON summary
run_cmd w2 "$MF" "${W[@]}" --seed 5 --threads 2 --out "$TMP/w2" --json
check "world --threads 2 exits 0" test "$RC" -eq 0
check "1 and 2 threads: identical trees" diff -r "$TMP/w1" "$TMP/w2"
h=$(tree_hash "$TMP/w1")
check "file hash $h equals the committed one" test "$h" = "$FILES_HASH"
check "--json content_hash = world.json's" test "$(jq -r .content_hash "$OUT")" = "$(jq -r .content_hash "$TMP/w1/world.json")"
check "--json images" test "$(jq .images "$OUT")" -eq 100

# another verb reads the annotation files and the PNGs (the vocabulary's load: tests/world/test_world.c)
run_cmd score "$MF" score --model "$SRC/data/models/blip-tiny" --data "$TMP/w1/retrieval_test.json" --images "$TMP/w1" --pairs 6 --threads 1 --quiet
check "score reads the world ($(tail -2 "$ERR"))" test "$RC" -eq 0
check "score: 6 pairs" test "$(wc -l <"$OUT")" -eq 6

# --force semantics
before=$(tree_hash "$TMP/w1")
expect_error exists 'exists|--force' "$MF" "${W[@]}" --seed 6 --out "$TMP/w1"
check "refused run left the directory as it was" test "$(tree_hash "$TMP/w1")" = "$before"
run_cmd force "$MF" "${W[@]}" --seed 6 --out "$TMP/w1" --force --quiet
check "--force replaces it" test "$RC" -eq 0 -a "$(jq .seed "$TMP/w1/world.json")" -eq 6
check "other seed, other world" test "$(tree_hash "$TMP/w1")" != "$before"

# bad input: clear error, nothing written
expect_error size '--size' "$MF" world --out "$TMP/bad" --size 8
expect_error test0 '--test' "$MF" world --out "$TMP/bad" --test 0
expect_error noout '--out' "$MF" world --size 32
expect_error operand 'unexpected' "$MF" world --out "$TMP/bad" extra
expect_error unknown 'model' "$MF" world --out "$TMP/bad" --model x
check "nothing written by the failed runs" test ! -e "$TMP/bad"
check "no temporary directories left" test -z "$(ls -A "$TMP" | grep '^\.' || true)"

cli_finish
