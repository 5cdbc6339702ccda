"""Where one training step's time goes: the step taken apart, each part timed on its own.

For one seed and one batch of a workload it compiles and times, separately (median of
``calls`` calls after a warm-up, ``block_until_ready`` around each):

    forward_eval   inference-mode forward (running BatchNorm statistics)
    forward_train  training-mode forward (batch statistics)
    grad           value and gradient of the training loss
    step           grad + Adam update (the library's ``Fit.step``)
    scan_step      one step inside the library's compiled epoch (median epoch / steps),
                   which adds the batch gather, the divergence guard and the loop

with the FLOP count of each part (its matmuls and convolutions, counted on the traced
program, so the same on every device) and the TFLOP/s it reaches. The differences between
rows say where an epoch's time goes beyond convolutions and matmuls (BatchNorm, the
optimizer, the loop), i.e. the profile behind the gap to the epoch-time targets.

    python -m benchmarks.step_profile --workload allcnn --dtypes float32,bfloat16 --out bench.jsonl
    python -m benchmarks.step_profile --recount old.jsonl --out recounted.jsonl
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


def part_flops(fn, args) -> dict[str, Any]:
    """One part's FLOPs by the suite's rule (``benchmarks.measure.flops_record``: the
    matmul/conv count, the same on every device)."""
    from benchmarks.measure import flops_record, program_flops

    rec = flops_record(*program_flops(fn, *args), "of one call")
    return {"flops": rec["flops_per_seed_epoch"], "flops_source": rec["flops_source"]}


def _timed(fn, args, calls: int) -> dict[str, Any]:
    """Compile ``fn`` (timed), count its FLOPs, warm it up, then time ``calls`` calls."""
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    counted = part_flops(fn, args)
    return {
        "s": median,
        "s_all": times,
        "compile_s": compile_s,
        **counted,
        "tflops": None if counted["flops"] is None else counted["flops"] / median / 1e12,
    }


def step_parts(bench, wl, dtype: str) -> tuple[dict[str, tuple], Any]:
    """The parts of one 1-seed training step of ``wl`` as {name: (fn, args)} (every part but
    'scan_step'), and the phase's ``Fit``; ``bench`` is a ``benchmarks.measure.Bench``."""
    import jax
    import jax.numpy as jnp

    model, task = bench.model(wl, dtype), bench.task(wl)
    runner = bench.runner(wl, dtype, "original", "map")
    fit, hp = runner.drivers[0].phase.fit, runner.pipeline.hp()
    state = model.fresh_state(jax.random.key(0), hp["lr"])
    b = fit.cfg.batch_size
    batch = fit.gather(task, None, jnp.asarray(task.train.host_indices(fit.cfg.rows)[:b]), jnp.ones((b,), jnp.float32))
    key = jax.random.key(1)

    def grad(s, bt, k):
        return jax.value_and_grad(fit.batch_loss, has_aux=True)(s.params, s.batch_stats, bt, k, hp, None)

    parts = {
        "forward_eval": (lambda s, x: model.apply_eval(s.params, s.batch_stats, x)[0], (state, batch["x"])),
        "forward_train": (
            lambda s, bt: model.apply_train(s.params, s.batch_stats, bt["x"], bt["w"] > 0)[0],
            (state, batch),
        ),
        "grad": (grad, (state, batch, key)),
        "step": (lambda s, bt, k: fit.step(s, bt, k, hp, None), (state, batch, key)),
    }
    return parts, fit


def profile_step(bench, wl, dtype: str, calls: int = 10) -> dict[str, Any]:
    """The record fields of one step profile; ``bench`` is a ``benchmarks.measure.Bench``
    (its 1-seed 'map' training epoch time is reused when the suite already measured it)."""
    parts, fit = step_parts(bench, wl, dtype)
    out = {name: _timed(fn, args, calls) for name, (fn, args) in parts.items()}
    group = (wl.name, dtype, 1, "map")
    if "train" not in bench.epoch_s.get(group, {}):
        bench.run_phase(wl, dtype, 1, "map", "train")
    epoch = bench.epoch_s[group]["train"]
    out["scan_step"] = {
        "s": epoch / fit.steps_per_epoch,
        "flops": out["step"]["flops"],
        "flops_source": out["step"]["flops_source"],
        "tflops": None if out["step"]["flops"] is None else out["step"]["flops"] * fit.steps_per_epoch / epoch / 1e12,
        "epoch_s": epoch,
        "steps_per_epoch": fit.steps_per_epoch,
    }
    return {
        "components": out,
        "batch_size": fit.cfg.batch_size,
        "num_batches": fit.steps_per_epoch,
        "epoch_s_from_scan": epoch,
        "epoch_s_if_steps_alone": out["step"]["s"] * fit.steps_per_epoch,
    }


