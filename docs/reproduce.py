"""Reruns the committed studies and compares their per-seed metrics bitwise.

    python docs/reproduce.py                      # every study: compare, write nothing
    python docs/reproduce.py --only default,text  # some of them
    python docs/reproduce.py --seeds 2 --only default   # the first 2 seeds only (seed i's
                                                  # keys do not depend on the seed count; use
                                                  # 2 or more: XLA compiles one seed differently)
    python docs/reproduce.py --write --only text  # regenerate docs/results/text in place
    make reproduce                                # = the first line

Each study's command is the one that wrote it: ``STUDIES`` (the default study of
``make run``, then every study of docs/RESULTS.md, from ``make_results.DOMAINS``). In
compare mode each command runs in a fresh process into a temporary folder (figures off),
with the checkpoint folders of earlier studies that it reuses redirected there too, and
every per-seed metric except wall times must equal the committed ``results.json`` exactly.
Exit status 0 when every compared study reproduces, 1 otherwise.

Bitwise equality needs the machine the studies ran on: the CPU model and the number of cores
the process may use (XLA:CPU splits its work over a thread pool of that size, which changes
the float rounding; the default study run on 1 of the 2 cores, under ``taskset -c 1``,
differed in 111 of its 120 first-two-seed values). A failed comparison says when either
differs from what ``results.json`` recorded.
"""

from __future__ import annotations

import argparse
import json
import math
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
from make_results import DOMAINS  # noqa: E402 (importable only once docs/ is on sys.path)

# Per-seed entries that are wall times, not results.
TIMES = ("run_seconds", "time_vs_retrain")
STUDIES: dict[str, str] = {
    "default": "jaxunlearn run --out docs/results/default",
    **{d["key"]: d["command"] for d in DOMAINS},
}


def compare_args(command: str, scratch: Path, seeds: int | None) -> list[str]:
    """The study's command-line arguments (after ``jaxunlearn``) for a comparison run:
    ``docs/results/X`` paths moved under ``scratch``, no figures, ``--seeds`` if given."""
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
    return [*out, "--no-progress"]


def per_seed_differences(expected: dict, got: dict, seeds: int | None = None) -> tuple[int, list[str]]:
    """(number of per-seed values compared, descriptions of those that differ) between two
    results.json ``per_seed`` tables; ``seeds``: compare the first ``seeds`` only."""
    compared, diffs = 0, []
    for row, metrics in expected.items():
        if row not in got:
            diffs.append(f"{row}: row missing")
            continue
        for name, values in metrics.items():
            if name in TIMES:
                continue
            want = values[:seeds] if seeds is not None else values
            have = got[row].get(name)
            have = have[:seeds] if have is not None and seeds is not None else have
            compared += len(want)
            if have is None or len(have) != len(want):
                diffs.append(f"{row}.{name}: {len(want)} values committed, {None if have is None else len(have)} now")
                continue
            for i, (a, b) in enumerate(zip(want, have, strict=True)):
                same = (a is None and b is None) or (
                    a is not None and b is not None and (a == b or (math.isnan(a) and math.isnan(b)))
                )
                if not same:
                    diffs.append(f"{row}.{name}[seed {i}]: {a!r} committed, {b!r} now")
    for row in got:
        if row not in expected:
            diffs.append(f"{row}: a row the committed study does not have")
    return compared, diffs


def run_study_command(args: list[str], cwd: Path = ROOT) -> None:
    """Runs ``jaxunlearn ARGS`` in a fresh process; raises on failure with its output's tail."""
    env = dict(os.environ, JAXUNLEARN_CACHE_DIR=os.environ.get("JAXUNLEARN_CACHE_DIR", "off"))
    proc = subprocess.run(
        [sys.executable, "-m", "jaxunlearn.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"jaxunlearn {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def machine_differences(key: str) -> list[str]:
    """What about this machine differs from the one study ``key`` was committed on, among what
    moves XLA:CPU's float rounding: its CPU model and the cores the process may use."""
    from jaxunlearn.report import environment_info

    committed = RESULTS / key / "results.json"
    env = json.loads(committed.read_text()).get("environment", {}) if committed.exists() else {}
    here = environment_info()
    return [
        f"{name}: {env[name]!r} committed, {here[name]!r} here"
        for name in ("cpu", "cpu_cores")
        if name in env and env[name] != here.get(name)
    ]


def reproduce(key: str, scratch: Path, seeds: int | None = None, write: bool = False) -> tuple[int, list[str]]:
    """Reruns study ``key``: (values compared, differences); with ``write``, in place."""
    committed = RESULTS / key / "results.json"
    expected = json.loads(committed.read_text())["per_seed"] if committed.exists() else {}
    if write:
        run_study_command([*shlex.split(STUDIES[key])[1:], "--no-progress"])
        got = json.loads(committed.read_text())["per_seed"]
    else:
        run_study_command(compare_args(STUDIES[key], scratch, seeds))
        got = json.loads((scratch / key / "results.json").read_text())["per_seed"]
    if not expected:
        if write:
            return 0, []  # a new study: nothing to compare with
        return 0, [f"no committed {committed.relative_to(ROOT)}"]
    return per_seed_differences(expected, got, seeds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated studies (default: all of {', '.join(STUDIES)})")
    parser.add_argument("--seeds", type=int, help="compare the first N seeds only")
    parser.add_argument("--write", action="store_true", help="rerun into docs/results/ (regenerate)")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.only.split(",")] if args.only else list(STUDIES)
    unknown = [k for k in keys if k not in STUDIES]
    if unknown:
        parser.error(f"unknown studies {unknown}; known: {list(STUDIES)}")
    if args.write and args.seeds:
        parser.error("--write reruns whole studies; drop --seeds")
    failed = []
    with tempfile.TemporaryDirectory(prefix="jaxunlearn-reproduce-") as tmp:
        for key in keys:
            start = time.perf_counter()
            print(f"{key}: {STUDIES[key]}", flush=True)
            try:
                compared, diffs = reproduce(key, Path(tmp), args.seeds, args.write)
            except RuntimeError as err:
                compared, diffs = 0, [str(err)]
            took = time.perf_counter() - start
            verdict = "identical" if not diffs else f"{len(diffs)} DIFFER"
            print(f"{key}: {compared - len(diffs)} of {compared} per-seed values {verdict} ({took:.0f} s)", flush=True)
            for line in diffs[:20]:
                print(f"    {line}")
            for line in machine_differences(key) if diffs else ():
                print(f"    this machine differs from the committed run's (XLA:CPU's results depend on it): {line}")
            if diffs:
                failed.append(key)
    print("reproduced: all identical" if not failed else f"NOT reproduced: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
