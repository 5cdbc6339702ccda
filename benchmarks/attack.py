"""The paper's SVC membership attack: seconds per model, serial against parallel threads,
on a real study's models (issue 28, item 3).

Runs a study (default: the default study's data and model, 8 seeds, 20 epochs), then
attacks every row's models once with one thread and once with ``--workers`` threads,
checks that both give the same rates, and prints one JSON line: seconds per model each
way, the study's own wall time (training, unlearning and metrics) and what the attack
would cost at ``--at-seeds`` seeds with and without a cap of ``--cap`` models per row.
``--paper-size`` times the attack alone instead, on synthetic losses of the paper's size
(2,000 members and 2,000 non-members drawn per model, 800 targets), ``--seeds`` models.
Usage::

    python -m benchmarks.attack [--seeds 8] [--epochs 20] [--workers N] [--at-seeds 512]
    python -m benchmarks.attack --paper-size [--seeds 8] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dataset", default="taylor")
    parser.add_argument("--workers", type=int, default=None, help="default: the cores this process may use")
    parser.add_argument("--at-seeds", type=int, default=512)
    parser.add_argument("--cap", type=int, default=64)
    parser.add_argument("--paper-size", action="store_true", help="time the attack alone on synthetic losses")
    args = parser.parse_args(argv)
    if args.paper_size:
        paper_size(args.seeds, args.workers)
        return

    import numpy as np

    from jaxunlearn.config import StudyConfig
    from jaxunlearn.machine import cpu_description, package_versions
    from jaxunlearn.metrics.membership import attack_workers
    from jaxunlearn.metrics.suite import svc_attack
    from jaxunlearn.study import load_task, run_study

    cfg = StudyConfig(dataset=args.dataset, seeds=args.seeds, train_epochs=args.epochs)
    task, _ = load_task(cfg, log=lambda _: None)
    started = time.perf_counter()
    result = run_study(cfg, progress=False, log=lambda _: None, task=task)
    study_s = time.perf_counter() - started
    y_mean, y_std = float(task.y_mean), float(task.y_std)
    splits = ("train", "test")
    targets = {s: (result.targets[s] - y_mean) / y_std for s in splits}
    preds = {row: {s: (p[s] - y_mean) / y_std for s in splits} for row, p in result.predictions.items()}
    workers = args.workers or attack_workers()
    seconds, rates = {}, {}
    for threads in (1, workers):
        started = time.perf_counter()
        rates[threads] = {
            row: svc_attack(p, targets, result.forget, y_std, cfg.mia_samples, cfg.seed) for row, p in preds.items()
        }
        seconds[threads] = time.perf_counter() - started
    same = all(np.array_equal(rates[1][row], rates[workers][row], equal_nan=True) for row in preds)
    models = len(preds) * args.seeds
    per_model = {threads: s / models for threads, s in seconds.items()}
    at_scale = len(preds) * args.at_seeds
    print(
        json.dumps(
            {
                "rows": len(preds),
                "seeds": args.seeds,
                "epochs": args.epochs,
                "mia_samples": cfg.mia_samples,
                "study_wall_s": round(study_s, 1),
                "attack_s_serial": round(seconds[1], 2),
                f"attack_s_{workers}_threads": round(seconds[workers], 2),
                "s_per_model_serial": round(per_model[1], 3),
                f"s_per_model_{workers}_threads": round(per_model[workers], 3),
                "same_rates": same,
                f"estimate_s_at_{args.at_seeds}_seeds_{workers}_threads": round(per_model[workers] * at_scale, 1),
                f"estimate_s_at_{args.at_seeds}_seeds_cap_{args.cap}": round(
                    per_model[workers] * len(preds) * min(args.cap, args.at_seeds), 1
                ),
                "cpu": cpu_description().get("model_name"),
                "versions": {k: package_versions().get(k) for k in ("jax", "scikit-learn", "numpy")},
            }
        ),
        flush=True,
    )


def paper_size(seeds: int, workers: int | None) -> None:
    """Seconds per model of the attack at the paper's size, one thread against ``workers``."""
    import numpy as np

    from jaxunlearn.metrics.membership import attack_workers, mia_member_rates

    rng = np.random.default_rng(0)
    member, nonmember = rng.gamma(2.0, 1.0, (seeds, 5000)), rng.gamma(2.0, 1.2, (seeds, 3000))
    target = rng.gamma(2.0, 1.1, (seeds, 800))
    workers = workers or attack_workers()
    mia_member_rates(member[:1], nonmember[:1], target[:1], workers=1)  # imports sklearn
    seconds, rates = {}, {}
    for threads in (1, workers):
        started = time.perf_counter()
        rates[threads] = mia_member_rates(member, nonmember, target, workers=threads)
        seconds[threads] = time.perf_counter() - started
    print(
        json.dumps(
            {
                "paper_size": True,
                "models": seeds,
                "s_per_model_serial": round(seconds[1] / seeds, 3),
                f"s_per_model_{workers}_threads": round(seconds[workers] / seeds, 3),
                "speedup": round(seconds[1] / seconds[workers], 2),
                "same_rates": bool(np.array_equal(rates[1], rates[workers])),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
