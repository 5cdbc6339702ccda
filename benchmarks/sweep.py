"""What a hyperparameter sweep costs: one program for V values against V separate runs.

For one unlearner and V hyperparameter values on the same S seeds (the original models
trained once, as a study does), three ways are timed in one process, alternating, after a
warm-up call of each (so compile time is reported separately):

- ``separate``: V calls of the S-seed program, one per value (what V studies with
  ``--hp`` cost once their original and retrained models are reused);
- ``swept``: ``PipelineRunner.run_values`` over V x S seed slots, every phase per value;
- ``swept+shared``: the same, with the phases that read no swept hyperparameter run once
  per seed (``Phase.reads_hp``; Blindspot's proxy when only ``lr``/``beta`` are swept).

All three must give the same states (bitwise under the "map" and "host" plans; the record
holds the largest difference). Beside each time: the mean final training loss per value.

    python -m benchmarks.sweep --out sweep.jsonl --summary sweep.md          # taylor, MLP, 8 seeds
    python -m benchmarks.sweep --dataset synthetic --synthetic-rows 20000    # no extra packages
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import append_record, run_info
from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.sources import build_task, load_dataset
from jaxunlearn.hparams import stage_variants
from jaxunlearn.runner import PipelineRunner
from jaxunlearn.study import build_model, resolve_plan, seed_keys
from jaxunlearn.timing import Stopwatch
from jaxunlearn.unlearn import make_original

MODES = ("separate", "swept", "swept+shared")


def time_mode(mode: str, runner: PipelineRunner, keys, original, task, hps: list[dict]) -> tuple[list, Stopwatch]:
    """One run of ``mode``; returns (one StageResult per value, its stopwatch)."""
    with Stopwatch() as sw:
        if mode == "separate":
            results = [runner(keys, original, task, hp=runner.pipeline.hp(**hp), progress=False) for hp in hps]
        else:
            results = runner.run_values(keys, original, task, hps, progress=False, share_phases=mode == "swept+shared")
        jax.block_until_ready([r.state for r in results])
    return results, sw


def max_state_difference(a: list, b: list) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for ra, rb in zip(a, b, strict=True)
        for x, y in zip(jax.tree_util.tree_leaves(ra.state), jax.tree_util.tree_leaves(rb.state), strict=True)
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="taylor")
    parser.add_argument("--synthetic-rows", type=int, default=4000, help="rows of --dataset synthetic")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=100, help="training epochs of the original models")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--sweep",
        action="append",
        default=None,
        metavar="STAGE.NAME=V1,V2",
        help="default: blindspot.lr=1e-4,3e-4,1e-3 and blindspot.beta=0,10,50 (9 values)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed rounds after the warm-up")
    parser.add_argument("--out", default="sweep.jsonl")
    parser.add_argument("--summary", default=None)
    args = parser.parse_args(argv)

    from jaxunlearn.cli import parse_hp_args

    sweep = parse_hp_args(args.sweep or ["blindspot.lr=1e-4,3e-4,1e-3", "blindspot.beta=0,10,50"], "--sweep")
    cfg = StudyConfig(
        dataset=args.dataset, seeds=args.seeds, train_epochs=args.epochs, batch_size=args.batch_size, sweep=sweep
    )
    stages = {key.partition(".")[0] for key in sweep}
    if len(stages) != 1:
        raise SystemExit(f"sweep one unlearner at a time, got {sorted(stages)}")
    stage = stages.pop()
    kwargs = {"n": args.synthetic_rows} if args.dataset == "synthetic" else {}
    task = build_task(load_dataset(args.dataset, **kwargs), cfg.forget)
    model = build_model(cfg, task)
    plan = dataclasses.replace(resolve_plan(cfg, model.family), devices=1)
    original = PipelineRunner(make_original(model, task, cfg, plan), plan)(
        seed_keys(cfg.seed, cfg.seeds, "original"), None, task, progress=False
    ).state
    runner = PipelineRunner(unlearn.get(stage).build(model, task, cfg, plan), plan)
    keys = seed_keys(cfg.seed, cfg.seeds, stage)
    variants = stage_variants(cfg, stage)
    hps = [v.hp for v in variants]
    info = run_info("jax", str(jax.devices()[0].device_kind), jax.default_backend(), {"jax": jax.__version__})
    compile_s, runs, outputs = {}, {m: [] for m in MODES}, {}
    for mode in MODES:  # warm-up: compiles (no persistent cache here, in-memory caches cleared)
        jax.clear_caches()
        outputs[mode], sw = time_mode(mode, runner, keys, original, task, hps)
        compile_s[mode] = sw.compile
        print(f"warm-up {mode}: {sw.wall:.2f} s ({sw.compile:.2f} s compiling)", flush=True)
    for round_ in range(args.repeats):
        for mode in MODES if round_ % 2 == 0 else reversed(MODES):
            _, sw = time_mode(mode, runner, keys, original, task, hps)
            runs[mode].append(sw.run)
            print(f"round {round_} {mode}: run {sw.run:.3f} s", flush=True)
    base = float(np.median(runs["separate"]))
    lines = [
        f"{stage}: {len(hps)} values x {cfg.seeds} seeds, {args.dataset} / {cfg.model}, plan "
        f"{plan.seed_strategy}, {info['backend']} ({info['device']}), float32; run s = median of "
        f"{args.repeats} alternating rounds, compile from the warm-up call.",
        "",
        "| mode | run s | compile s | speedup vs separate | max state diff vs separate | "
        "mean final train loss per value |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        run = float(np.median(runs[mode]))
        diff = max_state_difference(outputs[mode], outputs["separate"])
        losses = [float(np.mean(r.history["train_loss"][:, -1])) for r in outputs[mode]]
        append_record(
            args.out,
            {
                **info,
                "kind": "sweep",
                "stage": stage,
                "mode": mode,
                "values": len(hps),
                "rows": [v.row for v in variants],
                "seeds": cfg.seeds,
                "plan": plan.seed_strategy,
                "dataset": args.dataset,
                "model": cfg.model,
                "dtype": "float32",
                "batch_size": cfg.batch_size,
                "run_s_all": runs[mode],
                "run_s_median": run,
                "compile_s": compile_s[mode],
                "max_state_diff_vs_separate": diff,
                "final_train_loss": losses,
                "cpu_count": os.cpu_count(),
            },
        )
        lines.append(
            f"| {mode} | {run:.3f} | {compile_s[mode]:.2f} | {base / run:.2f}x | {diff:.1e} | "
            + ", ".join(f"{x:.4f}" for x in losses)
            + " |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.summary:
        Path(args.summary).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
