"""Planned device memory per seed of every stage, before and after issue 28's savings, and
the seeds one H200 then holds (issue 28, item 1).

For each zoo model on its paper domain's input shape (synthetic rows of that shape: the
bytes do not depend on the values), every stage of a default study (the reference stages
and the default unlearners, from the registry) is planned at 1 and 3 seeds per call under
the accelerator plan (``auto_plan(family, "gpu")``: "map" for conv nets, "vmap" otherwise),
from XLA's memory analysis of the compiled programs (``PipelineRunner.planned_bytes``:
compiles, runs nothing). Two variants:

- before: the epoch carry is not donated, and the stage starts from an original model that
  still holds its Adam moments (as studies kept it before);
- after: the carry donated (written in place under "map"), the original without Adam.

Per seed = (planned(3) - planned(1)) / 2 (the programs grow linearly with the seeds they
hold); seeds per H200 = (0.8 x 139 GiB - (planned(1) - per seed)) / per seed, the planner's
safety fraction (``jaxunlearn.memory.SAFETY_FRACTION``) of one H200. Also the bytes a
finished stage keeps per seed (with and without Adam). The analysis runs on the machine's
default backend (here: XLA:CPU, whose buffer assignment differs from the GPU's in detail);
``benchmarks/gpu_scaling.sh`` runs it on a GPU when one is lent.

Usage::

    python -m benchmarks.stage_memory [--models mlp,lstm] [--stages original,finetune] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

H200_BYTES = 139 * 2**30
# input shape of one row and the study's settings per model: the paper's domains
DOMAINS = {
    "mlp": {"shape": (168,), "augment_pad": 0},  # electricity: a week of hourly loads
    "lstm": {"shape": (2, 10, 50), "augment_pad": 0},  # sentence pairs, 10 GloVe-50 tokens
    "allcnn": {"shape": (32, 32, 3), "augment_pad": 16},  # faces at 32 x 32
    "resnet18": {"shape": (32, 32, 3), "augment_pad": 16},
}


def synthetic_task(shape: tuple[int, ...], rows: int = 2000):
    import numpy as np

    from jaxunlearn.data.user import task_from_arrays

    rng = np.random.default_rng(0)

    def split(n):
        return rng.standard_normal((n, *shape)).astype(np.float32), rng.standard_normal(n).astype(np.float32)

    return task_from_arrays(train=split(rows), val=split(rows // 4), test=split(rows // 4), forget="random:0.1")


def measure(model_name: str, stages: list[str], log) -> list[dict]:
    import dataclasses

    import jax

    from jaxunlearn import unlearn
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.memory import SAFETY_FRACTION
    from jaxunlearn.runner import PipelineRunner
    from jaxunlearn.seeds import SeedExecutor, auto_plan, tree_bytes
    from jaxunlearn.study import build_model
    from jaxunlearn.train.state import finished

    domain = DOMAINS[model_name]
    task = synthetic_task(domain["shape"])
    cfg = StudyConfig(dataset="synthetic", model=model_name, augment_pad=domain["augment_pad"])
    model = build_model(cfg, task)
    plan = dataclasses.replace(auto_plan(model.family, "gpu"), devices=1)
    one = jax.eval_shape(lambda: model.fresh_state(jax.random.key(0), 1e-3))
    with_adam = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((3, *a.shape), a.dtype), one)
    without_adam = finished(with_adam)
    rows = []
    for stage in stages:
        pipeline = unlearn.get(stage).build(model, task, cfg, plan)
        planned = {}
        for variant in ("before", "after"):
            runner = PipelineRunner(pipeline, plan)
            original = None
            if pipeline.needs_original:
                original = with_adam if variant == "before" else without_adam
            if variant == "before":
                for driver in runner.drivers:
                    driver.epochs = SeedExecutor(driver.epochs.fn, plan, driver.epochs.n_per_seed)
            started = time.perf_counter()
            b1, b3 = (runner.planned_bytes(s, original, task) for s in (1, 3))
            if b1 is None or b3 is None:
                raise SystemExit("this backend reports no memory analysis")
            per_seed = (b3 - b1) / 2
            fixed = b1 - per_seed
            planned[variant] = {
                "per_seed_bytes": per_seed,
                "fixed_bytes": fixed,
                "seeds_per_h200": int((SAFETY_FRACTION * H200_BYTES - fixed) // per_seed),
                "plan_seconds": round(time.perf_counter() - started, 1),
            }
        row = {
            "model": model_name,
            "stage": stage,
            "plan": plan.seed_strategy,
            **{f"{v}_{k}": x for v, d in planned.items() for k, x in d.items()},
            "kept_per_seed_bytes_with_adam": tree_bytes(with_adam) / 3,
            "kept_per_seed_bytes": tree_bytes(without_adam) / 3,
        }
        log(json.dumps(row))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    mib = 2**20
    lines = [
        "| model | stage | plan | MiB/seed before | MiB/seed after | seeds/H200 before | seeds/H200 after "
        "| kept MiB/seed before | after |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['stage']} | {r['plan']} | {r['before_per_seed_bytes'] / mib:.2f} | "
            f"{r['after_per_seed_bytes'] / mib:.2f} | {r['before_seeds_per_h200']} | {r['after_seeds_per_h200']} | "
            f"{r['kept_per_seed_bytes_with_adam'] / mib:.2f} | {r['kept_per_seed_bytes'] / mib:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from jaxunlearn import unlearn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(DOMAINS))
    parser.add_argument("--stages", default=None, help="default: the reference stages and the default unlearners")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    stages = args.stages.split(",") if args.stages else [*unlearn.reference_stages(), *unlearn.default_unlearners()]
    rows: list[dict] = []
    for name in args.models.split(","):
        if name not in DOMAINS:
            raise SystemExit(f"unknown model {name!r}: one of {sorted(DOMAINS)}")
        rows += measure(name, stages, lambda line: print(line, file=sys.stderr, flush=True))
    import jax

    from jaxunlearn.machine import package_versions

    report = {"device": str(jax.devices()[0].device_kind), "versions": package_versions(), "rows": rows}
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
    print(table(rows))


if __name__ == "__main__":
    main()
