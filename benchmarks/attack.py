"""The paper's SVC membership attack: seconds per model, serial against parallel threads,
and its share of a study's wall time (issue 28, item 3).

Three modes, each printing one JSON line:

- default: runs a study (the default study's data and model, 8 seeds, 20 epochs), then
  attacks every row's models once with one thread and once with ``--workers`` threads,
  checks that both give the same rates, and reports seconds per model each way, what the
  study's own metrics spent on the attack, and what the attack would cost at
  ``--at-seeds`` seeds with and without a cap of ``--cap`` models per row;
- ``--share``: runs a study at ``--seeds`` seeds per value of ``--cap`` (a comma list:
  attacking at most that many models per row; 0: every model), one after the other in one
  process (the first compiles, the next reuse its programs), and reports each one's wall
  time, its stages' times, and the attack's thread-seconds and the seconds the study
  waited for it (off the CPU the attacks run while the device trains the later rows and
  relearns; on the CPU while it relearns): the attack's share of the study's wall time,
  as measured;
- ``--paper-size``: the attack alone, on synthetic losses of the paper's size (2,000
  members and 2,000 non-members drawn per model, 800 targets), ``--seeds`` models.

Usage::

    python -m benchmarks.attack [--seeds 8] [--epochs 20] [--workers N] [--at-seeds 512]
    python -m benchmarks.attack --share --seeds 512 --epochs 100 [--cap 0,64] \\
        [--dataset synthetic --dataset-arg n=3900 --dataset-arg dim=96]
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
    parser.add_argument("--dataset-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=None, help="default: the cores this process may use")
    parser.add_argument("--at-seeds", type=int, default=512)
    parser.add_argument(
        "--cap", default="64", help="models attacked per row (--share: a comma list of studies; 0 = every model)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--share", action="store_true", help="the attack's share of one study's wall time")
    mode.add_argument("--paper-size", action="store_true", help="time the attack alone on synthetic losses")
    args = parser.parse_args(argv)
    try:
        caps = [int(c) for c in args.cap.split(",")]
    except ValueError:
        parser.error(f"--cap must be integers separated by commas, got {args.cap!r}")
    if min(caps) < 0 or args.seeds < 1 or (len(caps) > 1 and not args.share):
        parser.error("--seeds must be >= 1, --cap >= 0, and only --share takes several caps")
    if args.paper_size:
        paper_size(args.seeds, args.workers)
        return

    from jaxunlearn.cli import parse_model_args
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.machine import cpu_description, package_versions
    from jaxunlearn.study import load_task, run_study

    for index, cap in enumerate(caps if args.share else [None]):
        cfg = StudyConfig(
            dataset=args.dataset,
            dataset_kwargs=parse_model_args(args.dataset_arg, "--dataset-arg"),
            seeds=args.seeds,
            train_epochs=args.epochs,
            mia_models=cap or None,
        )
        task, _ = load_task(cfg, log=lambda _: None)
        started = time.perf_counter()
        result = run_study(cfg, progress=False, log=lambda _: None, task=task)
        study_s = time.perf_counter() - started
        timing = result.metric_timing
        common = {
            "rows": len(result.rows),
            "seeds": args.seeds,
            "epochs": args.epochs,
            "dataset": args.dataset,
            "train_rows": result.task.get("train"),
            "mia_samples": cfg.mia_samples,
            "study_wall_s": round(study_s, 2),
            "metrics_wall_s": round(timing["wall"], 2),
            "attacked_models": timing["attacked_models"],
            "attack_threads": timing["attack_threads"],
            "attack_thread_s": round(timing["attack_busy"], 2),
            "attack_waited_s": round(timing["attack_waited"], 2),
            "attacked_during_training": timing["attacked_during_training"],
            "attack_share_of_wall": round(timing["attack_waited"] / study_s, 4),
        }
        machine = {
            "backend": result.environment.get("jax_backend"),
            "plan": result.plan.seed_strategy,
            "cpu": cpu_description().get("model_name"),
            "versions": {k: package_versions().get(k) for k in ("jax", "scikit-learn", "numpy")},
        }
        if not args.share:
            serial_vs_threads(args, cfg, task, result, common, machine)
            return
        stages = {row: {k: round(t[k], 2) for k in ("compile", "run")} for row, t in result.timings.items()}
        line = {"share": True, "study": index, "cap": cap or None, **common, "stages": stages, **machine}
        print(json.dumps(line), flush=True)


def serial_vs_threads(args, cfg, task, result, common: dict, machine: dict) -> None:
    """Attacks every row's models of ``result`` with one thread, then ``args.workers``."""
    import numpy as np

    from jaxunlearn.metrics.membership import attack_workers
    from jaxunlearn.metrics.suite import svc_attack

    y_mean, y_std = float(task.y_mean), float(task.y_std)
    splits = ("train", "test")
    targets = {s: (result.targets[s] - y_mean) / y_std for s in splits}
    preds = {row: {s: (p[s] - y_mean) / y_std for s in splits} for row, p in result.predictions.items()}
    workers = args.workers or attack_workers()
    seconds, rates = {}, {}
    for threads in (1, workers):
        started = time.perf_counter()
        rates[threads] = {
            row: svc_attack(p, targets, result.forget, y_std, cfg.mia_samples, cfg.seed, workers=threads)
            for row, p in preds.items()
        }
        seconds[threads] = time.perf_counter() - started
    same = all(np.array_equal(rates[1][row], rates[workers][row], equal_nan=True) for row in preds)
    models = len(preds) * args.seeds
    per_model = {threads: s / models for threads, s in seconds.items()}
    at_scale = len(preds) * args.at_seeds
    print(
        json.dumps(
            {
                **common,
                "attack_s_serial": round(seconds[1], 2),
                f"attack_s_{workers}_threads": round(seconds[workers], 2),
                "s_per_model_serial": round(per_model[1], 4),
                f"s_per_model_{workers}_threads": round(per_model[workers], 4),
                "speedup": round(seconds[1] / seconds[workers], 2),
                "same_rates": same,
                f"thread_s_at_{args.at_seeds}_seeds": round(per_model[1] * at_scale, 1),
                f"thread_s_at_{args.at_seeds}_seeds_cap_{args.cap}": round(
                    per_model[1] * len(preds) * min(int(args.cap), args.at_seeds), 1
                ),
                **machine,
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
