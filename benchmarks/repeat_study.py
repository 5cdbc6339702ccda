"""What a repeated study compiles: the same ``run_study`` called several times in one process
(issue 28, item 4: a second identical call compiles nothing measurable, target < 1 s).

Each mode runs in its own process with a fresh persistent compile cache folder:

- ``before``: what the library did before programs were reused within a process, as far as
  settings can restore it (``JAXUNLEARN_REUSE_PROGRAMS=0`` and JAX's default persistent-cache
  threshold, which writes only programs that took 1 s or more to compile);
- ``reuse``: the library's defaults (every program kept in the persistent cache; models,
  pipelines, runners and metric programs reused within the process: ``jaxunlearn.programs``).

Prints one JSON line per call: traces, programs built, cache hits, XLA compiles, compile
seconds (trace + lowering + XLA), wall seconds, a quality metric (finetune's mean test forget
MAE, which must be the same in every call and mode), the device and versions. Usage::

    python -m benchmarks.repeat_study [--calls 3] [--seeds 2] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

MODES = {
    "before": {"JAXUNLEARN_REUSE_PROGRAMS": "0", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1.0"},
    "reuse": {},
}


def run_mode(mode: str, calls: int, seeds: int, epochs: int) -> None:
    """The calls in this process (``mode`` was set in its environment by ``main``)."""
    import jax
    import numpy as np

    from benchmarks.common import CompileCounter
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.machine import package_versions
    from jaxunlearn.study import run_study
    from jaxunlearn.timing import Stopwatch

    counter = CompileCounter()
    cfg = StudyConfig(seeds=seeds, train_epochs=epochs)
    for call in range(calls):
        before = counter.snapshot()
        with Stopwatch() as sw:
            result = run_study(cfg, progress=False, log=lambda _: None)
        built = counter.since(before)
        record = {
            "mode": mode,
            "call": call,
            **built,
            "compile_s": round(sw.compile, 2),
            "wall_s": round(sw.wall, 2),
            "finetune_test_forget_mae": float(np.mean(result.per_seed["finetune"]["test_forget_mae"])),
            "device": jax.devices()[0].device_kind,
            "seeds": seeds,
            "epochs": epochs,
            "dataset": cfg.dataset,
            "versions": {k: package_versions().get(k) for k in ("jax", "jaxlib", "flax")},
        }
        print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mode", choices=sorted(MODES), help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args(argv)
    if args.mode:
        run_mode(args.mode, args.calls, args.seeds, args.epochs)
        return
    for mode, env in MODES.items():
        cache = tempfile.mkdtemp(prefix=f"jaxunlearn-repeat-{mode}-")
        child = {**os.environ, **env, "JAXUNLEARN_CACHE_DIR": cache}
        command = [sys.executable, "-m", "benchmarks.repeat_study", "--mode", mode]
        command += ["--calls", str(args.calls), "--seeds", str(args.seeds), "--epochs", str(args.epochs)]
        subprocess.run(command, env=child, check=True)


if __name__ == "__main__":
    main()
