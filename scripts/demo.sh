#!/usr/bin/env bash
# The README's first command: installs the dependencies, builds, and runs multiflow on the bundled
# tiny BLIP models (data/models/) and the bundled synthetic image-caption set (data/shapes/):
# inspect, score the first pairs, and zero-shot retrieval.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
mf=build/multiflow
data=(--data data/shapes/annotations.json --images data/shapes)
set -x
$mf inspect --model data/models/blip-tiny | head -n 16
$mf score --model data/models/blip-tiny "${data[@]}" --pairs 4
$mf score --model data/models/blip-tiny-hf --image data/shapes/images/0001.png \
          --text "a orange circle and a red square on a gray background"
$mf eval retrieval --model data/models/blip-tiny-hf "${data[@]}"
$mf eval retrieval --model data/models/blip-tiny "${data[@]}"
