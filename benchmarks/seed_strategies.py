"""Measures how the seed axis should execute, per model family, on the current backend.

The training epoch of each workload at 1 seed and at S seeds under each seed strategy
(vmap / map / host), compile time separately, quality beside each time: the numbers behind
``auto_plan``, whose choice must never be slower than running the seeds one after another.
A thin preset of the benchmark suite (``benchmarks/suite.py``), which measures it all.

    python benchmarks/seed_strategies.py --quick                 # CPU smoke (CI-sized)
    python benchmarks/seed_strategies.py --out results.jsonl     # GPU: AgeDB-sized workloads
"""

from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.suite import Item, run_items


def items(quick: bool) -> list[Item]:
    if quick:
        plan = [("mlp-quick", [1, 4]), ("allcnn-quick", [1, 2])]
    else:
        plan = [("allcnn", [1, 8]), ("mlp", [1, 8, 32]), ("lstm", [1, 8, 32])]
    out = []
    for workload, seed_counts in plan:
        for seeds in seed_counts:
            strategies = ["map"] if seeds == 1 else ["vmap", "map"] + (["host"] if seeds <= 8 else [])
            out += [Item(workload, "float32", seeds, s, ("train",)) for s in strategies]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CPU-sized workloads")
    parser.add_argument("--out", default="seed_strategies.jsonl")
    parser.add_argument("--only", default=None, help="comma-separated workload names")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the compiling one (median)")
    args = parser.parse_args(argv)
    chosen = [i for i in items(args.quick) if not args.only or i.workload in args.only.split(",")]
    run_items(chosen, args.out, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
