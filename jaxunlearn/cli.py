"""Command line: ``jaxunlearn run`` (a multi-seed study), ``jaxunlearn evaluate`` (many-model,
per-example evaluations: docs/EVALUATION.md) and ``jaxunlearn list``.

Everything about unlearners comes from the registry (``jaxunlearn.unlearn.registry``):
``--plugin`` imports a user's module first, so its unlearners get the same options as the
built-ins (``--unlearners``, ``--hp``/``--sweep``, ``--set NAME.FIELD=VALUE``, and each
unlearner's old-style aliases such as ``--NAME-epochs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from jaxunlearn import compile_cache, numerics, unlearn
from jaxunlearn.config import StudyConfig


def _value(text: str):
    if text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    if text.strip().lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_model_args(items: list[str], option: str = "--model-arg") -> tuple[tuple[str, object], ...]:
    """["hidden=64,64", "width=32", "hoist_input=false"] -> (("hidden", (64, 64)), ("width", 32),
    ("hoist_input", False))."""
    out = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"{option} must look like name=value, got {item!r}")
        name, text = item.split("=", 1)
        value = tuple(_value(t) for t in text.split(",")) if "," in text else _value(text)
        out.append((name.strip(), value))
    return tuple(out)


# command-line option -> StudyConfig field (options left out keep the file's or default value)
_OPTION_FIELDS = {
    "dataset": "dataset",
    "forget": "forget",
    "model": "model",
    "loss": "loss",
    "seeds": "seeds",
    "seed": "seed",
    "epochs": "train_epochs",
    "batch_size": "batch_size",
    "augment_pad": "augment_pad",
    "seed_strategy": "seed_strategy",
    "devices": "devices",
    "dtype": "dtype",
    "stand_in": "stand_in",
    "mia_units": "mia_units",
    "mia_models": "mia_models",
}
_FIELDS = {f.name for f in dataclasses.fields(StudyConfig)}
# Config-file keys that are not StudyConfig fields: modules to import first (like --plugin).
_FILE_ONLY = ("plugins",)


def _setting_aliases() -> dict[str, tuple[str, str]]:
    """Old-style names of unlearner settings (``NAME_FIELD``) -> (unlearner, field), from
    the registry: accepted as ``--NAME-FIELD`` and as top-level config keys."""
    return unlearn.registry.alias_fields()


def load_plugins(specs: list[str]) -> None:
    """Imports each ``--plugin`` module (a module name or a .py path), which registers its
    unlearners. Raises PluginError (a ValueError) naming the plugin and what is wrong."""
    for spec in specs:
        unlearn.load_plugin(spec)


def _add_study_options(parser: argparse.ArgumentParser, DEFAULTS: StudyConfig, seeds: bool) -> None:
    """The options that set a StudyConfig (``config_from_args`` reads them)."""
    parser.add_argument("--config", metavar="FILE", help="TOML file of StudyConfig fields (see configs/)")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (name or .py path) that registers your own unlearner(s) first "
        "(repeatable); they then work like the built-ins",
    )
    parser.add_argument("--dataset", help=f"dataset name (see `jaxunlearn list`; default {DEFAULTS.dataset})")
    parser.add_argument(
        "--dataset-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="dataset loader argument, e.g. --dataset-arg data_dir=~/agedb (repeatable)",
    )
    parser.add_argument("--stand-in", help="dataset to run instead when --dataset's files are missing")
    parser.add_argument(
        "--forget",
        help="forget rule: 'label<=30', 'label>35000', 'label:10:20', 'quantile>=0.8', 'random:0.1' "
        "(default: the dataset's own rule)",
    )
    parser.add_argument(
        "--scenario",
        help="a forget scenario instead of --forget: region, random-1, random-10, subpopulation (or NAME:RULE; "
        "`jaxunlearn list` shows them)",
    )
    parser.add_argument(
        "--tuned",
        metavar="FILE",
        help="apply the hyperparameters and epochs chosen by `jaxunlearn tune` (refused if tuned for another task)",
    )
    parser.add_argument("--model", help=f"model name (see `jaxunlearn list`; default {DEFAULTS.model})")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="model field, e.g. --model-arg hidden=128,128 or --model-arg width=32 (repeatable)",
    )
    parser.add_argument("--loss", help=f"l1, mse or quantile (default {DEFAULTS.loss})")
    if seeds:
        parser.add_argument("--seeds", type=int, help=f"number of seeds (default {DEFAULTS.seeds})")
    parser.add_argument("--seed", type=int, help=f"root seed (default {DEFAULTS.seed})")
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"training epochs of the original and retrained models (default {DEFAULTS.train_epochs})",
    )
    parser.add_argument("--batch-size", type=int, help=f"rows per step (default {DEFAULTS.batch_size})")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.FIELD=VALUE",
        dest="settings",
        help="an unlearner's static setting, e.g. --set NAME.epochs=3 (repeatable; `jaxunlearn list` "
        "shows every unlearner's settings and defaults; 'none' for None)",
    )
    aliases = parser.add_argument_group("aliases of --set (older option names)")
    for alias, (stage, field) in _setting_aliases().items():
        aliases.add_argument(
            f"--{alias.replace('_', '-')}",
            type=_value,
            dest=f"alias__{alias}",
            metavar="VALUE",
            help=f"= --set {stage}.{field}=VALUE",
        )
    parser.add_argument("--augment-pad", type=int, help="image augmentation: random-crop padding (0 = off)")
    parser.add_argument(
        "--unlearners",
        help=f"comma-separated unlearners (default {','.join(unlearn.default_unlearners())}; "
        f"known: {','.join(unlearn.names())})",
    )
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="STAGE.NAME=VALUE",
        help="a float hyperparameter for every seed, e.g. --hp NAME.lr=3e-4 (repeatable; "
        "`jaxunlearn list` shows them and their defaults)",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="STAGE.NAME=V1,V2,...",
        help="run an unlearner with each value, e.g. --sweep NAME.lr=1e-4,1e-3: one row per "
        "value (every combination when one unlearner has several), run together on the same "
        "seeds (repeatable)",
    )
    parser.add_argument("--seed-strategy", help="auto, vmap, map or host (default auto)")
    parser.add_argument(
        "--devices", type=int, help="split the seeds across this many devices (default: all devices of the backend)"
    )
    parser.add_argument(
        "--mia-units",
        choices=("standardised", "raw"),
        help="the SVC attack's loss units: standardised (default) or raw, the target's own units "
        "exactly as the paper's code computes them",
    )
    parser.add_argument("--dtype", help="model compute dtype: float32 or bfloat16 (default float32)")


def _add_output_options(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--out", default=out, help=f"output folder for results.json and results.md (default {out})")
    parser.add_argument("--plots", action="store_true", help="also write the figures (PNG) into --out")
    parser.add_argument("--checkpoint-dir", help="where finished stages are saved (default OUT/checkpoints)")
    parser.add_argument("--no-checkpoints", action="store_true", help="save no checkpoints, reuse none")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed study (or evaluation) of the same configuration from its last finished "
        "stage (or block)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--numerics",
        choices=numerics.MODES,
        default=numerics.DEFAULT,
        help="native: XLA's fastest CPU code, whose last bits depend on the CPU; portable: XLA:CPU "
        "settings meant to give the same bits on every x86-64 CPU with AVX2 "
        f"(docs/REPRODUCIBILITY.md; default {numerics.DEFAULT})",
    )


def _add_evaluate_parser(sub, DEFAULTS: StudyConfig) -> None:
    from jaxunlearn.evaluation.protocol import PROTOCOLS, EvaluationConfig
    from jaxunlearn.metrics.epsilon import GRID_UNITS

    ed = EvaluationConfig()
    evaluate = sub.add_parser(
        "evaluate",
        help="score unlearners per forget example over hundreds of models (NeurIPS'23 eps score, U-LiRA)",
        description="Trains the models a protocol needs (all models of a stage in one compiled program, in chunks "
        "that fit the device) and scores them per forget example; the study options choose the "
        "dataset, model, unlearners and their settings. See docs/EVALUATION.md.",
    )
    evaluate.add_argument(
        "--protocol",
        default=ed.protocol,
        choices=sorted(PROTOCOLS),
        help=f"neurips23: the challenge's per-example eps and score; ulira: the likelihood-ratio "
        f"attack on unlearned shadow models (default {ed.protocol})",
    )
    evaluate.add_argument(
        "--models",
        type=int,
        help=f"models per row: neurips23's N unlearned, N retrained and N noise-floor retrained; "
        f"ulira's shadows (default {ed.models})",
    )
    evaluate.add_argument("--shadows", type=int, dest="models", help="= --models (U-LiRA's name for them)")
    evaluate.add_argument(
        "--groups",
        type=int,
        help=f"ulira only: training sets (candidate halves in complementary pairs; default {ed.groups})",
    )
    evaluate.add_argument(
        "--attack-models",
        type=int,
        help=f"neurips23 only: models per row the paper's SVC attack runs on (default {ed.attack_models})",
    )
    evaluate.add_argument(
        "--grid-unit",
        choices=GRID_UNITS,
        help="neurips23 only: the unit of the eps attacks' grid on each example: the retrained models' standard "
        "deviation there, or one standardised target unit (the challenge's rule taken literally; "
        f"default {ed.grid_unit}; docs/EVALUATION.md)",
    )
    evaluate.add_argument("--chunk", type=int, help="models per compiled call (default: the most that fit memory)")
    evaluate.add_argument(
        "--memory-limit",
        metavar="BYTES",
        help="memory one compiled call may plan to use, e.g. 2GB (default: the device's free "
        "memory; env JAXUNLEARN_MEMORY_LIMIT)",
    )
    _add_study_options(evaluate, DEFAULTS, seeds=False)
    _add_output_options(evaluate, "evaluation")


def build_parser() -> argparse.ArgumentParser:
    DEFAULTS = StudyConfig()
    parser = argparse.ArgumentParser(
        prog="jaxunlearn",
        description="Machine unlearning for deep regression models (Blindspot, Gaussian amnesiac, fine-tune vs "
        "retraining), many seeds in one compiled program.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a multi-seed unlearning study and print the comparison table",
        description="Settings come from StudyConfig's defaults, then --config FILE, then the "
        "options given here (which win).",
    )
    _add_study_options(run, DEFAULTS, seeds=True)
    _add_output_options(run, "results")
    run.add_argument(
        "--chunk",
        type=int,
        metavar="N",
        help="at most N seeds per compiled call (default: all that fit the device's memory); each call's "
        "seeds are checkpointed as it ends, so a kill loses at most one call",
    )
    run.add_argument(
        "--attack-models",
        type=int,
        dest="mia_models",
        metavar="K",
        help="run the paper's SVC attack on the first K models of each row only (0.05-0.4 s of CPU per "
        "model, on the host's cores; default: every seed's); the table's header then says 'K of S models'",
    )
    run.add_argument(
        "--tensorboard",
        action="store_true",
        help="also export the learning curves and metrics as TensorBoard event files into OUT/tensorboard "
        "(needs pip install 'jaxunlearn[tensorboard]')",
    )
    run.add_argument(
        "--keep-unlearned",
        action="store_true",
        help="keep the unlearned models' checkpoints after the study (default: only the original "
        "and retrained models are kept, for reuse)",
    )
    group = run.add_argument_group(
        "several processes (jax.distributed)",
        "Run the same command on every host: the seeds are split across all processes' devices and process 0 "
        "writes the outputs. Cluster settings are detected (SLURM, Open MPI, Kubernetes, Cloud TPU) unless given. "
        "Checkpoints need a folder every process sees (the same --out or --checkpoint-dir).",
    )
    group.add_argument("--distributed", action="store_true", help="join a multi-process run")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (implies --distributed)")
    group.add_argument("--num-processes", type=int, help="how many processes take part (implies --distributed)")
    group.add_argument("--process-id", type=int, help="this process's index, 0 to N-1 (implies --distributed)")
    _add_evaluate_parser(sub, DEFAULTS)
    from jaxunlearn.cli_leaderboard import add_parsers

    add_parsers(sub, DEFAULTS)
    redraw = sub.add_parser(
        "plots",
        help="draw (or redraw) the figures of a finished study from its output folder",
        description="Reads OUT's results.json, predictions.npz and curves.csv (docs/OUTPUTS.md) and writes the "
        "figures into OUT, or into --to. Needs pip install 'jaxunlearn[plots]'.",
    )
    redraw.add_argument("folder", metavar="OUT", help="a folder that `jaxunlearn run --out OUT` wrote")
    redraw.add_argument("--to", metavar="DIR", help="write the figures here instead of OUT")
    redraw.add_argument("--dpi", type=int, default=120, help="resolution of the PNGs (default 120)")
    listing = sub.add_parser(
        "list", help="list datasets, models, unlearners (with their hyperparameters and settings) and losses"
    )
    listing.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers unlearners first (repeatable)",
    )
    return parser


def _preparse_plugins(argv: list[str] | None) -> list[str]:
    """The ``--plugin`` values of a command line, read before the full parser is built
    (the parser's options depend on what the plugins register)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    return known.plugin


def read_config_file(path: str) -> dict:
    """StudyConfig fields from a TOML file; unknown keys are an error naming them."""
    import tomllib

    try:
        with open(Path(path).expanduser(), "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as err:
        raise ValueError(f"--config: no such file {path}") from err
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"--config: {path} is not a readable TOML file: {err}") from err
    plugins = data.get("plugins", [])
    if not (isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)):
        raise ValueError(f"--config {path}: plugins must be a list of module names or .py paths, got {plugins!r}")
    load_plugins(plugins)
    data = _settings_from_file(data, path)
    unknown = sorted(set(data) - _FIELDS - set(_FILE_ONLY))
    if unknown:
        raise ValueError(
            f"--config {path}: unknown setting(s) {unknown}; known settings: {sorted(_FIELDS)}, "
            f"a table per unlearner ({', '.join(f'[{n}]' for n in unlearn.names())}) and "
            f"their aliases {sorted(_setting_aliases())}"
        )
    for table in ("model_kwargs", "dataset_kwargs"):
        if not isinstance(data.get(table, {}), dict):
            raise ValueError(f"--config {path}: {table} must be a table of name = value, got {data[table]!r}")
    return data


