#!/usr/bin/env bash
# The one GPU benchmark run (issue 4): the PyTorch eager reference, then the JAX suite's
# prioritised GPU matrix (python -m benchmarks.suite run --gpu) under a time budget, then the
# Markdown summary with every target marked (the 1-seed AllCNN step profile runs inside the suite).
# Its required items took ~465 s on one H200 (2026-11-27) including compilation; items that would
# pass the budget are recorded as skipped, and a hard timeout (budget + 10 s, then SIGKILL 5 s
# later) keeps the whole script under 8 minutes. Records: $OUT/bench.jsonl; summary: $OUT/summary.md.
# Usage (repo root, on the GPU machine): OUT=/some/dir bash benchmarks/gpu_suite.sh
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
BUDGET=${BUDGET_S:-460}   # seconds after which remaining items are skipped (torch included)
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 JAXUNLEARN_CACHE_DIR=off
{
  $PY -c "import importlib.metadata as m; print({p: (m.version(p) if __import__('importlib.util').util.find_spec(p.replace('-', '_')) else None) for p in ('jax','jaxlib','flax','optax','numpy','torch')})"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
} > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
# PyTorch first, in its own process (a JAX client would preallocate the GPU's memory).
timeout 90 $PY benchmarks/torch_reference.py --out "$OUT/bench.jsonl" 2>&1 | tee "$OUT/torch.log"
LEFT=$((BUDGET - SECONDS))
# SIGTERM at the hard limit records the phase in progress and the rest as not run; KILL 5 s later.
timeout -k 5 $((LEFT + 10)) $PY -m benchmarks.suite run --gpu --out "$OUT/bench.jsonl" --budget-s "$LEFT" \
  2>&1 | tee "$OUT/suite.log"
$PY -m benchmarks.suite summarise "$OUT/bench.jsonl" --out "$OUT/summary.md"
sed -n '/^## Targets/,$p' "$OUT/summary.md"
echo "gpu_suite.sh: ${SECONDS} s in all"
