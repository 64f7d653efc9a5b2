#!/usr/bin/env bash
# Prints the OpenBLAS core types (OPENBLAS_CORETYPE values) whose kernels this CPU can run, one per
# line, so that scripts/test.sh can run the determinism tests under each of them. The kernels of
# these types differ (tile shapes, small-matrix paths), so a thread-count dependence that one type
# hides, another shows. A type the CPU lacks the instructions for would crash, so it is left out.
set -euo pipefail
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
types=()
if has pni || has sse3; then types+=(Prescott); fi
has avx && types+=(Sandybridge)
if has avx2 && has fma; then types+=(Haswell Zen); fi
if has avx512f && has avx512bw && has avx512dq && has avx512vl; then types+=(SkylakeX); fi
if has avx512f && has avx512_bf16; then types+=(CooperLake); fi
printf '%s\n' "${types[@]}"