def recount(records: list[dict]) -> list[dict]:
    """Profile records whose parts lack ``flops_source`` (written before the FLOPs were
    counted on the traced program: on a GPU their counts leave out cuDNN convolutions),
    with each part's FLOPs counted again here and its TFLOP/s recomputed from the recorded
    time. FLOPs depend on shapes alone, so any backend gives the device's count; the times
    are left as recorded. Other records pass through unchanged."""
    import jax

    from benchmarks.common import WORKLOADS
    from benchmarks.measure import Bench

    bench, out = Bench(repeats=1), []
    for rec in records:
        comps = rec.get("components") or {}
        if rec.get("kind") != "profile" or all("flops_source" in c for c in comps.values()):
            out.append(rec)
            continue
        parts, _ = step_parts(bench, WORKLOADS[rec["workload"]], rec["dtype"])
        new = {}
        for name, comp in comps.items():
            counted = part_flops(*parts["step" if name == "scan_step" else name])
            steps = comp.get("steps_per_epoch", 1)
            secs = comp["epoch_s"] if name == "scan_step" else comp["s"]
            tflops = None if counted["flops"] is None else counted["flops"] * steps / secs / 1e12
            new[name] = {
                **comp,
                **counted,
                "flops_as_recorded": comp.get("flops"),
                "tflops": tflops,
                "flops_source": counted["flops_source"] + f", recounted on {jax.default_backend()}",
            }
        out.append({**rec, "components": new})
    return out


def profile_table(records: list[dict]) -> list[str]:
    """Markdown rows: per workload and dtype, each component's time, FLOPs and TFLOP/s."""
    recs = [r for r in records if r.get("kind") == "profile"]
    if not recs:
        return ["No step profile records."]
    lines = [
        "| workload | dtype | device | part | ms per step | GFLOP per step | TFLOP/s | share of scan step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        comps = r["components"]
        scan = comps["scan_step"]["s"]
        for name in COMPONENTS:
            c = comps.get(name)
            if not c:
                continue
            gflop = "-" if c.get("flops") is None else f"{c['flops'] / 1e9:.4g}"
            tflops = "-" if c.get("tflops") is None else f"{c['tflops']:.3g}"
            lines.append(
                f"| {r['workload']} | {r['dtype']} | {r['device']} | {name} | {c['s'] * 1e3:.3f} | "
                f"{gflop} | {tflops} | {c['s'] / scan:.2f} |"
            )
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
    parser.add_argument(
        "--recount",
        metavar="JSONL",
        help="measure nothing: write JSONL's records to --out (a new file) with the FLOPs of "
        "profiles that predate counting on the lowered program counted again (see recount)",
    )
    args = parser.parse_args(argv)
    if args.recount:
        from benchmarks.common import read_records

        if os.path.exists(args.out):
            parser.error(f"--out {args.out} exists; --recount writes a new file")
        for rec in recount(read_records([args.recount])):
            append_record(args.out, rec)
        print(f"wrote {args.out}")
        return 0
    bench, info, wl = Bench(repeats=2), jax_run_info(), WORKLOADS[args.workload]
    for dtype in args.dtypes.split(","):
        fields = profile_step(bench, wl, dtype, args.calls)
        rec = {
            **info,
            "kind": "profile",
            "workload": wl.name,
            "model": wl.model,
            "phase": "train-step",
            "dtype": dtype,
            "seeds": 1,
            "strategy": "-",
            "full_size": wl.full_size,
            **fields,
        }
        append_record(args.out, rec)
        print("\n".join(profile_table([rec])[2:]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
