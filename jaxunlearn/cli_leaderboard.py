"""The ``tune`` and ``leaderboard`` commands (the fair benchmark: ``jaxunlearn.leaderboard``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from jaxunlearn.config import StudyConfig


def add_parsers(sub, DEFAULTS: StudyConfig) -> None:
    from jaxunlearn.cli import _add_study_options

    tune = sub.add_parser(
        "tune",
        help="tune unlearners with an equal budget of trials against retraining (validation rows only)",
        description="Draws --trials points per unlearner from its declared ranges, runs them on seeds of their "
        "own (and, for a random scenario, its own forget draw) and writes the chosen values: "
        "`jaxunlearn run --tuned FILE` applies them.",
    )
    _add_study_options(tune, DEFAULTS, seeds=False)
    _add_budget_options(tune)
    tune.add_argument("--out", default="tuned.json", help="the tuned-values file to write (default tuned.json)")

    board = sub.add_parser(
        "leaderboard",
        help="the fair benchmark: tasks x scenarios x unlearners, each tuned with the same budget, ranked",
        description="Each cell (task, scenario, unlearner) is tuned on its own seeds and forget draw, scored on "
        "fresh ones, and saved as it ends; rerunning continues where a killed run stopped, and new "
        "unlearners (--plugin) join an existing leaderboard without recomputing the others.",
    )
    _add_study_options(board, DEFAULTS, seeds=True)
    _add_budget_options(board)
    board.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="DATASET[:MODEL]",
        help="a task (repeatable; default: --dataset with --model); other study options apply to every task",
    )
    board.add_argument(
        "--scenarios",
        help="comma-separated scenarios (default: every registered one; see `jaxunlearn list`)",
    )
    board.add_argument(
        "--models",
        type=int,
        default=64,
        help="N of each cell's per-example tests: NeurIPS'23 F of N unlearned models against N retrained (and a "
        "second N, the noise floor), U-LiRA on N shadows for random-row scenarios (default 64; 0: none)",
    )
    board.add_argument("--groups", type=int, default=16, help="U-LiRA's training sets (default 16; divides --models)")
    board.add_argument("--shard", default="0/1", metavar="I/N", help="run only cells k with k %% N == I (default 0/1)")
    board.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="merge the cell results of these leaderboard folders into --out and rebuild its leaderboard",
    )
    board.add_argument("--out", default="leaderboard", help="the leaderboard folder (default leaderboard)")


def _add_budget_options(parser: argparse.ArgumentParser) -> None:
    """The options tune and leaderboard share: the tuning budget, and progress bars."""
    parser.add_argument("--trials", type=int, default=64, help="tuning trials per unlearner (default 64)")
    parser.add_argument("--tune-seeds", type=int, default=4, help="seeds of each tuning study (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def command_tune(args: argparse.Namespace) -> int:
    from jaxunlearn.cli import config_from_args, scenario_forget
    from jaxunlearn.tuning import TUNING_DRAW, tune, tuning_config, write_tuned

    if args.tuned is not None:
        raise ValueError("tune writes a tuned-values file; it does not take --tuned")
    cfg = config_from_args(args)
    forget = cfg.forget if args.scenario is None else scenario_forget(cfg, args.scenario, None, TUNING_DRAW)
    tune_cfg = tuning_config(cfg, seeds=args.tune_seeds, forget=forget)
    result = tune(tune_cfg, args.trials, progress=not args.no_progress, log=lambda m: print(m, flush=True))
    path = write_tuned(args.out, result, cfg, args.scenario)
    details = path.with_name(path.stem + "-trials.json")
    details.write_text(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    print(f"\nwrote {path} (apply with --tuned {path}) and {details}")
    return 0


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as err:
        raise ValueError(f"--shard must be I/N, e.g. 0/4, got {text!r}") from err
    return index, count


def command_leaderboard(args: argparse.Namespace) -> int:
    from jaxunlearn.cli import config_from_args
    from jaxunlearn.leaderboard import BenchSettings, BenchTask, merge_leaderboards, run_leaderboard

    out = Path(args.out).expanduser()
    if args.merge:
        board = merge_leaderboards(args.merge, out)
        print(f"merged {board['cells']} cells into {out / 'leaderboard.md'}")
        return 0
    if args.scenario is not None or args.tuned is not None or args.forget is not None:
        raise ValueError(
            "the leaderboard chooses each cell's rows and values: use --scenarios, not --scenario, --forget or --tuned"
        )
    from jaxunlearn.study import validate_config

    cfg = config_from_args(args)
    tasks = []
    for spec in args.task or [f"{cfg.dataset}:{cfg.model}"]:
        dataset, _, model = spec.partition(":")
        task_cfg = dataclasses.replace(cfg, dataset=dataset, model=model or cfg.model)
        validate_config(task_cfg)
        tasks.append(BenchTask(spec.replace(":", "-"), task_cfg))
    settings = BenchSettings(
        **({"scenarios": tuple(s.strip() for s in args.scenarios.split(",") if s.strip())} if args.scenarios else {}),
        unlearners=None if args.unlearners is None else cfg.unlearners,
        trials=args.trials,
        tune_seeds=args.tune_seeds,
        seeds=cfg.seeds,
        shard=parse_shard(args.shard),
        models=args.models,
        groups=args.groups,
    )
    try:
        board = run_leaderboard(out, tasks, settings, progress=not args.no_progress, log=lambda m: print(m, flush=True))
    except KeyboardInterrupt:
        print(f"\njaxunlearn: interrupted; finished cells are saved in {out}; rerun the same command", file=sys.stderr)
        return 130
    print(f"\n{(out / 'leaderboard.md').read_text()}")
    print(f"wrote {out / 'leaderboard.md'} and {out / 'leaderboard.json'} ({board['cells']} cells)")
    return 0
