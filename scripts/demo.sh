#!/usr/bin/env bash
# The README's first command: installs the dependencies, builds, and runs the whole workflow on the
# bundled tiny BLIP model (data/models/blip-tiny, original layout; random weights) and the bundled
# synthetic image-caption set (data/shapes/): inspect, score, zero-shot retrieval before pruning,
# MULTIFLOW and magnitude pruning at 63/75/90 %, then inspect and retrieval of a pruned checkpoint.
# Outputs go to out/demo/ (replaced on every run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
mf=build/multiflow
model=data/models/blip-tiny
data=(--data data/shapes/annotations.json --images data/shapes)
mkdir -p out
set -x
$mf inspect --model $model
$mf score --model $model "${data[@]}" --pairs 4
$mf eval retrieval --model $model "${data[@]}"
$mf prune --model $model "${data[@]}" --method multiflow,omp --sparsity 63,75,90 --out out/demo --force
$mf inspect --model out/demo/multiflow-75
$mf eval retrieval --model out/demo/multiflow-75 "${data[@]}"
$mf eval retrieval --model out/demo/omp-75 "${data[@]}"