def _settings_from_file(data: dict, path: str) -> dict:
    """Moves ``[NAME]`` tables (NAME a registered unlearner) and old-style top-level keys
    (``NAME_epochs = 2``) of a config file into its ``settings`` table."""
    data = dict(data)
    settings = data.pop("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"--config {path}: settings must be a table of [settings.NAME] tables, got {settings!r}")
    settings = {stage: dict(fields) if isinstance(fields, dict) else fields for stage, fields in settings.items()}
    stages, aliases = set(unlearn.names(reference=True)), _setting_aliases()
    for key in list(data):
        if key in stages and key not in _FIELDS:
            table = data.pop(key)
            if not isinstance(table, dict):
                raise ValueError(f"--config {path}: [{key}] must be a table of the unlearner's settings, got {table!r}")
            settings.setdefault(key, {}).update(table)
        elif key in aliases:
            stage, field = aliases[key]
            settings.setdefault(stage, {})[field] = data.pop(key)
    if settings:
        data["settings"] = settings
    return data


def _as_pairs(mapping: dict) -> tuple[tuple[str, object], ...]:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in mapping.items())


def _flat_keys(table: dict, field: str) -> dict:
    """TOML ``[hp.NAME] beta = 10`` or ``[hp] "NAME.beta" = 10`` -> {"NAME.beta": 10}."""
    if not isinstance(table, dict):
        raise ValueError(f"{field} must be a table of STAGE.NAME = value, got {table!r}")
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def parse_hp_args(items: list[str], option: str) -> dict[str, object]:
    """["NAME.beta=10"] -> {"NAME.beta": 10}; for --sweep, values are tuples."""
    out = {}
    for name, value in parse_model_args(items, option):
        if option == "--sweep" and not isinstance(value, tuple):
            value = (value,)
        out[name] = value
    return out


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """StudyConfig defaults <- the --config file <- options given on the command line."""
    fields = read_config_file(args.config) if args.config else {}
    model_kwargs = dict(fields.pop("model_kwargs", {}), **dict(parse_model_args(args.model_arg)))
    dataset_kwargs = dict(fields.pop("dataset_kwargs", {}), **dict(parse_model_args(args.dataset_arg, "--dataset-arg")))
    for field in ("hp", "sweep"):  # a key given on the command line replaces the file's
        given = parse_hp_args(getattr(args, field), f"--{field}")
        if given or field in fields:
            fields[field] = dict(_flat_keys(fields.get(field, {}), field), **given)
    for option, field in _OPTION_FIELDS.items():
        if getattr(args, option, None) is not None:
            fields[field] = getattr(args, option)
    settings = {stage: dict(table) for stage, table in fields.pop("settings", {}).items()}
    settings_given = [
        (f"{stage}.{field}", value)
        for alias, (stage, field) in _setting_aliases().items()
        if (value := getattr(args, f"alias__{alias}", None)) is not None
    ]
    settings_given += list(parse_model_args(args.settings, "--set"))
    for key, value in settings_given:
        stage, dot, field = key.partition(".")
        if not dot or not stage or not field:
            raise ValueError(f"--set {key}: give NAME.FIELD=VALUE, e.g. --set NAME.epochs=2")
        settings.setdefault(stage, {})[field] = value
    if settings:
        fields["settings"] = settings
    if args.unlearners is not None:
        fields["unlearners"] = [u.strip() for u in args.unlearners.split(",") if u.strip()]
    if "unlearners" in fields:
        if not isinstance(fields["unlearners"], (list, tuple)):
            raise ValueError(f"unlearners must be a list of names, got {fields['unlearners']!r}")
        fields["unlearners"] = tuple(fields["unlearners"])
    cfg = StudyConfig(**fields, model_kwargs=_as_pairs(model_kwargs), dataset_kwargs=_as_pairs(dataset_kwargs))
    if getattr(args, "scenario", None) is not None:
        cfg = dataclasses.replace(cfg, forget=scenario_forget(cfg, args.scenario, getattr(args, "forget", None)))
    if getattr(args, "tuned", None) is not None:
        from jaxunlearn.tuning import apply_tuned

        cfg = apply_tuned(cfg, args.tuned, scenario=args.scenario)
    return cfg


