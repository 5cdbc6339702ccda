"""How much compiling a new forget set costs: two studies on two random forget draws of
the same size, one after the other in one process, each with a fresh persistent compile
cache folder shared by both (issue 28, item 2: row sets as data).

With the row sets compiled in as constants, the second draw's programs differ from the
first's and every one compiles again; with the rows read from the task at run time, the
second draw's programs are the first's, and the persistent cache serves them. With
``--fractions 0.1,0.05`` the second study forgets another number of rows: with the counts
as data too (``LoopPlan.rows_as_data``) its training programs are still the first's.

Prints one JSON line per study: programs built (JAX's backend-compile events, which a
persistent-cache hit also reports), persistent-cache hits, XLA compiles that ran (the
difference), compile seconds (trace + lowering + XLA) and wall seconds, plus the device and
versions. Usage::

    python -m benchmarks.row_sets [--seeds 2] [--epochs 5] [--dataset taylor] [--fractions 0.1,0.05]
"""

from __future__ import annotations

import argparse
import json
import tempfile


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dataset", default="taylor")
    parser.add_argument(
        "--fractions",
        default="0.1,0.1",
        help="the random forget fraction of each study, comma-separated (two draws of 0.1 by default; "
        "'0.1,0.05' gives the second study another forget-set size)",
    )
    args = parser.parse_args(argv)

    import jax

    from benchmarks.common import CompileCounter
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.data.forget_rules import RandomFraction
    from jaxunlearn.data.sources import build_task, load_dataset
    from jaxunlearn.machine import package_versions
    from jaxunlearn.study import run_study
    from jaxunlearn.timing import Stopwatch

    counter = CompileCounter()
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jaxunlearn-rowsets-"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    cfg = StudyConfig(dataset=args.dataset, seeds=args.seeds, train_epochs=args.epochs)
    data = load_dataset(cfg.dataset)
    for draw, fraction in enumerate(float(f) for f in args.fractions.split(",")):
        task = build_task(data, RandomFraction(fraction, seed=draw))
        before = counter.snapshot()
        with Stopwatch() as sw:
            run_study(cfg, progress=False, log=lambda _: None, task=task)
        built = counter.since(before)
        print(
            json.dumps(
                {
                    "draw": draw,
                    "fraction": fraction,
                    "forget_rows": int(task.describe()["train"]["forget"]),
                    "programs": built["programs"],
                    "cache_hits": built["cache_hits"],
                    "xla_compiles": built["xla_compiles"],
                    "compile_s": round(sw.compile, 2),
                    "wall_s": round(sw.wall, 2),
                    "device": jax.devices()[0].device_kind,
                    "seeds": args.seeds,
                    "epochs": args.epochs,
                    "dataset": args.dataset,
                    "versions": {k: package_versions().get(k) for k in ("jax", "jaxlib", "flax")},
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
