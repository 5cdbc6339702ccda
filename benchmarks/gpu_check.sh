#!/usr/bin/env bash
# One device run: versions, the default study under the auto plan and under sequential
# seeds, the seed-strategy benchmark, and the conformance suite on the accelerator.
# Usage (repo root, on the GPU machine): OUT=/some/dir bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 JAXUNLEARN_CACHE_DIR=off
python3 -c "import importlib.metadata as m, jax; print({p: m.version(p) for p in ('jax','jaxlib','flax','optax','orbax-checkpoint','numpy','scipy','scikit-learn','pmdarima')}, jax.devices())" 2>&1 | tee "$OUT/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/versions.txt"
( time timeout 110 python3 -m jaxunlearn.cli run --no-progress --out "$OUT/study_auto" ) > "$OUT/study_auto.log" 2>&1
tail -12 "$OUT/study_auto.log"
( time timeout 110 python3 -m jaxunlearn.cli run --no-progress --seed-strategy map --out "$OUT/study_map" ) > "$OUT/study_map.log" 2>&1
tail -12 "$OUT/study_map.log"
timeout 200 python3 benchmarks/seed_strategies.py --repeats 1 --out "$OUT/seed_strategies.jsonl" > "$OUT/seed_strategies.log" 2>&1
cut -c1-300 "$OUT/seed_strategies.log"
timeout 110 python3 -m pytest -q -x -p no:cacheprovider tests/test_unlearner_conformance.py > "$OUT/pytest_gpu.log" 2>&1
tail -15 "$OUT/pytest_gpu.log"
