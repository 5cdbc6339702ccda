"""Reruns the committed studies and reports, for each, the strongest level of reproduction
that holds: bitwise, rounding or statistical (jaxunlearn/agreement.py; docs/REPRODUCIBILITY.md).

    python docs/reproduce.py                      # every study: compare, write nothing
    python docs/reproduce.py --only default,text  # some of them
    python docs/reproduce.py --seeds 2 --only default   # the first 2 seeds first (seed i's
                                                  # keys do not depend on the seed count; use
                                                  # 2 or more: XLA compiles one seed differently);
                                                  # all seeds are rerun only if neither bitwise
                                                  # nor rounding holds on those
    python docs/reproduce.py --no-statistical     # stop at rounding (no full reruns)
    python docs/reproduce.py --write --only text  # regenerate docs/results/text in place
    make reproduce                                # = the first line

Each study's command is the one that wrote it: ``STUDIES`` (the default study of
``make run``, then every study of docs/RESULTS.md, from ``make_results.DOMAINS``). In
compare mode each command runs in a fresh process into a temporary folder (figures off),
with the checkpoint folders of earlier studies that it reuses redirected there too, in the
numerics mode the study was made in (``environment.numerics`` of its results.json; studies
from before the modes existed ran natively). ``--write`` regenerates in ``--numerics`` (default
portable). Exit status 0 when every compared study reaches at least the statistical level,
1 otherwise.

Bitwise equality needs the machine the study was made on: the CPU (family, model, ISA),
the BLAS kernel, XLA's flags and threads, the package versions (``environment.machine``).
When a study falls short of bitwise, the differences of this machine from the recorded one
are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
sys.path.insert(0, str(ROOT / "docs"))
from make_results import DOMAINS  # noqa: E402

from jaxunlearn.agreement import Agreement, per_seed_differences, strongest_level  # noqa: E402,F401

STUDIES: dict[str, str] = {
    "default": "jaxunlearn run --out docs/results/default",
    **{d["key"]: d["command"] for d in DOMAINS},
}


def committed_numerics(key: str) -> str:
    """The numerics mode study ``key`` was made in (native for studies from before the modes)."""
    committed = RESULTS / key / "results.json"
    env = json.loads(committed.read_text()).get("environment", {}) if committed.exists() else {}
    return env.get("numerics", "native")


def compare_args(command: str, scratch: Path, seeds: int | None, numerics: str = "native") -> list[str]:
    """The study's command-line arguments (after ``jaxunlearn``) for a comparison run:
    ``docs/results/X`` paths moved under ``scratch``, no figures, ``--seeds`` if given, in
    ``numerics``."""
    argv = shlex.split(command)[1:]
    out = []
    for arg in argv:
        if arg == "--plots":
            continue
        if arg.startswith("docs/results/"):
            arg = str(scratch / arg.removeprefix("docs/results/"))
        out.append(arg)
    if seeds is not None:
        out += ["--seeds", str(seeds)]
    return [*out, "--numerics", numerics, "--no-progress"]


def run_study_command(args: list[str], cwd: Path = ROOT) -> None:
    """Runs ``jaxunlearn ARGS`` in a fresh process; raises on failure with its output's tail."""
    env = dict(os.environ, JAXUNLEARN_CACHE_DIR=os.environ.get("JAXUNLEARN_CACHE_DIR", "off"))
    proc = subprocess.run(
        [sys.executable, "-m", "jaxunlearn.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"jaxunlearn {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def machine_differences(recorded: dict, here: dict) -> list[str]:
    """What differs between the ``environment`` records of two results.json files among what
    moves the last bits (``jaxunlearn.machine.machine_differences``); for a study recorded
    before the full machine record, its CPU model name and cores (which cannot tell two CPU
    generations apart: docs/REPRODUCIBILITY.md)."""
    from jaxunlearn.machine import machine_differences as differences

    if "machine" in recorded:
        return differences(recorded["machine"], here.get("machine", {}))
    out = [
        f"{name}: {recorded[name]!r} committed, {here.get(name)!r} here"
        for name in ("cpu", "cpu_cores")
        if name in recorded and recorded[name] != here.get(name)
    ]
    return [*out, "the committed study records no CPU family/model, ISA, BLAS kernel or XLA flags"]


def same_machine(key: str) -> bool:
    """Whether this machine matches the one study ``key`` was committed on, in everything its
    results.json records (so bitwise equality is the level to expect)."""
    from jaxunlearn.report import environment_info

    recorded = json.loads((RESULTS / key / "results.json").read_text()).get("environment", {})
    here = environment_info()
    if "machine" in recorded:  # the rerun's XLA flags are the mode's, not this process's
        from jaxunlearn import numerics

        here["machine"]["xla"]["flags"] = numerics.flags_for(
            recorded.get("numerics", "native"), numerics.flags_for("native", here["machine"]["xla"]["flags"])
        )
    return not machine_differences(recorded, here)


def reproduce(
    key: str, scratch: Path, seeds: int | None = None, statistical: bool = True
) -> tuple[Agreement, dict | None]:
    """Reruns study ``key`` in the numerics it was made in and finds the strongest level that
    holds: first on ``seeds`` seeds, then (when neither bitwise nor rounding holds there and
    ``statistical``) on every seed. Returns (the agreement, the rerun's environment record)."""
    committed = RESULTS / key / "results.json"
    if not committed.exists():
        return Agreement(None, (f"no committed {committed.relative_to(ROOT)}",)), None
    expected = json.loads(committed.read_text())
    mode = committed_numerics(key)
    run_study_command(compare_args(STUDIES[key], scratch, seeds, mode))
    got = json.loads((scratch / key / "results.json").read_text())
    agreement = strongest_level(expected, got, seeds, statistical=statistical and seeds is None)
    total = len(next(iter(next(iter(expected["per_seed"].values())).values())))
    if agreement.level is None and statistical and seeds is not None and seeds < total:
        print(
            f"{key}: neither bitwise nor rounding on {seeds} seeds; rerunning all {total} for the statistical level",
            flush=True,
        )
        run_study_command(compare_args(STUDIES[key], scratch, None, mode))
        got = json.loads((scratch / key / "results.json").read_text())
        full = strongest_level(expected, got, None, statistical=True)
        agreement = Agreement(full.level, agreement.detail[:-1] + full.detail[-1:], full.statistical)
    return agreement, got.get("environment")


def write(key: str, numerics: str) -> None:
    """Regenerates study ``key`` in place (docs/results/KEY) in ``numerics``."""
    run_study_command([*shlex.split(STUDIES[key])[1:], "--numerics", numerics, "--no-progress"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated studies (default: all of {', '.join(STUDIES)})")
    parser.add_argument("--seeds", type=int, help="compare the first N seeds first")
    parser.add_argument(
        "--no-statistical",
        action="store_true",
        help="stop at the rounding level: never rerun every seed for the statistical test",
    )
    parser.add_argument("--write", action="store_true", help="rerun into docs/results/ (regenerate)")
    parser.add_argument(
        "--numerics",
        choices=("native", "portable"),
        default="portable",
        help="with --write: the numerics mode to regenerate in (default portable)",
    )
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.only.split(",")] if args.only else list(STUDIES)
    unknown = [k for k in keys if k not in STUDIES]
    if unknown:
        parser.error(f"unknown studies {unknown}; known: {list(STUDIES)}")
    if args.write and args.seeds:
        parser.error("--write reruns whole studies; drop --seeds")
    if args.write:
        for key in keys:
            start = time.perf_counter()
            print(f"{key}: {STUDIES[key]} --numerics {args.numerics}", flush=True)
            write(key, args.numerics)
            print(f"{key}: written ({time.perf_counter() - start:.0f} s)", flush=True)
        return 0
    levels = {}
    with tempfile.TemporaryDirectory(prefix="jaxunlearn-reproduce-") as tmp:
        for key in keys:
            start = time.perf_counter()
            print(f"{key}: {STUDIES[key]} (numerics {committed_numerics(key)})", flush=True)
            try:
                agreement, here = reproduce(key, Path(tmp), args.seeds, not args.no_statistical)
            except RuntimeError as err:
                agreement, here = Agreement(None, (str(err),)), None
            levels[key] = agreement.level
            print(
                f"{key}: {(agreement.level or 'NOT REPRODUCED').upper()} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            for line in agreement.detail:
                print(f"    {line}")
            if agreement.level != "bitwise" and here is not None:
                recorded = json.loads((RESULTS / key / "results.json").read_text()).get("environment", {})
                for line in machine_differences(recorded, here):
                    print(f"    this machine differs from the committed run's: {line}")
    failed = [k for k, level in levels.items() if level is None]
    print("levels: " + ", ".join(f"{k} {level or 'NONE'}" for k, level in levels.items()))
    print("reproduced: every study" if not failed else f"NOT reproduced: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
