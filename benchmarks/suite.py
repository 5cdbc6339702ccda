"""jaxunlearn speed suite: compile time, epoch time, samples/s, FLOP/s, memory and quality
for training, retraining and every unlearner, over seeds, seed strategies and dtypes.

    python -m benchmarks.suite run --quick --out bench.jsonl         # CPU smoke (CI, < 60 s)
    python -m benchmarks.suite run --gpu --out $OUT/bench.jsonl      # the one GPU run (< 8 min)
    python -m benchmarks.suite run --workloads mlp --seeds 1,8,32 --strategies vmap,map
    python -m benchmarks.suite run --scaling --workloads mlp-cpu,lstm-cpu   # seeds 1..512
    python -m benchmarks.suite summarise bench.jsonl --out bench.md  # Markdown + targets

One JSON line per measurement (or per skipped / failed item) is appended to ``--out``;
``benchmarks/gpu_suite.sh`` runs the GPU matrix plus the PyTorch reference and summarises.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
import traceback
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import append_record, read_records, run_info

PHASE_ORDER = (
    "train",
    "retrain",
    "proxy",
    "finetune",
    "gaussian",
    "blindspot",
    "blindspot-inloop",
    "neggrad",
    "scrub-min",
    "scrub-max",
    "ssd-importance",
    "ssd-dampen",
    "profile",
)
# "profile" is not a training phase: the 1-seed training step taken apart (benchmarks/step_profile.py).


@dataclasses.dataclass(frozen=True)
class Item:
    """Phases of one workload measured at one (dtype, seeds, strategy); ``est_s`` is the
    expected GPU cost used by the time budget."""

    workload: str
    dtype: str
    seeds: int
    strategy: str
    phases: tuple[str, ...]
    est_s: float = 0.0
    repeats: int | None = None  # timed epochs; None = the run's --repeats


def _items(workloads, dtypes, seed_counts, strategies, phases, est=0.0):
    out = []
    for wl in workloads:
        for dtype in dtypes:
            for seeds in seed_counts:
                for strategy in ("map",) if seeds == 1 else strategies:
                    out.append(Item(wl, dtype, seeds, strategy, tuple(phases), est))
    return out


def quick_matrix() -> list[Item]:
    """Every pipeline, seed strategy, dtype and three model families once, at tiny CPU sizes
    (XLA compilation dominates). Left out to stay well under a minute on two cores: the
    separately measured "proxy" phase (the blindspot student here takes the "retrain"
    states, the same program) and ResNet-18 (its CPU compile alone takes 15-45 s); run
    ``--phases proxy`` / ``--workloads resnet18-quick`` with a custom matrix for those."""
    return [
        Item(
            "mlp-quick",
            "float32",
            1,
            "map",
            tuple(p for p in PHASE_ORDER if p not in ("proxy", "profile")),
        ),
        Item("mlp-quick", "float32", 2, "vmap", ("train",)),
        Item("mlp-quick", "float32", 2, "map", ("train", "blindspot")),  # proxy falls back to the original
        Item("mlp-quick", "float32", 2, "host", ("train",)),
        Item("mlp-quick", "bfloat16", 2, "map", ("train",)),
        Item("lstm-quick", "float32", 1, "map", ("train",)),
        Item("allcnn-quick", "float32", 1, "host", ("train",)),  # XLA:CPU's plan for conv nets
        Item("mlp-quick", "float32", 1, "map", ("profile",)),
    ]


def gpu_matrix() -> list[Item]:
    """The one GPU run, most important first (the time budget skips from the end).

    ``est_s`` are the wall seconds each item took in the H200 run of 2026-11-27
    (benchmarks/RESULTS.md), compilation included: the first AllCNN program compiles in
    ~15-25 s (cuDNN autotuning), later ones in 5-10 s, a vmapped AllCNN training program in
    ~44 s; the LSTM's in 7-20 s, the MLP's in 4-7 s. Sum of the required items (all but
    ``OPTIONAL_TAIL``) ~440 s, plus ~25 s for the PyTorch reference before it. The budget
    checks each phase against its share of its item's estimate, so the vmapped AllCNN
    items, whose training phase costs 4x their blindspot phase, are one item per phase.
    Where a group has no 'retrain' states, the blindspot student takes the original as its
    proxy: same cost, quality then for comparing dtypes only.
    """
    tb = ("train", "blindspot")
    return [
        Item("allcnn", "float32", 1, "map", tb, 31),
        Item("allcnn", "bfloat16", 1, "map", tb, 34),
        Item("allcnn", "bfloat16", 1, "map", ("profile",), 14),
        *_items(["mlp"], ["float32"], [1, 8, 32], ["vmap", "map"], ["train"], 6.5),
        *_items(["lstm"], ["float32"], [1, 8, 32], ["vmap", "map"], ["train"], 14.5),
        Item("allcnn", "float32", 8, "map", tb, 22, repeats=1),
        Item("allcnn", "bfloat16", 8, "map", tb, 22, repeats=1),
        Item("resnet18", "float32", 1, "map", tb, 35),
        Item("allcnn", "float32", 8, "host", tb, 25, repeats=1),
        Item("allcnn", "bfloat16", 8, "host", tb, 19, repeats=1),
        Item("allcnn", "float32", 8, "vmap", ("train",), 53, repeats=1),
        Item("allcnn", "float32", 8, "vmap", ("blindspot",), 15, repeats=1),
        Item("allcnn", "bfloat16", 8, "vmap", ("train",), 54, repeats=1),
        Item("allcnn", "bfloat16", 8, "vmap", ("blindspot",), 14, repeats=1),
        *OPTIONAL_TAIL,
    ]


# Measured in the GPU run only if time is left after the required items.
OPTIONAL_TAIL = (
    Item("allcnn", "float32", 1, "map", ("profile",), 6),
    Item("allcnn", "float32", 1, "map", ("retrain", "blindspot-inloop"), 16),
    *_items(["lstm-hoisted"], ["float32"], [1, 32], ["vmap"], ["train"], 17),
    Item("allcnn", "float32", 1, "map", ("finetune", "gaussian"), 12),
    Item("allcnn", "bfloat16", 1, "map", ("blindspot-inloop",), 8),
    *_items(["mlp", "lstm"], ["bfloat16"], [1, 32], ["vmap"], ["train"], 12),
    Item("allcnn", "float32", 8, "map", ("retrain",), 15, repeats=1),
    Item("allcnn", "float32", 1, "map", ("neggrad", "scrub-min", "scrub-max"), 16),
    Item("allcnn", "float32", 1, "map", ("ssd-importance", "ssd-dampen"), 7),
)


def full_matrix(workloads=("allcnn", "resnet18", "lstm", "mlp")) -> list[Item]:
    """Everything: all phases x dtypes x {1, 8, 32} seeds x strategies (hours on a GPU)."""
    phases = [p for p in PHASE_ORDER if p != "profile"]
    return _items(workloads, ["float32", "bfloat16"], [1, 8, 32], ["vmap", "map", "host"], phases) + _items(
        workloads, ["float32", "bfloat16"], [1], ["map"], ["profile"]
    )


SCALING_SEEDS = (1, 8, 32, 128, 512)


def scaling_matrix(workloads=("mlp", "lstm"), seeds=SCALING_SEEDS, strategies=("vmap", "map")) -> list[Item]:
    """The seed-scaling curve: training epochs at 1 to 512 seeds under each strategy
    (issue 18), smallest counts first, so a time budget cuts the largest ones."""
    return [
        Item(wl, "float32", n, strategy, ("train",))
        for n in seeds
        for wl in workloads
        for strategy in (("map",) if n == 1 else strategies)
    ]


def _workload_names() -> list[str]:
    from benchmarks.common import WORKLOADS

    return list(WORKLOADS)


def select(items: list[Item], args) -> list[Item]:
    def keep(value, allowed):
        return allowed is None or str(value) in allowed.split(",")

    out = []
    for item in items:
        if not (
            keep(item.workload, args.workloads)
            and keep(item.dtype, args.dtypes)
            and keep(item.seeds, args.seeds)
            and keep(item.strategy, args.strategies)
        ):
            continue
        phases = tuple(p for p in item.phases if keep(p, args.phases))
        if phases:
            out.append(dataclasses.replace(item, phases=phases))
    return out


def jax_run_info() -> dict[str, Any]:
    import importlib.metadata as md

    import jax

    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    dev = jax.local_devices()[0]
    return run_info("jax", dev.device_kind, jax.default_backend(), versions)


def run(args) -> int:
    if args.quick or args.gpu:
        items = quick_matrix() if args.quick else gpu_matrix()
    else:  # the curve or the full matrix of the named workloads (any in WORKLOADS; default: full-size ones)
        matrix = scaling_matrix if args.scaling else full_matrix
        items = matrix(*([args.workloads.split(",")] if args.workloads else []))
        unknown = sorted({i.workload for i in items} - set(_workload_names()))
        if unknown:
            raise SystemExit(f"unknown workload(s) {unknown}; known: {sorted(_workload_names())}")
    run_items(select(items, args), args.out, args.repeats, args.budget_s, args.summary)
    return 0


class Terminated(BaseException):
    """SIGTERM (the GPU script's hard timeout) arrived: record what is left and stop."""


def _on_sigterm(signum, frame):
    raise Terminated()


def run_items(
    items: list[Item], out: str, repeats: int = 2, budget_s: float | None = None, summary: str | None = None
) -> dict[str, int]:
    """Measures every phase of every item, appending one record each to ``out``; past
    ``budget_s`` seconds the remaining phases are recorded as skipped. Returns counts per kind."""
    from benchmarks.measure import STAGES, WORKLOADS, Bench

    started = time.perf_counter()
    info = jax_run_info()
    bench = Bench(repeats=repeats, log=print)
    print(f"{len(items)} items on {info['device']} ({info['backend']}), budget {budget_s} s", flush=True)
    counts = {"measurement": 0, "profile": 0, "skipped": 0, "error": 0}
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if hasattr(signal, "SIGTERM") else None
    terminated = False
    for item in items:
        wl = WORKLOADS[item.workload]
        for phase in sorted(item.phases, key=PHASE_ORDER.index):
            base = {
                **info,
                "workload": wl.name,
                "model": wl.model,
                "phase": phase,
                "pipeline": STAGES[phase][0] if phase in STAGES else "-",
                "dtype": item.dtype,
                "seeds": item.seeds,
                "strategy": item.strategy,
                "batch_size": wl.batch_size,
                "full_size": wl.full_size,
            }
            elapsed = time.perf_counter() - started
            if terminated:
                rec = {**base, "kind": "skipped", "wall_s": 0.0, "reason": "terminated (hard timeout) before this item"}
            elif budget_s is not None and elapsed + item.est_s / len(item.phases) > budget_s:
                rec = {
                    **base,
                    "kind": "skipped",
                    "wall_s": 0.0,
                    "reason": f"time budget: {elapsed:.0f} s used of {budget_s:.0f} s",
                }
            else:
                t0 = time.perf_counter()
                try:
                    if phase == "profile":
                        from benchmarks.step_profile import profile_step

                        rec = {**base, "kind": "profile", **profile_step(bench, wl, item.dtype)}
                        counts[rec["kind"]] += 1
                        append_record(out, {**rec, "wall_s": time.perf_counter() - t0})
                        print(profile_line(rec), flush=True)
                        continue
                    fields = bench.run_phase(wl, item.dtype, item.seeds, item.strategy, phase, item.repeats)
                    rec = {**base, "kind": "measurement", **fields}
                    group = bench.epoch_s.get((wl.name, item.dtype, item.seeds, item.strategy), {})
                    rec["ratio_vs_retrain"] = stage_ratio(
                        phase,
                        group,
                        bench.start_s.get((wl.name, item.dtype, item.seeds, item.strategy), {}),
                        bench.config(wl, item.dtype),
                    )
                except Exception as err:  # noqa: BLE001 - one failure must not lose the rest
                    rec = {
                        **base,
                        "kind": "error",
                        "error": f"{type(err).__name__}: {err}"[:800],
                        "traceback": traceback.format_exc()[-2000:],
                    }
                except Terminated:
                    terminated = True
                    rec = {**base, "kind": "error", "error": "terminated (hard timeout) during this measurement"}
                rec["wall_s"] = time.perf_counter() - t0
            counts[rec["kind"]] += 1
            append_record(out, rec)
            print(one_line(rec), flush=True)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
    print(f"done in {time.perf_counter() - started:.1f} s: {counts}", flush=True)
    if summary:
        from benchmarks.summary import write_summary

        write_summary([out], summary)
    return counts


def stage_ratio(phase: str, epoch_s: dict[str, float], start_s: dict[str, float], cfg) -> float | None:
    """Projected unlearner time (phase starts + paper epochs x median epoch time) / projected
    retraining time, for the last phase of an unlearner once the group has timed 'retrain'."""
    first_phase = {"scrub-max": "scrub-min", "ssd-dampen": "ssd-importance"}
    last_phases = ("finetune", "gaussian", "blindspot", "blindspot-inloop", "neggrad", *first_phase)
    if "retrain" not in epoch_s or phase not in last_phases or first_phase.get(phase, phase) not in epoch_s:
        return None
    from benchmarks.measure import paper_epochs

    def projected(name: str) -> float:
        return start_s.get(name, 0.0) + paper_epochs(cfg, name) * epoch_s[name]

    cost = projected(phase)
    if phase.startswith("blindspot"):
        proxy = "proxy" if "proxy" in epoch_s else "retrain"
        cost += start_s.get(proxy, 0.0) + paper_epochs(cfg, "proxy") * epoch_s[proxy]
    if phase in first_phase:
        cost += projected(first_phase[phase])
    return cost / (start_s.get("retrain", 0.0) + cfg.train_epochs * epoch_s["retrain"])


def profile_line(rec: dict) -> str:
    parts = ", ".join(f"{name} {c['s'] * 1e3:.2f} ms" for name, c in rec["components"].items())
    return f"{rec['workload']:>14}   profile {rec['dtype']:>8} S=1   -   {parts}"


def one_line(rec: dict) -> str:
    head = f"{rec['workload']:>14} {rec['phase']:>9} {rec['dtype']:>8} S={rec['seeds']:<2} {rec['strategy']:>4}"
    if rec["kind"] == "measurement":
        q = {k: f"{v['mean']:.3f}" for k, v in rec["quality"].items()}
        return (
            f"{head}  compile {rec['compile_s']:6.2f} s  epoch {rec['epoch_s_median']:.4f} s  "
            f"{rec['samples_per_s']:9.0f} samples/s  {rec['achieved_tflops'] or 0:7.3f} TFLOP/s  "
            f"loss {q.get('train_loss', '-')}  forget MAE {q.get('test_forget_mae', '-')}  "
            f"wall {rec['wall_s']:.1f} s"
        )
    return f"{head}  {rec['kind'].upper()}: {rec.get('reason') or rec.get('error')}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="measure and append JSON records")
    mode = p_run.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="tiny CPU matrix (CI smoke test)")
    mode.add_argument("--gpu", action="store_true", help="the prioritised one-GPU matrix")
    mode.add_argument(
        "--scaling",
        action="store_true",
        help=f"the seed-scaling curve: train epochs at {','.join(map(str, SCALING_SEEDS))} seeds, "
        "vmap and map (pick workloads with --workloads; default mlp,lstm)",
    )
    p_run.add_argument("--out", default="benchmarks/results/bench.jsonl")
    p_run.add_argument("--summary", default=None, help="also write the Markdown summary here")
    p_run.add_argument("--repeats", type=int, default=2, help="timed epochs after the compiling one")
    p_run.add_argument("--budget-s", type=float, default=None, help="skip (and record) items past this many seconds")
    for name in ("workloads", "dtypes", "seeds", "strategies", "phases"):
        p_run.add_argument(f"--{name}", default=None, help=f"comma-separated {name} to keep")
    p_sum = sub.add_parser("summarise", aliases=["summarize"], help="Markdown summary of JSONL files")
    p_sum.add_argument("files", nargs="+")
    p_sum.add_argument("--out", default=None, help="write here instead of stdout")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    from benchmarks.summary import render_summary

    text = render_summary(read_records(args.files))
    if args.out:
        with open(args.out, "w") as sink:
            sink.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
