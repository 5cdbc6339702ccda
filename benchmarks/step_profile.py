"""Where one training step's time goes: the step taken apart, each part timed on its own.

For one seed and one batch of a workload it compiles and times, separately (median of
``calls`` calls after a warm-up, ``block_until_ready`` around each):

    forward_eval   inference-mode forward (running BatchNorm statistics)
    forward_train  training-mode forward (batch statistics)
    grad           value and gradient of the training loss
    step           grad + Adam update (the library's ``Fit.step``)
    scan_step      one step inside the library's compiled epoch (median epoch / steps),
                   which adds the batch gather, the divergence guard and the loop

with XLA's FLOP count of each part and the TFLOP/s it reaches. The differences between
rows say where an epoch's time goes beyond convolutions and matmuls (BatchNorm, the
optimizer, the loop), i.e. the profile behind the gap to the epoch-time targets.

    python -m benchmarks.step_profile --workload allcnn --dtypes float32,bfloat16 --out bench.jsonl
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMPONENTS = ("forward_eval", "forward_train", "grad", "step", "scan_step")


def _timed(fn, args, calls: int) -> dict[str, Any]:
    """Compile ``fn`` (timed), read its FLOPs, warm it up, then time ``calls`` calls."""
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    flops = float(cost["flops"]) if cost and "flops" in cost else None
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"s": median, "s_all": times, "compile_s": compile_s, "flops": flops,
            "tflops": None if flops is None else flops / median / 1e12}


def profile_step(bench, wl, dtype: str, calls: int = 10) -> dict[str, Any]:
    """The record fields of one step profile; ``bench`` is a ``benchmarks.measure.Bench``
    (its 1-seed 'map' training epoch time is reused when the suite already measured it)."""
    import jax
    import jax.numpy as jnp

    model, task = bench.model(wl, dtype), bench.task(wl)
    runner = bench.runner(wl, dtype, "original", "map")
    fit, hp = runner.drivers[0].phase.fit, runner.pipeline.hp()
    state = model.fresh_state(jax.random.key(0), hp["lr"])
    b = fit.cfg.batch_size
    batch = fit.gather(task, None, jnp.asarray(fit.rows[:b]), jnp.ones((b,), jnp.float32))
    key = jax.random.key(1)

    def grad(s, bt, k):
        return jax.value_and_grad(fit.batch_loss, has_aux=True)(s.params, s.batch_stats, bt, k, hp, None)

    parts = {
        "forward_eval": (lambda s, x: model.apply_eval(s.params, s.batch_stats, x)[0], (state, batch["x"])),
        "forward_train": (lambda s, bt: model.apply_train(s.params, s.batch_stats, bt["x"], bt["w"])[0], (state, batch)),
        "grad": (grad, (state, batch, key)),
        "step": (lambda s, bt, k: fit.step(s, bt, k, hp, None), (state, batch, key)),
    }
    out = {name: _timed(fn, args, calls) for name, (fn, args) in parts.items()}
    group = (wl.name, dtype, 1, "map")
    if "train" not in bench.epoch_s.get(group, {}):
        bench.run_phase(wl, dtype, 1, "map", "train")
    epoch = bench.epoch_s[group]["train"]
    out["scan_step"] = {"s": epoch / fit.num_batches, "flops": out["step"]["flops"],
                        "tflops": None if out["step"]["flops"] is None
                        else out["step"]["flops"] * fit.num_batches / epoch / 1e12,
                        "epoch_s": epoch, "steps_per_epoch": fit.num_batches}
    return {"components": out, "batch_size": b, "num_batches": fit.num_batches,
            "epoch_s_from_scan": epoch, "epoch_s_if_steps_alone": out["step"]["s"] * fit.num_batches}


def profile_table(records: list[dict]) -> list[str]:
    """Markdown rows: per workload and dtype, each component's time, FLOPs and TFLOP/s."""
    recs = [r for r in records if r.get("kind") == "profile"]
    if not recs:
        return ["No step profile records."]
    lines = ["| workload | dtype | device | part | ms per step | GFLOP per step | TFLOP/s | share of scan step |",
             "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        comps = r["components"]
        scan = comps["scan_step"]["s"]
        for name in COMPONENTS:
            c = comps.get(name)
            if not c:
                continue
            gflop = "-" if c.get("flops") is None else f"{c['flops'] / 1e9:.4g}"
            tflops = "-" if c.get("tflops") is None else f"{c['tflops']:.3g}"
            lines.append(f"| {r['workload']} | {r['dtype']} | {r['device']} | {name} | {c['s'] * 1e3:.3f} | "
                         f"{gflop} | {tflops} | {c['s'] / scan:.2f} |")
    return lines


def main(argv=None) -> int:
    from benchmarks.common import WORKLOADS, append_record
    from benchmarks.measure import Bench
    from benchmarks.suite import jax_run_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="allcnn", choices=sorted(WORKLOADS))
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per part after the warm-up")
    parser.add_argument("--out", default="benchmarks/results/bench.jsonl")
    args = parser.parse_args(argv)
    bench, info, wl = Bench(repeats=2), jax_run_info(), WORKLOADS[args.workload]
    for dtype in args.dtypes.split(","):
        fields = profile_step(bench, wl, dtype, args.calls)
        rec = {**info, "kind": "profile", "workload": wl.name, "model": wl.model, "phase": "train-step",
               "dtype": dtype, "seeds": 1, "strategy": "-", "full_size": wl.full_size, **fields}
        append_record(args.out, rec)
        print("\n".join(profile_table([rec])[2:]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
