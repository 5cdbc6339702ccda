"""Does bf16 compute keep every quality metric within seed-to-seed noise of fp32?

Compares two studies of the same configuration that differ only in ``--dtype`` (same
seeds, so the comparison is paired seed by seed). A metric is *within noise* when the mean
paired difference (bf16 - fp32) is smaller in magnitude than the fp32 seed-to-seed
standard deviation, the spread a user already lives with when choosing seeds.

    python -m benchmarks.compare_precision FP32/results.json BF16/results.json --out table.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jaxunlearn.claims import paired_interval

METRICS = ("test_retain_mae", "test_forget_mae", "train_forget_mae", "wasserstein", "mia", "ain")
ROWS = ("original", "retrain", "finetune", "gaussian", "blindspot")


def compare(fp32: dict, bf16: dict) -> list[dict]:
    """One record per (model, metric): fp32 and bf16 means, paired difference, noise, verdict.

    Raises:
        ValueError: the two studies differ in anything but the dtype.
    """
    a, b = dict(fp32["config"]), dict(bf16["config"])
    ignore = {"dtype", "plan", "task", "timings", "divergence"}
    differ = sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))
    if differ:
        raise ValueError(f"the studies differ in more than the dtype: {differ}")
    if (a.get("dtype"), b.get("dtype")) != ("float32", "bfloat16"):
        raise ValueError(f"expected a float32 and a bfloat16 study, got {a.get('dtype')} and {b.get('dtype')}")
    out = []
    for row in ROWS:
        for metric in METRICS:
            if row not in fp32["per_seed"] or metric not in fp32["per_seed"][row]:
                continue
            x = np.asarray(fp32["per_seed"][row][metric], np.float64)
            y = np.asarray(bf16["per_seed"][row][metric], np.float64)
            if row == "retrain" and metric in ("wasserstein", "ain"):
                continue  # 0 and 1 by definition
            mean, half, n = paired_interval(y - x)
            noise = float(np.nanstd(x, ddof=1))
            out.append(
                {
                    "model": row,
                    "metric": metric,
                    "fp32": float(np.nanmean(x)),
                    "bf16": float(np.nanmean(y)),
                    "diff": mean,
                    "ci95": half,
                    "fp32_seed_std": noise,
                    "n": n,
                    "within_noise": bool(abs(mean) <= noise),
                }
            )
    return out


def to_markdown(records: list[dict]) -> str:
    lines = [
        "| model | metric | fp32 mean | bf16 mean | bf16 - fp32 (paired, ± 95% CI) | fp32 seed std | within noise |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['metric']} | {r['fp32']:.4g} | {r['bf16']:.4g} | {r['diff']:.3g} ± "
            f"{r['ci95']:.3g} | {r['fp32_seed_std']:.3g} | {'yes' if r['within_noise'] else '**no**'} |"
        )
    held = sum(r["within_noise"] for r in records)
    lines.append(f"\n{held} of {len(records)} metrics within the fp32 seed-to-seed standard deviation.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32", type=Path, help="results.json of the float32 study")
    parser.add_argument("bf16", type=Path, help="results.json of the bfloat16 study")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    try:
        records = compare(*(json.loads(p.read_text()) for p in (args.fp32, args.bf16)))
    except (OSError, ValueError) as err:
        print(f"compare_precision: {err}", file=sys.stderr)
        return 2
    text = to_markdown(records)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
