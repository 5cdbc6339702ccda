"""Splitting the seeds over several XLA:CPU devices: one study, timed per device count.

XLA:CPU runs one device's program mostly on one core when its operations are small (the
MLP and LSTM studies), so sequential seeds leave the other cores idle. With
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` the seed mesh
(``LoopPlan.devices``) gives each of D host devices its own block of seeds. This runs the
same ``jaxunlearn run`` study in fresh processes at each device count, alternating the
counts (``--repeats`` rounds, against the machine's drift), and reports each stage's run
and compile seconds and the largest metric difference from one device.

    python benchmarks/cpu_devices.py --devices 1,2 --repeats 2 --out cpu_devices.jsonl \\
        --summary cpu_devices.md -- --seeds 8 --epochs 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TIMING_METRICS = ("run_seconds", "time_vs_retrain")


def run_once(devices: int, study_args: list[str], work: Path) -> dict:
    """One ``jaxunlearn run`` in a fresh process with ``devices`` host devices."""
    out = work / f"d{devices}"
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAXUNLEARN_CACHE_DIR": "off",
    }
    cmd = [
        sys.executable,
        "-m",
        "jaxunlearn.cli",
        "run",
        *study_args,
        "--devices",
        str(devices),
        "--no-checkpoints",
        "--no-progress",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads((out / "results.json").read_text())


def max_relative_difference(per_seed: dict, reference: dict) -> float:
    """The largest |a - b| / |b| over every stage, metric and seed (timings left out)."""
    worst = 0.0
    for stage, metrics in reference.items():
        for name, ref in metrics.items():
            if name in TIMING_METRICS:
                continue
            a, b = np.asarray(per_seed[stage][name], float), np.asarray(ref, float)
            with np.errstate(invalid="ignore", divide="ignore"):
                rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
            worst = max(worst, float(np.nanmax(rel)) if np.isfinite(rel).any() else 0.0)
    return worst


def record(devices: int, round_: int, results: dict, reference: dict | None) -> dict:
    timings = results["config"]["timings"]
    env = results["environment"]
    return {
        "kind": "cpu_devices",
        "devices": devices,
        "round": round_,
        "seeds": results["config"]["seeds"],
        "plan": results["config"]["plan"],
        "dataset": results["config"]["dataset"],
        "model": results["config"]["model"],
        "stages": timings,
        "run_s": sum(t["run"] for t in timings.values()),
        "compile_s": sum(t["compile"] for t in timings.values()),
        "max_rel_metric_diff_vs_1": None
        if reference is None
        else max_relative_difference(results["per_seed"], reference["per_seed"]),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "versions": env.get("versions"),
        "python": env.get("python"),
        "commit": env.get("git_commit"),
    }


def summary(records: list[dict]) -> str:
    counts = sorted({r["devices"] for r in records})
    stages = list(records[0]["stages"])
    first = records[0]
    lines = [
        f"Study: {first['dataset']} / {first['model']}, {first['seeds']} seeds, "
        f"{first['cpu_count']} CPU cores, float32; median over {max(r['round'] for r in records) + 1} "
        "alternating rounds, fresh process each (run seconds, compile separate).",
        "",
        "| devices | " + " | ".join(f"{s} run s" for s in stages) + " | all stages run s | compile s | "
        "speedup | max metric diff vs 1 device |",
        "|---" * (len(stages) + 5) + "|",
    ]
    base = None
    for d in counts:
        rows = [r for r in records if r["devices"] == d]
        run = float(np.median([r["run_s"] for r in rows]))
        base = run if base is None else base
        diffs = [r["max_rel_metric_diff_vs_1"] for r in rows if r["max_rel_metric_diff_vs_1"] is not None]
        lines.append(
            f"| {d} | "
            + " | ".join(f"{np.median([r['stages'][s]['run'] for r in rows]):.2f}" for s in stages)
            + f" | {run:.2f} | {np.median([r['compile_s'] for r in rows]):.1f} | {base / run:.2f}x | "
            + (f"{max(diffs):.1e}" if diffs else "(reference)")
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    study_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2", help="comma-separated device counts (1 first: the reference)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--out", default="cpu_devices.jsonl")
    parser.add_argument("--summary", default=None, help="also write the Markdown table here")
    args = parser.parse_args(own)
    counts = [int(d) for d in args.devices.split(",")]
    if counts[0] != 1:
        raise SystemExit("--devices must start with 1 (the reference)")
    records = []
    with tempfile.TemporaryDirectory() as tmp, open(args.out, "a") as sink:
        for round_ in range(args.repeats):
            reference = None
            for d in counts if round_ % 2 == 0 else [1, *reversed(counts[1:])]:
                results = run_once(d, study_args, Path(tmp))
                reference = results if d == 1 else reference
                records.append(record(d, round_, results, None if d == 1 else reference))
                sink.write(json.dumps(records[-1]) + "\n")
                sink.flush()
                print(
                    f"round {round_}, {d} device(s): run {records[-1]['run_s']:.2f} s, "
                    f"compile {records[-1]['compile_s']:.1f} s",
                    flush=True,
                )
    table = summary(records)
    print(table)
    if args.summary:
        Path(args.summary).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
