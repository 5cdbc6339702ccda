"""Measures how the seed axis should execute, per model family, on the current backend.

For each workload it times training epochs of ONE seed, then of S seeds under each seed
strategy (vmap / map / host), compile time separately, with the final training loss beside
each time, and writes one JSON record per measurement. These numbers back ``auto_plan``:
its choice must never be slower than running the seeds one after another.

    python benchmarks/seed_strategies.py --quick                 # CPU smoke (CI-sized)
    python benchmarks/seed_strategies.py --out results.jsonl     # GPU: AgeDB-sized workloads
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax
import numpy as np

from jaxunlearn.data.sources import RawData, build_task
from jaxunlearn.models import make_model
from jaxunlearn.report import environment_info
from jaxunlearn.runner import PipelineRunner
from jaxunlearn.seeds import LoopPlan, auto_plan
from jaxunlearn.train.loop import Fit, FitConfig, supervised_loss
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, fresh_start


def random_task(rows: int, feature_shape: tuple[int, ...], seed: int = 0):
    """A random regression task of the given input shape (speed only; targets are a linear map)."""
    rng = np.random.default_rng(seed)
    n = rows + 2 * max(rows // 8, 8)
    x = rng.standard_normal((n, *feature_shape)).astype(np.float32)
    y = x.reshape(n, -1)[:, :16].sum(axis=1)
    cut1, cut2 = rows, rows + (n - rows) // 2
    splits = {"train": (x[:cut1], y[:cut1]), "val": (x[cut1:cut2], y[cut1:cut2]), "test": (x[cut2:], y[cut2:])}
    return build_task(RawData(splits, "random:0.2", f"random {feature_shape}"))


def training_pipeline(model: ModelFns, task, epochs: int, batch_size: int, plan: LoopPlan) -> Pipeline:
    fit = Fit(model, FitConfig(epochs=epochs, batch_size=batch_size, rows="all"), supervised_loss(model, "l1"), task,
              plan)
    return Pipeline("train", (Phase("train", fresh_start(model), fit),), {"lr": 1e-3}, needs_original=False)


def measure(name, model_name, model_kwargs, task, seeds, strategy, epochs, batch_size, repeats=2):
    model = ModelFns(make_model(model_name, **model_kwargs), task.input_shape)
    base = auto_plan(model.family)
    plan = dataclasses.replace(base, seed_strategy=strategy, epochs_per_call=1 if strategy == "host" else None)
    runner = PipelineRunner(training_pipeline(model, task, epochs, batch_size, plan), plan)
    keys = jax.random.split(jax.random.key(0), seeds)
    first = runner(keys, None, task, progress=False)
    runs = []
    for _ in range(repeats):
        out = runner(keys, None, task, progress=False)
        runs.append(out.wall)
    run = float(np.median(runs))
    return {
        "workload": name, "model": model_name, "model_kwargs": {k: str(v) for k, v in model_kwargs.items()},
        "rows": task.train.size, "batch_size": batch_size, "seeds": seeds, "strategy": strategy,
        "plan": dataclasses.asdict(plan), "epochs": epochs,
        "compile_s": first.wall - run, "run_s": run, "seconds_per_epoch_all_seeds": run / epochs,
        "seed_epochs_per_s": seeds * epochs / run,
        "final_train_loss_mean": float(np.mean(out.history["train_loss"][:, -1])),
        "auto_choice": auto_plan(model.family).seed_strategy,
    }


def workloads(quick: bool):
    if quick:
        return [
            ("mlp-small", "mlp", {"hidden": (64, 64)}, random_task(512, (16,)), 64, 2, [1, 4]),
            ("allcnn-tiny", "allcnn", {"width": 4}, random_task(128, (8, 8, 3)), 32, 1, [1, 2]),
        ]
    return [
        ("allcnn-agedb-shape", "allcnn", {}, random_task(12288, (32, 32, 3)), 256, 2, [1, 8]),
        ("mlp-taylor-shape", "mlp", {}, random_task(12288, (96,)), 256, 5, [1, 8, 32]),
        ("lstm-stsb-shape", "lstm", {}, random_task(12288, (2, 10, 300)), 256, 2, [1, 8, 32]),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CPU-sized workloads")
    parser.add_argument("--out", default="seed_strategies.jsonl")
    parser.add_argument("--only", default=None, help="comma-separated workload names")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after the compiling one (median)")
    args = parser.parse_args(argv)
    env = environment_info()
    print(json.dumps({"environment": env}), flush=True)
    with open(args.out, "a") as sink:
        for name, model_name, kwargs, task, batch, epochs, seed_counts in workloads(args.quick):
            if args.only and name not in args.only.split(","):
                continue
            for seeds in seed_counts:
                strategies = ["map"] if seeds == 1 else ["vmap", "map", "host"]
                for strategy in strategies:
                    if strategy == "host" and seeds > 8:
                        continue
                    t0 = time.time()
                    try:
                        rec = measure(name, model_name, kwargs, task, seeds, strategy, epochs, batch, args.repeats)
                    except Exception as err:  # record and go on: one failure must not lose the rest
                        rec = {"workload": name, "seeds": seeds, "strategy": strategy, "error": repr(err)[:500]}
                    rec.update(environment={k: env[k] for k in ("versions", "jax_backend", "jax_device_kinds")},
                               dtype="float32", wall_with_compile_s=time.time() - t0)
                    sink.write(json.dumps(rec) + "\n")
                    sink.flush()
                    print(json.dumps({k: rec.get(k) for k in ("workload", "seeds", "strategy", "compile_s",
                                                              "seconds_per_epoch_all_seeds", "seed_epochs_per_s",
                                                              "final_train_loss_mean", "error")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
