"""Where SISA sits beside the approximate unlearners (issue 27): utility, forgetting and
cost of SISA with S shards against fine-tuning, Gaussian and Blindspot, on a domain's
data and forget sets.

Per (domain, forget set): one study of the approximate unlearners, then one study of SISA
per shard count, sharing the original and retrained models through a checkpoint folder
(so every row is judged against the same retrained reference). Prints one JSON line per
row with the means over seeds and the device and versions; ``--out`` also writes them.
Usage::

    python -m benchmarks.sisa_front [--domains forecasting,text] [--shards 1,4,8,16]
        [--forgets default,random:0.1,random:0.002] [--seeds 4] [--epochs 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

DOMAINS = {  # the committed configs' data and recipe (configs/*.toml), on their offline stand-ins
    "forecasting": {"dataset": "taylor", "model": "mlp", "loss": "l1"},
    "text": {"dataset": "lee", "model": "lstm", "loss": "mse"},
}
APPROXIMATE = ("finetune", "gaussian", "blindspot")
COLUMNS = ("test_retain_mae", "test_forget_mae", "train_forget_mae", "wasserstein", "mia", "time_vs_retrain")


def row_record(result, row: str) -> dict:
    """Means over seeds of the columns, and SISA's stage statistics, for one table row."""
    import numpy as np

    out = {k: float(np.nanmean(result.per_seed[row][k])) for k in COLUMNS}
    out["run_seconds"] = float(result.timings[row]["run"])
    for key, values in result.stage_stats.get(row, {}).items():
        out[key] = float(np.mean(values))
    return out


def measure(domain: str, forget: str, shards: list[int], seeds: int, epochs: int, log=print) -> list[dict]:
    """The records of one (domain, forget set): the approximate rows, then SISA per S."""
    import jax

    from jaxunlearn.config import StudyConfig
    from jaxunlearn.machine import package_versions
    from jaxunlearn.study import run_study

    base = StudyConfig(
        **DOMAINS[domain],
        forget=None if forget == "default" else forget,
        seeds=seeds,
        train_epochs=epochs,
        batch_size=256,
        settings={"finetune": {"epochs": 5}, "gaussian": {"epochs": 1}, "blindspot": {"proxy_epochs": 2, "epochs": 1}},
    )
    common = {
        "domain": domain,
        "dataset": base.dataset,
        "forget": forget,
        "seeds": seeds,
        "epochs": epochs,
        "device": jax.devices()[0].device_kind,
        "versions": {k: package_versions().get(k) for k in ("jax", "jaxlib", "flax")},
    }
    records = []
    with tempfile.TemporaryDirectory(prefix="jaxunlearn-sisa-") as folder:
        quiet = lambda _: None  # noqa: E731
        result = run_study(
            dataclasses.replace(base, unlearners=APPROXIMATE), progress=False, log=quiet, checkpoint_dir=folder
        )
        for row in ("original", "retrain", *APPROXIMATE):
            records.append({**common, "row": row, "shards": None, **row_record(result, row)})
            log(json.dumps(records[-1]))
        for count in shards:
            cfg = dataclasses.replace(base, unlearners=("sisa",), settings={"sisa": {"shards": count}})
            started = time.perf_counter()
            result = run_study(cfg, progress=False, log=quiet, checkpoint_dir=folder)
            record = {**common, "row": "sisa", "shards": count, **row_record(result, "sisa")}
            record["study_wall_s"] = round(time.perf_counter() - started, 1)
            records.append(record)
            log(json.dumps(record))
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", default="forecasting,text")
    parser.add_argument("--shards", default="1,4,8,16")
    parser.add_argument("--forgets", default="default,random:0.1,random:0.002")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    shards = [int(s) for s in args.shards.split(",")]

    def log(line: str) -> None:
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")

    for domain in args.domains.split(","):
        for forget in args.forgets.split(","):
            measure(domain, forget, shards, args.seeds, args.epochs, log)


if __name__ == "__main__":
    main()
