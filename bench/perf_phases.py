#!/usr/bin/python3
"""bench/perf_phases.py: groups `perf report --stdio --sort dso,symbol` output (stdin) of a
bench_forward run into phases: OpenBLAS SGEMM (kernel and packing), attention core, elementwise
(GELU, residual add, bias fill), LayerNorm, kernel time (OpenBLAS threads yielding, page faults,
scheduling), other. Prints one PHASES line. Deliberately crude: it maps symbol names of
src/nn/*.c as they are today; unknown symbols land in "other" with their names listed.
Reference: perf-report(1)."""
import re
import sys

label = sys.argv[1] if len(sys.argv) > 1 else ""
phases = {"gemm": 0.0, "attention": 0.0, "elementwise": 0.0, "layernorm": 0.0, "kernel": 0.0, "other": 0.0}
others = []
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
    if not m:
        continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    if kind == "k" or sym == "__sched_yield":
        phases["kernel"] += pct
    elif "openblas" in dso or "blas" in dso:
        phases["gemm"] += pct
    elif sym.startswith("attn") or sym in ("block", "gemm_small") or "softmax" in sym or "attention" in sym:
        phases["attention"] += pct
    elif sym.startswith(("ew_", "bias_", "gelu", "add_", "quickgelu")):
        phases["elementwise"] += pct
    elif sym.startswith(("ln_", "layernorm")):
        phases["layernorm"] += pct
    else:
        phases["other"] += pct
        if pct >= 0.3:
            others.append("%s %.1f%%" % (sym, pct))
print("PHASES %s: " % label + "  ".join("%s %.1f%%" % kv for kv in phases.items()) +
      ("  (other: %s)" % ", ".join(others) if others else ""))