def scenario_forget(cfg: StudyConfig, scenario: str, forget: str | None, draw: int = 0) -> str:
    """The forget rule of ``scenario`` on ``cfg``'s dataset (its scores' draw by default)."""
    from jaxunlearn.data.scenarios import scenario_rule, split_spec
    from jaxunlearn.data.sources import load_dataset

    if forget is not None:
        raise ValueError("give --scenario or --forget, not both")
    split_spec(scenario)  # an unknown scenario fails before any data is read
    return scenario_rule(scenario, load_dataset(cfg.dataset, **dict(cfg.dataset_kwargs)), draw)[0]


def start_distributed(args: argparse.Namespace) -> None:
    """Joins a multi-process run when asked to (before any JAX backend starts)."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if not (args.distributed or any(v is not None for v in given)):
        return
    if args.num_processes is not None and args.num_processes < 1:
        raise ValueError(f"--num-processes must be a positive integer, got {args.num_processes}")
    if args.process_id is not None and args.num_processes is not None and not 0 <= args.process_id < args.num_processes:
        raise ValueError(f"--process-id must lie in [0, {args.num_processes - 1}], got {args.process_id}")
    from jaxunlearn import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def command_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # bad settings fail here, before JAX starts
    numerics.use(args.numerics)  # before JAX's backend starts: it reads XLA_FLAGS once
    start_distributed(args)
    from jaxunlearn.distributed import is_main_process
    from jaxunlearn.study import run_study, validate_config

    validate_config(cfg)
    if args.plots:  # matplotlib (the plots extra) is checked before the study, not after it
        from jaxunlearn.plots import check_plots_available

        check_plots_available()
    if args.tensorboard:
        from jaxunlearn.tensorboard_export import check_tensorboard_available

        check_tensorboard_available()
    if args.resume and args.no_checkpoints:
        raise ValueError("--resume needs checkpoints; drop --no-checkpoints")
    out = Path(args.out).expanduser()
    checkpoint_dir = None if args.no_checkpoints else Path(args.checkpoint_dir or out / "checkpoints").expanduser()
    main_process = is_main_process()
    compile_cache.enable()
    try:
        result = run_study(
            cfg,
            progress=main_process and not args.no_progress,
            log=(lambda m: print(m, flush=True)) if main_process else (lambda m: None),
            checkpoint_dir=checkpoint_dir,
            resume=args.resume,
            chunk=args.chunk,
        )
    except KeyboardInterrupt:
        where = (
            f"finished stages are saved in {checkpoint_dir}; rerun the same command with --resume to continue"
            if checkpoint_dir is not None
            else "no checkpoints were kept (--no-checkpoints)"
        )
        print(f"\njaxunlearn: interrupted; {where}", file=sys.stderr)
        return 130
    if not main_process:
        return 0
    print()
    print(result.report())
    paths = result.write(out, figures=args.plots, tensorboard=args.tensorboard)
    print(f"\nwrote {paths[0]} and {paths[1]}")
    for path in paths[2:]:
        print(f"wrote {path}")
    if not args.keep_unlearned:
        from jaxunlearn.checkpoints import REUSED_STAGES, discard_checkpoint

        for stage, folder in result.checkpoints.items():
            if stage not in REUSED_STAGES:
                discard_checkpoint(folder)
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    numerics.use(args.numerics)  # before JAX's backend starts: it reads XLA_FLAGS once
    from jaxunlearn.evaluation import check_evaluation, run_evaluation
    from jaxunlearn.evaluation.protocol import EvaluationConfig, settings_of
    from jaxunlearn.evaluation.report import notes_text, write_evaluation
    from jaxunlearn.report import environment_info
    from jaxunlearn.study import validate_config

    given = {
        k: getattr(args, k)
        for k in ("models", "groups", "attack_models", "grid_unit", "chunk", "memory_limit")
        if getattr(args, k) is not None
    }
    ignored = [f"--{k.replace('_', '-')}" for k in given if k not in settings_of(args.protocol)]
    if ignored:
        verb = "does" if len(ignored) == 1 else "do"
        raise ValueError(f"{', '.join(ignored)} {verb} not apply to --protocol {args.protocol}; drop it")
    ecfg = EvaluationConfig(protocol=args.protocol, **given)
    validate_config(cfg)
    check_evaluation(cfg, ecfg)
    if args.plots:
        from jaxunlearn.plots import check_plots_available

        check_plots_available()
    if args.resume and args.no_checkpoints:
        raise ValueError("--resume needs checkpoints; drop --no-checkpoints")
    out = Path(args.out).expanduser()
    checkpoint_dir = None if args.no_checkpoints else Path(args.checkpoint_dir or out / "checkpoints").expanduser()
    compile_cache.enable()
    environment = environment_info()  # now: the commit whose code runs, even if the tree changes meanwhile
    try:
        result, run = run_evaluation(
            cfg,
            ecfg,
            checkpoint_dir=checkpoint_dir,
            resume=args.resume,
            progress=not args.no_progress,
            log=lambda m: print(m, flush=True),
        )
    except KeyboardInterrupt:
        where = (
            f"finished blocks are saved in {checkpoint_dir}; rerun the same command with --resume to continue"
            if checkpoint_dir is not None
            else "no checkpoints were kept (--no-checkpoints)"
        )
        print(f"\njaxunlearn: interrupted; {where}", file=sys.stderr)
        return 130
    print()
    print(result.table)
    print(notes_text(result))
    paths = write_evaluation(out, result, run, cfg.to_dict(), ecfg.to_dict(), environment, plots=args.plots)
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def command_list() -> int:
    import dataclasses as dc

    from jaxunlearn.data.sources import DATASETS
    from jaxunlearn.models import MODELS
    from jaxunlearn.train.losses import LOSSES

    print("datasets:  ", ", ".join(sorted(DATASETS)))
    print("models:    ", ", ".join(sorted(MODELS)))
    print("unlearners:", ", ".join(unlearn.names()), f"(default: {', '.join(unlearn.default_unlearners())})")
    print("losses:    ", ", ".join(sorted(LOSSES)))
    print(
        "stages (hyperparameters: --hp NAME.HP=VALUE, --sweep NAME.HP=V1,V2; settings: --set NAME.FIELD=VALUE; "
        "defaults shown):"
    )
    for stage in unlearn.all_stages():
        print(f"  {stage.name}: {stage.description}" if stage.description else f"  {stage.name}:")
        print("    hyperparameters:", ", ".join(f"{stage.name}.{k}={v:g}" for k, v in stage.hp.items()) or "-")
        if stage.settings is not None:
            defaults = stage.settings()
            print(
                "    settings:       ",
                ", ".join(f"{stage.name}.{f.name}={getattr(defaults, f.name)}" for f in dc.fields(defaults)),
            )
        if stage.search:
            print("    tuning ranges:  ", ", ".join(f"{k} {_describe_range(r)}" for k, r in stage.search.items()))
    from jaxunlearn.data.scenarios import SCENARIOS

    print("scenarios (--scenario NAME or NAME:RULE; `jaxunlearn leaderboard --scenarios`):")
    for scenario in SCENARIOS.values():
        print(f"  {scenario.name}: {scenario.description}")
    return 0


def command_plots(args: argparse.Namespace) -> int:
    from jaxunlearn.plots import check_plots_available, write_figures
    from jaxunlearn.tidy import PREDICTIONS_NPZ, load_result

    check_plots_available()
    folder = Path(args.folder).expanduser()
    result = load_result(folder)
    if not result.predictions:
        raise ValueError(f"{folder} has no {PREDICTIONS_NPZ} (written by jaxunlearn run from this version on)")
    for path in write_figures(result, Path(args.to).expanduser() if args.to else folder, dpi=args.dpi):
        print(f"wrote {path}")
    return 0


def _describe_range(r) -> str:
    high = "the cost cap" if r.high is None else f"{r.high:g}"
    return f"[{r.low:g}, {high}]{' log' if r.log else ''}"


def main(argv: list[str] | None = None) -> int:
    try:
        load_plugins(_preparse_plugins(argv))
    except ValueError as err:  # PluginError
        print(f"jaxunlearn: error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        from jaxunlearn.cli_leaderboard import command_leaderboard, command_tune

        commands = {
            "run": command_run,
            "evaluate": command_evaluate,
            "tune": command_tune,
            "leaderboard": command_leaderboard,
            "plots": command_plots,
        }
        return commands[args.command](args) if args.command in commands else command_list()
    except (ValueError, FileNotFoundError) as err:  # bad settings, missing data files (MissingDataError)
        print(f"jaxunlearn: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
