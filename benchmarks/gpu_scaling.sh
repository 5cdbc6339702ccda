#!/usr/bin/env bash
# Issue 18's and 28's GPU runs (NOT YET RUN: no session with a GPU has had them), on one
# H100/H200, compilation included, in parts (below):
#   1. scaling: the seed-scaling curve: MLP and LSTM training epochs at S = 1, 8, 32, 128, 512 seeds,
#      "vmap" and "map", with compile time and peak device memory (suite --scaling);
#   2. cmdbuf: command buffers (CUDA graphs) with WHILE and CONDITIONAL added to XLA's default set,
#      for the launch-bound MLP at 1 and 512 seeds (XLA reads its flags at start-up, so in
#      its own process), against part 1's numbers;
#   3. eval: a 512-model NeurIPS'23-protocol evaluation of one unlearner (original, 512 retrained,
#      512 more retrained for the noise floor, 512 unlearned, metrics) on a forecasting-sized
#      task: the synthetic dataset at the Taylor task's shape (pmdarima, which holds the
#      Taylor series, is not installed on the GPU machine).
#   4. issue 28 (attack, rowsets, memory, ulira, share): the SVC attack's seconds per model at the paper's size, 1 thread against
#      the host's cores (benchmarks/attack.py --paper-size), and a second forget draw's
#      compiles with row sets as data (benchmarks/row_sets.py, synthetic data), and every
#      default stage's planned bytes per seed and seeds per H200, before and after the
#      donated carry and the dropped Adam moments (benchmarks/stage_memory.py), and a
#      256-shadow U-LiRA's blocks, calls and compiles with per-shadow training rows
#      (benchmarks/ulira_calls.py, synthetic data), and the attack's share of a 512-seed
#      default study's wall time (benchmarks/attack.py --share, synthetic data at the Taylor
#      task's shape): every model attacked with programs compiled cold, then again with the
#      process's programs reused, then at most 64 models per row (the target: <= 10%).
# Records: $OUT/scaling.jsonl, $OUT/cmdbuf.jsonl, $OUT/attack_share.jsonl; summary: $OUT/summary.md; evaluation: $OUT/eval/.
#
# Parts, each under its own hard timeout (seconds): share 200, attack 40, rowsets 90, ulira 150,
# memory 240 (issue 28); scaling 210, cmdbuf 70, eval 150 (issue 18). All of them add up to
# more than one device call may run (600 s) and than a session's device time (900 s, start-up
# included): name the parts to run, most needed first, e.g. one call of
#   OUT=... bash benchmarks/gpu_scaling.sh share attack rowsets
# and, if time is left, another with the rest. No names: every part, in the order above.
# Usage (repo root, on the GPU machine): OUT=/some/dir bash benchmarks/gpu_scaling.sh [PART ...]
set -u
ALL="share attack rowsets ulira memory scaling cmdbuf eval"
PARTS=${*:-$ALL}
for part in $PARTS; do
  case " $ALL " in *" $part "*) ;; *) echo "gpu_scaling.sh: unknown part '$part' (parts: $ALL)" >&2; exit 2;; esac
done
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 JAXUNLEARN_CACHE_DIR=off
$PY -c "import jax; print(jax.__version__, jax.devices())" | tee "$OUT/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/versions.txt" 2>&1
SYNTHETIC="--dataset synthetic --dataset-arg n=3900 --dataset-arg dim=96"  # the Taylor task's shape

for part in $PARTS; do
  echo "== $part (${SECONDS} s so far)"
  case $part in
  share)
    timeout -k 5 200 $PY -m benchmarks.attack --share --seeds 512 --epochs 100 --cap 0,0,64 $SYNTHETIC \
      2>&1 | tee "$OUT/attack_share.jsonl" ;;
  attack)
    timeout -k 5 40 $PY -m benchmarks.attack --paper-size --seeds 64 2>&1 | tee "$OUT/attack.jsonl" ;;
  rowsets)
    timeout -k 5 90 $PY -m benchmarks.row_sets --dataset synthetic 2>&1 | tee "$OUT/row_sets.jsonl" ;;
  ulira)
    timeout -k 5 150 $PY -m benchmarks.ulira_calls --shadows 256 --groups 16 --dataset synthetic \
      2>&1 | tee "$OUT/ulira_calls.jsonl" ;;
  memory)
    timeout -k 5 240 $PY -m benchmarks.stage_memory --out "$OUT/stage_memory.json" 2>&1 | tee "$OUT/stage_memory.md" ;;
  scaling)
    timeout -k 5 210 $PY -m benchmarks.suite run --scaling --workloads mlp,lstm --repeats 1 --budget-s 200 \
      --out "$OUT/scaling.jsonl" 2>&1 | tee "$OUT/scaling.log" ;;
  cmdbuf)
    XLA_FLAGS="--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL ${XLA_FLAGS:-}" \
      timeout -k 5 70 $PY -m benchmarks.suite run --scaling --workloads mlp --seeds 1,512 --strategies vmap \
      --repeats 1 --budget-s 60 --out "$OUT/cmdbuf.jsonl" 2>&1 | tee "$OUT/cmdbuf.log" ;;
  eval)
    timeout -k 5 150 $PY -m jaxunlearn.cli evaluate --protocol neurips23 --models 512 --unlearners finetune \
      $SYNTHETIC --no-checkpoints --no-progress --attack-models 8 --out "$OUT/eval" 2>&1 | tee "$OUT/eval.log" ;;
  esac
done

records=$(ls "$OUT/scaling.jsonl" "$OUT/cmdbuf.jsonl" 2>/dev/null)
if [ -n "$records" ]; then
  $PY -m benchmarks.suite summarise $records --out "$OUT/summary.md"
fi
echo "gpu_scaling.sh: ${SECONDS} s in all"
