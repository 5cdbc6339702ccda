"""Command line: ``jaxunlearn run`` (a multi-seed study) and ``jaxunlearn list``."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from jaxunlearn.config import StudyConfig

DEFAULTS = StudyConfig()


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_model_args(items: list[str]) -> tuple[tuple[str, object], ...]:
    """["hidden=64,64", "width=32"] -> (("hidden", (64, 64)), ("width", 32))."""
    out = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"--model-arg must look like name=value, got {item!r}")
        name, text = item.split("=", 1)
        value = tuple(_value(t) for t in text.split(",")) if "," in text else _value(text)
        out.append((name.strip(), value))
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxunlearn",
        description="Machine unlearning for deep regression models (Blindspot, Gaussian amnesiac, fine-tune vs "
                    "retraining), many seeds in one compiled program.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a multi-seed unlearning study and print the comparison table",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--dataset", default=DEFAULTS.dataset, help="dataset name (see `jaxunlearn list`)")
    run.add_argument("--forget", default=None,
                     help="forget rule: 'label<=30', 'label>35000', 'label:10:20', 'quantile>=0.8', 'random:0.1' "
                          "(default: the dataset's own rule)")
    run.add_argument("--model", default=DEFAULTS.model, help="model name (see `jaxunlearn list`)")
    run.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                     help="model field, e.g. --model-arg hidden=128,128 or --model-arg width=32 (repeatable)")
    run.add_argument("--loss", default=DEFAULTS.loss, help="l1, mse or quantile")
    run.add_argument("--seeds", type=int, default=DEFAULTS.seeds, help="number of seeds")
    run.add_argument("--seed", type=int, default=DEFAULTS.seed, help="root seed")
    run.add_argument("--epochs", type=int, default=DEFAULTS.train_epochs,
                     help="training epochs of the original and retrained models")
    run.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    for name in ("finetune", "gaussian", "proxy", "blindspot"):
        run.add_argument(f"--{name}-epochs", type=int, default=getattr(DEFAULTS, f"{name}_epochs"))
    run.add_argument("--augment-pad", type=int, default=DEFAULTS.augment_pad,
                     help="image augmentation: random-crop padding (0 = off)")
    run.add_argument("--unlearners", default=",".join(DEFAULTS.unlearners),
                     help="comma-separated unlearners to compare with retraining")
    run.add_argument("--seed-strategy", default=DEFAULTS.seed_strategy, help="auto, vmap, map or host")
    run.add_argument("--dtype", default=DEFAULTS.dtype, help="model compute dtype: float32 or bfloat16")
    run.add_argument("--out", default="results", help="output folder for results.json and results.md")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub.add_parser("list", help="list datasets, models, unlearners and losses")
    return parser


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    return StudyConfig(
        dataset=args.dataset, forget=args.forget, model=args.model, model_kwargs=parse_model_args(args.model_arg),
        loss=args.loss, seeds=args.seeds, seed=args.seed, batch_size=args.batch_size, train_epochs=args.epochs,
        finetune_epochs=args.finetune_epochs, gaussian_epochs=args.gaussian_epochs, proxy_epochs=args.proxy_epochs,
        blindspot_epochs=args.blindspot_epochs, augment_pad=args.augment_pad,
        unlearners=tuple(u.strip() for u in args.unlearners.split(",") if u.strip()),
        seed_strategy=args.seed_strategy, dtype=args.dtype,
    )


def enable_compilation_cache() -> None:
    """Persist compiled XLA programs between runs (JAXUNLEARN_CACHE_DIR; 'off' disables)."""
    import jax

    cache = os.environ.get("JAXUNLEARN_CACHE_DIR", str(Path.home() / ".cache" / "jaxunlearn" / "xla"))
    if cache != "off":
        jax.config.update("jax_compilation_cache_dir", cache)


def command_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # bad settings fail here, before JAX starts
    from jaxunlearn.report import environment_info, write_results
    from jaxunlearn.study import run_study, validate_config

    validate_config(cfg)
    enable_compilation_cache()
    result = run_study(cfg, progress=not args.no_progress, log=lambda m: print(m, flush=True))
    print()
    print(result.table)
    config = dict(cfg.to_dict(), plan=dataclasses.asdict(result.plan), task=result.task)
    json_path, md_path = write_results(Path(args.out), summary=result.summary, per_seed=result.per_seed,
                                       table_md=result.table, config=dict(config, timings=result.timings),
                                       environment=environment_info())
    print(f"\nwrote {json_path} and {md_path}")
    return 0


def command_list() -> int:
    from jaxunlearn.data.sources import DATASETS
    from jaxunlearn.models import MODELS
    from jaxunlearn.train.losses import LOSSES
    from jaxunlearn.unlearn import UNLEARNERS

    print("datasets:  ", ", ".join(sorted(DATASETS)))
    print("models:    ", ", ".join(sorted(MODELS)))
    print("unlearners:", ", ".join(sorted(UNLEARNERS)))
    print("losses:    ", ", ".join(sorted(LOSSES)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return command_run(args) if args.command == "run" else command_list()
    except ValueError as err:
        print(f"jaxunlearn: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
