"""A complete multi-seed unlearning study: train, retrain, unlearn, measure, tabulate.

>>> from jaxunlearn.study import run_study
>>> from jaxunlearn.config import StudyConfig
>>> result = run_study(StudyConfig(seeds=3))          # doctest: +SKIP
>>> print(result.table)                                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm  # text bars: tqdm.auto needs ipywidgets in notebooks

from jaxunlearn import programs, unlearn
from jaxunlearn.checkpoints import REUSED_STAGES, CheckpointStore, RowParts, StageParts, data_fingerprint
from jaxunlearn.compile_cache import enable as enable_compile_cache
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.data.sources import MissingDataError, build_task, load_dataset
from jaxunlearn.hparams import check_hyperparameters, stage_variants, study_variants
from jaxunlearn.memory import format_bytes
from jaxunlearn.metrics.membership import AttackPool, PendingRates
from jaxunlearn.metrics.reference_cache import METRIC_SETTINGS, REFERENCE_ROWS, ReferenceMetrics, reference_key
from jaxunlearn.metrics.relearn import Relearn, RelearnConfig, RelearnRunner, anamnesis_index
from jaxunlearn.metrics.suite import (
    DIVERGED_WHY,
    TABLE_COLUMNS,
    UNDEFINED_WHY,
    attacked_models,
    prediction_metrics,
    start_svc_attack,
    validation_gap,
    with_direction,
)
from jaxunlearn.models import make_model
from jaxunlearn.models.user import describe_model, model_fns
from jaxunlearn.report import format_table, prediction_digest, summarise
from jaxunlearn.runner import StageResult, run_in_chunks, seeds_per_call
from jaxunlearn.seeds import LoopPlan, SeedExecutor, auto_plan, devices_for, replicate, seed_split, to_host
from jaxunlearn.shards import aggregate_predictions, run_sharded
from jaxunlearn.tidy import CURVE_VALUES
from jaxunlearn.timing import Stopwatch
from jaxunlearn.train.contract import ModelContractError
from jaxunlearn.train.loop import predict
from jaxunlearn.train.state import ModelFns, finished
from jaxunlearn.tuning import mae_parts

# The key id of the metrics' relearning (the AIN); each stage's own is in the registry
# (``Unlearner.key_id``): no two share randomness (the rows of a swept stage share their
# stage's keys: paired comparisons).
RELEARN_KEY_ID = 100

# Whether ``run_study`` predicts and attacks each row while the later rows train
# (``RowsAhead``): None = off the CPU only; True/False force it (tests, benchmarks).
ATTACK_DURING_TRAINING: bool | None = None

# Above this many seeds a study attacking every model says how to cap the attack: at 512
# seeds on a GPU, attacking every model can take a sixth of the study's wall time.
LARGE_ATTACK = 64


@dataclasses.dataclass
class StudyResult:
    """Everything a study measured.

    Rows are the stages (original, retrain, each unlearner), or for a swept unlearner one
    row per hyperparameter value, e.g. ``NAME[lr=0.001]`` (``jaxunlearn.hparams``).

    Attributes:
        per_seed: {row: {metric: [S]}}; summary: mean/std/95% CI per metric; table: text.
        rows: the row names in table order.
        predictions: {row: {"train"|"test": [S, N] float64}} in the target's own units.
        prediction_digests: {row: [S] hex}: a digest of each seed's float32 predictions on the
            train and test rows (``report.prediction_digest``), the exact model outputs that
            ``docs/reproduce.py`` compares across machines.
        targets: {"train"|"test": [N]} in the target's own units; forget: {split: [N] bool}.
        stage_stats: {row: {name: [S]}}, what a row's last phase reports beyond the
            training loop's losses (``last_phase_stats``; e.g. SSD's "dampened_fraction").
        checkpoints: {row: folder} of the saved rows (empty without a checkpoint dir).
        divergence: one {seed, stage, phase, step} per seed and row (``stage`` holds the
            row name) whose training hit NaN/inf; those seeds' metrics are NaN (see
            ``mask_diverged``).
        environment: the machine and versions the study ran on, read when it started
            (``report.environment_info``).
        curves: {row: {"train_loss"|"val_loss": [S, epochs]}}: the per-epoch losses of each
            row's last phase, per seed (standardised units; ``jaxunlearn.tidy``).
        metric_timing: where the metrics' time went (``measure``'s timing, plus "wall"):
            the membership attack's thread-seconds and the seconds waited for it. Not
            written to results.json.

    ``write(out)`` writes what ``jaxunlearn run`` writes: results.json, results.md (the
    table and the paper's claims), the tidy tables and predictions (docs/OUTPUTS.md) and the
    figures; ``to_dataframe()`` is results.csv as a pandas DataFrame;
    ``jaxunlearn.tidy.load_result(out)`` reads a written folder back.
    """

    config: StudyConfig
    plan: LoopPlan
    task: dict[str, Any]
    per_seed: dict[str, dict[str, np.ndarray]]
    timings: dict[str, dict[str, float]]
    summary: dict
    table: str
    rows: list[str]
    divergence: list[dict] = dataclasses.field(default_factory=list)
    stage_stats: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    checkpoints: dict[str, str] = dataclasses.field(default_factory=dict)
    predictions: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    targets: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    forget: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    prediction_digests: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)
    curves: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    metric_timing: dict[str, float] = dataclasses.field(default_factory=dict)

    def report(self) -> str:
        """The table, the row closest to retraining (``report.closest_to_retraining``), each
        sweep's best row by the validation gap (``report.best_of_sweeps``), then the paper's
        claims where the study has the rows they compare, or why it has not
        (``jaxunlearn.claims``): what ``jaxunlearn run`` prints and results.md holds."""
        from jaxunlearn.claims import claims_absent, claims_report
        from jaxunlearn.report import best_of_sweeps, closest_to_retraining

        parts = [self.table]
        # the gap is in standard deviations of the training targets: without them (a folder
        # written before predictions.npz existed) there is no closest row to name
        targets = self.targets.get("train")
        closest = None if targets is None else closest_to_retraining(self.per_seed, float(np.std(targets)) or 1.0)
        parts += [p for p in (closest, *best_of_sweeps(self.per_seed)) if p]
        parts.append(claims_report(self.per_seed) or claims_absent(self.per_seed))
        return "\n\n".join(parts)

    def write(self, out: str | os.PathLike, figures: bool | None = None, tensorboard: bool = False) -> list[Path]:
        """Writes what ``jaxunlearn run`` writes into ``out`` (created if needed), atomically.

        Args:
            out: the output folder.
            figures: draw the figures (``jaxunlearn.plots``); None: when matplotlib (the
                ``plots`` extra) is installed; True: always (an error names the extra when
                it is missing, before anything is written).
            tensorboard: also export the curves and metrics as TensorBoard event files
                under ``out/tensorboard`` (``jaxunlearn.tensorboard_export``; needs the
                ``tensorboard`` extra, checked before anything is written).

        Returns:
            The paths written: results.json, results.md, results.csv, curves.csv,
            predictions.npz (``jaxunlearn.tidy``), the figures, then the TensorBoard folder.
        """
        from importlib.util import find_spec

        from jaxunlearn.report import write_results
        from jaxunlearn.tidy import write_tidy

        if figures:
            from jaxunlearn.plots import check_plots_available

            check_plots_available()
        if tensorboard:
            from jaxunlearn.tensorboard_export import check_tensorboard_available

            check_tensorboard_available()
        config = dict(self.config.to_dict(), plan=dataclasses.asdict(self.plan), task=self.task)
        config.update(timings=self.timings, divergence=self.divergence, stage_stats=self.stage_stats)
        paths = list(
            write_results(
                out,
                summary=self.summary,
                per_seed=self.per_seed,
                table_md=self.report(),
                config=config,
                environment=self.environment,
                prediction_digests=self.prediction_digests,
            )
        )
        paths += write_tidy(self, out)
        if figures or (figures is None and find_spec("matplotlib") is not None):
            from jaxunlearn.plots import write_figures

            paths += write_figures(self, out)
        if tensorboard:
            from jaxunlearn.tensorboard_export import write_tensorboard

            paths.append(write_tensorboard(self, out))
        return paths

    def to_dataframe(self) -> Any:
        """results.csv as a pandas DataFrame (``jaxunlearn.tidy.records``): one line per row,
        seed and metric, with the settings and the row's hyperparameters as columns; ``seed``
        is empty (<NA>) for a per-stage metric. Needs pandas (the ``data`` extra).

        >>> result.to_dataframe().groupby(["row", "metric"]).value.mean()   # doctest: +SKIP
        """
        from jaxunlearn.extras import require
        from jaxunlearn.tidy import TIDY_COLUMNS, header_of, records

        require("data", "StudyResult.to_dataframe()", "pandas")
        import pandas as pd

        lines = records(self)
        frame = pd.DataFrame(lines, columns=header_of(lines, TIDY_COLUMNS))
        return frame.astype({"seed": "Int64"})


# History entries every training loop writes; anything else a phase reports is a stage statistic.
LOOP_HISTORY = ("train_loss", "val_loss", "lr", "diverged_at")


def last_phase_stats(stage: StageResult) -> dict[str, list[float]]:
    """{name: [S]} of the last phase's own history entries (not ``LOOP_HISTORY``), at its
    last epoch: e.g. SSD's fraction of dampened parameters per seed."""
    return {k: [float(x) for x in np.asarray(v)[:, -1]] for k, v in stage.history.items() if k not in LOOP_HISTORY}


def seed_keys(seed: int, seeds: int, stage: str, first: int = 0) -> jax.Array:
    """[S] keys of one stage: seed i's key is fold_in(fold_in(key(seed), i), the stage's key id)
    (``Unlearner.key_id``; "relearn": ``RELEARN_KEY_ID``), for i = first .. first + S - 1.

    Seed i's keys do not depend on the number of seeds S, so a 3-seed study repeats the
    first three seeds of a 10-seed study exactly.
    """
    key_id = RELEARN_KEY_ID if stage == "relearn" else unlearn.get(stage).key_id
    assert key_id is not None  # Unlearner.__post_init__ derives a missing one
    root = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(root, i), key_id))(jnp.arange(first, first + seeds))


def resolve_plan(cfg: StudyConfig, family: str) -> LoopPlan:
    """``auto_plan`` for the model family and backend, with the config's overrides.

    Without ``cfg.devices``, the seeds go to the most devices that split them evenly.
    """
    plan = auto_plan(family)
    if cfg.seed_strategy != "auto":
        plan = dataclasses.replace(plan, seed_strategy=cfg.seed_strategy)
    if cfg.epochs_per_call == "all":  # LoopPlan's None; the config's None leaves the plan's choice
        plan = dataclasses.replace(plan, epochs_per_call=None)
    elif isinstance(cfg.epochs_per_call, int):
        plan = dataclasses.replace(plan, epochs_per_call=cfg.epochs_per_call)
    plan = dataclasses.replace(plan, devices=cfg.devices or devices_for(cfg.seeds))
    processes = jax.process_count()
    if processes > 1 and plan.devices % processes:
        raise ValueError(
            f"devices: across {processes} processes every process must hold seeds, but {cfg.seeds} "
            f"seeds split over {plan.devices} device(s); use a seed count that {jax.device_count()} "
            f"devices divide, or set devices to a multiple of {processes}"
        )
    return plan


def validate_config(cfg: StudyConfig, own_model: bool = False) -> None:
    """Rejects unknown names before any data is loaded or anything compiles
    (``own_model``: the study runs a user's model, so ``cfg.model`` names no zoo model)."""
    from jaxunlearn.data.sources import DATASETS, unknown_dataset
    from jaxunlearn.models import MODELS
    from jaxunlearn.train.losses import LOSSES

    for field in ("dataset", "stand_in"):
        name = getattr(cfg, field)
        if name is not None and name not in DATASETS:
            raise ValueError(unknown_dataset(name, field))
    if not own_model and cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; known models: {sorted(MODELS)}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; known losses: {sorted(LOSSES)}")
    known = unlearn.names()
    assert cfg.unlearners is not None  # resolved by __post_init__
    bad = [u for u in cfg.unlearners if u not in known]
    if bad:
        raise ValueError(
            f"unknown unlearner(s) {bad}; choose from {known} (the reference stages "
            f"{list(unlearn.reference_stages())} always run)"
        )
    check_hyperparameters(cfg)
    if cfg.devices is not None and cfg.devices > jax.device_count():
        raise ValueError(
            f"devices: {cfg.devices} asked for, but the {jax.default_backend()} backend has "
            f"{jax.device_count()} (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
            f"makes N devices)"
        )
    if cfg.devices is not None and cfg.seeds % cfg.devices:
        raise ValueError(
            f"devices: {cfg.seeds} seeds cannot be split evenly across {cfg.devices} devices; "
            f"choose a number of devices that divides the seed count, or leave devices unset"
        )


def load_task(cfg: StudyConfig, log: Callable[[str], None] = print) -> tuple[Task, str]:
    """The configured dataset with its forget rule, or the stand-in when its files are missing.

    Returns:
        (task, name of the dataset actually used).
    """
    try:
        return build_task(load_dataset(cfg.dataset, **dict(cfg.dataset_kwargs)), cfg.forget), cfg.dataset
    except MissingDataError as err:
        if cfg.stand_in is None:
            raise
        log(
            f"NOTE: {cfg.dataset!r} data not found ({err}); running on the offline stand-in {cfg.stand_in!r} "
            f"with its own default forget rule"
        )
        return build_task(load_dataset(cfg.stand_in)), cfg.stand_in


def build_model(cfg: StudyConfig, task: Task, own: Any = None) -> ModelFns:
    """The configured model (or the user's ``own`` model: ``jaxunlearn.models.user``) for
    the task's inputs; checks they fit before anything compiles. One object per model within
    a process (``jaxunlearn.programs``), so programs built from it are reused."""
    return programs.reuse(programs.model_key(cfg, task.input_shape), lambda: _new_model(cfg, task, own))


def _new_model(cfg: StudyConfig, task: Task, own: Any) -> ModelFns:
    kwargs = dict(cfg.model_kwargs)
    if own is not None:
        model = model_fns(own, task.input_shape)
    elif "dtype" in kwargs:
        raise ValueError("set the model's compute dtype with StudyConfig.dtype (--dtype), not a model argument")
    else:
        model = ModelFns(make_model(cfg.model, dtype=jnp.dtype(cfg.dtype), **kwargs), task.input_shape)
    try:
        # Traces only: no compilation (the keys too are made inside the traces).
        params, stats = jax.eval_shape(lambda: model.init(jax.random.key(0)))
        jax.eval_shape(
            lambda p, s: model.apply_train(
                p, s, jnp.zeros((2, *task.input_shape)), jnp.ones(2, bool), jax.random.key(0)
            ),
            params,
            stats,
        )
    except ModelContractError:
        raise
    except flax.errors.InvalidRngError as err:
        raise ModelContractError(
            f"model {cfg.model!r} draws random numbers from a stream it is not given: {str(err).splitlines()[0]}; "
            f"in training a Linen model gets a key for each stream named in its class attribute rng_streams "
            f"(default ('dropout',)): list the stream there"
        ) from err
    except Exception as err:  # flax raises many kinds of shape errors
        raise ValueError(
            f"model {cfg.model!r} cannot take inputs of shape {list(task.input_shape)} from dataset "
            f"{cfg.dataset!r}: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
        ) from err
    return model


def prepare_study(
    cfg: StudyConfig, task: Task | None = None, model: Any = None, log: Callable[[str], None] = print
) -> tuple[StudyConfig, Task, ModelFns, Any, str]:
    """Checks the settings, loads the task and builds the model, before anything compiles.

    Args:
        cfg: the study's settings; task: a prepared task, or None for ``cfg.dataset``;
        model: the user's own model (see ``run_study``), or None for ``cfg.model``.

    Returns:
        (cfg, with a user's model's class and fields in ``model``/``model_kwargs``; the
        task; the model's functions; the user's model or None; the dataset actually used).
    """
    if model is not None:
        if cfg.dtype != "float32":
            raise ValueError("with your own model, set its compute dtype in the model itself; leave dtype float32")
        name, fields = describe_model(model)
        cfg = dataclasses.replace(cfg, model=name, model_kwargs=fields)
    validate_config(cfg, own_model=model is not None)
    if task is None:  # an optional package a dataset needs is missing: say which, before any work
        from jaxunlearn.data.sources import check_dataset_extras

        for dataset in (cfg.dataset, cfg.stand_in):
            if dataset is not None:
                check_dataset_extras(dataset)
    dataset_used = "(given task)"
    if task is None:
        task, dataset_used = load_task(cfg, log)
    return cfg, task, build_model(cfg, task, model), model, dataset_used


@dataclasses.dataclass
class TrainedStudy:
    """A study's rows trained (or loaded from checkpoints), before any metric.

    Attributes:
        cfg: the settings (a user's model named in ``model``); plan: the loop plan.
        task: the task, placed on the plan's devices; model: the model's functions;
        metric_model: the same model computing in float32 (what metrics run).
        relearn: the AIN's relearning; stages: {row: StageResult} in table order.
        loaded: the rows loaded from checkpoints; store: the checkpoint store or None;
        dataset_used: the dataset actually loaded (a stand-in, or "(given task)").
    """

    cfg: StudyConfig
    plan: LoopPlan
    task: Task
    model: ModelFns
    metric_model: ModelFns
    relearn: Relearn
    stages: dict[str, StageResult]
    loaded: set[str]
    store: CheckpointStore | None
    dataset_used: str


def train_study(
    cfg: StudyConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
    task: Task | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    model: Any = None,
    compile_cache: bool = True,
    chunk: int | None = None,
    original: StageResult | None = None,
    save_unlearned: bool = True,
    ahead: RowsAhead | None = None,
) -> TrainedStudy:
    """Trains (or loads) every row of the study over ``cfg.seeds`` seeds, before any metric
    (``run_study`` then measures them; ``jaxunlearn.tuning`` reads their predictions).

    ``original``: the models to unlearn instead of training the original (sequential
    requests: the models the previous request left, ``jaxunlearn.sequential``); the row
    "original" then holds them. It needs ``checkpoint_dir=None``: no checkpoint key could
    say where such models came from. ``save_unlearned``: with ``checkpoint_dir``, also save
    the unlearners' rows (what ``resume`` reuses); False saves only the original and
    retrained models (tuning and the leaderboard, which resume by whole cells). The other
    arguments are ``run_study``'s. ``ahead``: told of each row as it is trained or loaded
    (``RowsAhead``: its predictions and attack start then).
    """
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint directory (--checkpoint-dir)")
    if original is not None and checkpoint_dir is not None:
        raise ValueError("given original models cannot be checkpointed: run without a checkpoint directory")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive integer (seeds per call) or None, got {chunk!r}")
    if compile_cache:
        enable_compile_cache()
    cfg, task, model, own, dataset_used = prepare_study(cfg, task, model, log)
    store = None
    if checkpoint_dir is not None:
        store = CheckpointStore(checkpoint_dir, cfg, data_fingerprint(task))
        if not store.begin(resume) and resume:
            log(f"resume: no study in {checkpoint_dir} yet; starting from the beginning")
    plan = resolve_plan(cfg, model.family)
    if chunk is not None and chunk % plan.devices:
        raise ValueError(f"chunk {chunk} must be a multiple of the {plan.devices} devices the seeds are split across")
    task = replicate(task, plan)  # once, not per call: every device keeps its copy of the data
    assert cfg.unlearners is not None  # resolved by __post_init__
    pipelines = {
        name: build_stage(name, cfg, task, model, plan) for name in (*unlearn.reference_stages(), *cfg.unlearners)
    }
    # Metrics run the models in float32 whatever the training compute dtype: the parameters
    # are float32 anyway, and a measurement (above all the AIN's relearning threshold
    # crossing) must not move with the precision of the thing it measures.
    metric_model = (
        model if cfg.dtype == "float32" else build_model(dataclasses.replace(cfg, dtype="float32"), task, own)
    )
    relearn = relearn_for(cfg, task, metric_model, plan)
    if ahead is not None:
        ahead.bind(cfg, task, metric_model, plan, store)
    log(f"task: {task.name} | {task.describe()['train']} train rows")
    log(f"model: {cfg.model} ({model.family}) | backend {jax.default_backend()} | plan {plan}")
    measured = auto_plan(model.family).seed_strategy
    if plan.seed_strategy != measured:
        log(
            f"note: seed strategy {plan.seed_strategy!r} chosen over {measured!r}, the measured fastest for "
            f"{model.family} models on {jax.default_backend()} (benchmarks/RESULTS.md)"
        )

    stages: dict[str, StageResult] = {}  # by row
    loaded: set[str] = set()

    def target(seeds: int) -> Any:  # the restore target of that many models' states
        return seed_split(abstract_states(model, seeds), plan) if seeds % plan.devices == 0 else None

    def store_for(stage: str) -> CheckpointStore | None:  # where ``stage``'s rows are saved
        return store if save_unlearned or stage in REUSED_STAGES else None

    def run_calls(pipeline, keys, original, hps, label, rows, reuse, on=None, train_rows=None, epochless=None):
        """``pipeline`` over the models ``keys`` [T] for each of ``hps`` on the task ``on``
        (default: the study's), in calls that fit the device, each call saved as it ends
        (``rows``: the checkpoint rows, one per hp; ``epochless``: ``programs.epochless_key``).
        Returns (results, their parts)."""
        on = task if on is None else on
        runner = programs.runner(pipeline, plan, epochless)
        count = int(keys.shape[0])
        with Stopwatch() as planning:  # compiles (only) the programs the run then reuses
            fits, planned = seeds_per_call(runner, count, len(hps), original, on, hps[0], rows=train_rows)
        if fits < count:
            log(
                f"{label}: {count} models do not fit the device's memory together; running {fits} per call "
                f"({format_bytes(planned)} planned per call)"
            )
        per_call = min(fits, chunk or fits)
        parts = StageParts(store_for(pipeline.name), label, rows, reuse, target, count, log)
        results = run_in_chunks(
            runner,
            keys,
            original,
            on,
            hps,
            per_call,
            progress=progress,
            saved=parts.load,
            save=parts.save,
            rows=train_rows,
        )
        share = planning.wall / len(results)
        results = [dataclasses.replace(r, wall=r.wall + share, compile=r.compile + share) for r in results]
        return results, parts

    def run_sharded_row(spec, variant) -> StageResult:
        """A sharded stage's row (SISA): the ensembles trained, then unlearned
        (``jaxunlearn.shards``); each of its programs' runs is saved as a part of the row
        (``RowParts``), reloaded by ``--resume``, and deleted once the row is saved."""
        parts = RowParts(store_for(variant.stage), variant.row, resume, target, log)

        def run(pipeline, keys, original, on, train_rows, part) -> StageResult:
            calls = []

            def compute(label: str) -> StageResult:
                (result,), chunks = run_calls(
                    pipeline, keys, original, [variant.hp], label, [label], resume, on, train_rows
                )
                calls.append(chunks)
                return result

            result = parts.run(part, int(keys.shape[0]), compute)
            for chunks in calls:  # the part is saved whole: its calls' checkpoints go
                chunks.discard()
            return result

        keys = seed_keys(cfg.seed, cfg.seeds * spec.count, variant.stage)
        result, trained = run_sharded(spec, task, cfg.seeds, cfg.seed, keys, run, plan, log)
        log(
            f"{variant.row}: {cfg.seeds} x {spec.count} shard models trained in {trained.wall:.1f} s; unlearning "
            f"retrained for {result.wall:.1f} s ({result.compile:.1f} s compiling)"
        )
        row_store = store_for(variant.stage)
        if row_store is not None:
            row_store.save(variant.row, result)
        parts.discard()
        return result

    for name, pipeline in pipelines.items():
        if name == "original" and original is not None:
            stages["original"] = original
            loaded.add("original")
            if ahead is not None:
                ahead.row_done("original", original)
            continue
        models = cfg.seeds * (1 if pipeline.shards is None else pipeline.shards.count)
        to_run = []
        for variant in stage_variants(cfg, name):
            restored = (
                store.load(variant.row, target(models))
                if store is not None and (resume or name in REUSED_STAGES)
                else None
            )
            if restored is None:
                to_run.append(variant)
                continue
            assert store is not None  # only a store restores
            stages[variant.row] = restored
            loaded.add(variant.row)
            if ahead is not None:
                ahead.row_done(variant.row, restored)
            log(f"{variant.row}: loaded from {store.path(variant.row)} (trained earlier in {restored.wall:.1f} s)")
            warning = store.code_warning(variant.row)
            if warning:
                log(f"WARNING: {warning}")
        if not to_run:
            continue
        if pipeline.shards is not None:
            for variant in to_run:
                stages[variant.row] = run_sharded_row(pipeline.shards, variant)
                if ahead is not None:
                    ahead.row_done(variant.row, stages[variant.row])
            continue
        original_states = stages["original"].state if pipeline.needs_original else None
        results, parts = run_calls(
            pipeline,
            seed_keys(cfg.seed, cfg.seeds, name),
            original_states,
            [v.hp for v in to_run],
            name,
            [v.row for v in to_run],
            resume or name in REUSED_STAGES,
            epochless=programs.epochless_key(name, cfg, task, model, plan, pipeline),
        )
        wall, compile_s = sum(r.wall for r in results), sum(r.compile for r in results)
        what = f"{len(to_run)} hyperparameter values x {cfg.seeds} seeds together, " if len(to_run) > 1 else ""
        log(f"{name}: {what}{wall:.1f} s ({compile_s:.1f} s compiling)")
        row_store = store_for(name)
        for variant, result in zip(to_run, results, strict=True):
            stages[variant.row] = result
            if row_store is not None:
                row_store.save(variant.row, result)
            if ahead is not None:
                ahead.row_done(variant.row, result)
        parts.discard()

    rows = [v.row for v in study_variants(cfg)]
    return TrainedStudy(
        cfg, plan, task, model, metric_model, relearn, {row: stages[row] for row in rows}, loaded, store, dataset_used
    )


def check_study(cfg: StudyConfig, task: Task | None = None, model: Any = None) -> None:
    """Everything ``run_study`` checks before it trains, without training or compiling:
    the settings, the data, the model, and every stage's pipeline for this task (batch
    sizes against row counts, settings against the data).

    Raises:
        ValueError: what ``run_study`` would raise before its first stage (or, for the
            AIN's relearning, before its metrics).
    """
    cfg, task, fns, _, _ = prepare_study(cfg, task, model, log=lambda message: None)
    plan = resolve_plan(cfg, fns.family)
    assert cfg.unlearners is not None  # resolved by __post_init__
    for name in (*unlearn.reference_stages(), *cfg.unlearners):
        build_stage(name, cfg, task, fns, plan)
    relearn_for(cfg, task, fns, plan)


def build_stage(name: str, cfg: StudyConfig, task: Task, model: ModelFns, plan: LoopPlan):
    """``name``'s pipeline for the prepared study ``cfg`` (``prepare_study``) on ``task``:
    the one built earlier in the process for the same settings, model, layout and plan
    (``jaxunlearn.programs.stage_key``), so its compiled programs are reused."""
    key = programs.stage_key(name, cfg, task, model, plan)
    unlearner = unlearn.get(name)
    return programs.reuse(key, lambda: unlearner.build(model, task, cfg, plan), keep=(unlearner, model))


def relearn_for(cfg: StudyConfig, task: Task, model: ModelFns, plan: LoopPlan) -> Relearn:
    """The AIN's relearning for the study's metric model (one per settings, model, layout
    and plan within a process)."""
    settings = RelearnConfig(cfg.batch_size, cfg.loss, cfg.relearn_max_epochs, cfg.relearn_alpha)
    key = ("relearn", settings, id(model), task.layout(), plan)
    return programs.reuse(key, lambda: Relearn(model, task, settings, plan), keep=(model,))


def run_study(
    cfg: StudyConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
    task: Task | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    model: Any = None,
    compile_cache: bool = True,
    chunk: int | None = None,
    save_unlearned: bool = True,
) -> StudyResult:
    """Runs the whole study over ``cfg.seeds`` seeds and returns per-seed metrics and a table.

    ``result.write(out)`` then writes what ``jaxunlearn run`` writes.

    Args:
        cfg: the study's settings.
        progress: show progress bars.
        log: where one-line stage messages go.
        task: a prepared task, e.g. your own arrays (``jaxunlearn.data.task_from_arrays``);
            default: ``cfg.dataset`` with ``cfg.forget``.
        model: your own model instead of ``cfg.model``: a Flax Linen module instance, or
            ``NNXModel(NnxClass, **kwargs)`` (``jaxunlearn.models.user``). Its class and
            fields replace ``cfg.model``/``model_kwargs`` in the result and the checkpoint
            keys. It computes in its own dtype (``cfg.dtype`` must stay "float32").
        checkpoint_dir: save every finished stage there (orbax) and reuse the original
            and retrained models of an earlier study with the same settings and data.
            None: no checkpoints.
        resume: also reuse the unlearners' finished stages: continue a killed study.
            Needs ``checkpoint_dir`` holding a study of this configuration.
        compile_cache: keep compiled programs in the persistent XLA cache
            (``jaxunlearn.compile_cache``: ``~/.cache/jaxunlearn/xla`` unless the process or
            ``JAXUNLEARN_CACHE_DIR`` chose another folder); False leaves JAX's setting alone.
        chunk: at most this many seeds per compiled call (default: all that fit the
            device's memory). With checkpoints, each call's seeds are saved as it ends, so
            a kill loses at most one call of a long stage (``--resume`` continues from there).
        save_unlearned: with ``checkpoint_dir``, also save the unlearners' rows (what
            ``resume`` reuses); False: only the original and retrained models.
    """
    from jaxunlearn.report import environment_info

    environment = environment_info()  # now: the commit whose code runs, even if the tree changes meanwhile
    with AttackPool() as pool:
        during = jax.default_backend() != "cpu" if ATTACK_DURING_TRAINING is None else ATTACK_DURING_TRAINING
        ahead = RowsAhead(pool) if during else None
        trained = train_study(
            cfg,
            progress,
            log,
            task,
            checkpoint_dir,
            resume,
            model,
            compile_cache,
            chunk,
            save_unlearned=save_unlearned,
            ahead=ahead,
        )
        cfg, task, stages, plan = trained.cfg, trained.task, trained.stages, trained.plan
        rows = list(stages)
        reference_dir, reference_models = reference_location(trained.store)
        with Stopwatch() as sw:
            per_seed, preds, metric_timing = measure(
                stages,
                task,
                trained.metric_model,
                plan,
                trained.relearn,
                cfg,
                progress,
                reference_dir=reference_dir,
                models=reference_models,
                log=log,
                ahead=ahead,
            )
    metric_timing["wall"] = sw.wall
    log(
        f"metrics: {sw.wall:.1f} s; membership attack: {metric_timing['attacked_models']} models in "
        f"{metric_timing['attack_busy']:.1f} thread-s on {metric_timing['attack_threads']} threads, "
        f"{metric_timing['attack_waited']:.1f} s of it waited for after relearning"
        + (f" ({metric_timing['attacked_during_training']} attacked while training)" if ahead is not None else "")
    )
    for name, metrics in per_seed.items():
        if stages[name].members > 1:  # an ensemble has no AIN (see measure)
            continue
        for seed in np.flatnonzero(np.isnan(metrics["relearn_steps"])):
            log(f"WARNING: seed {seed}: relearning {name} for the AIN diverged (NaN/inf); its AIN is NaN")
    timings = {
        name: {"wall": s.wall, "compile": s.compile, "run": s.run, "loaded": name in trained.loaded}
        for name, s in stages.items()
    }
    for name, t in timings.items():
        per_seed[name]["run_seconds"] = np.full(cfg.seeds, t["run"])
        per_seed[name]["time_vs_retrain"] = np.full(cfg.seeds, t["run"] / max(timings["retrain"]["run"], 1e-9))
    stage_stats = {row: stats for row, stats in ((row, last_phase_stats(s)) for row, s in stages.items()) if stats}
    for row, stats in stage_stats.items():
        for key, values in stats.items():
            log(f"{row}: {key} {np.mean(values):.4g} (mean over seeds; {np.min(values):.4g} to {np.max(values):.4g})")
    divergence = [event for name, stage in stages.items() for event in stage.divergence(name)]
    for event in divergence:
        log(
            f"WARNING: seed {event['seed']} diverged (NaN/inf) in stage {event['stage']}, phase "
            f"{event['phase']}, step {event['step']}; its metrics are excluded from the summary"
        )
    mask_diverged(per_seed, divergence)
    summary = summarise(per_seed)
    table = study_table(cfg, summary, rows)
    y_mean, y_std = float(task.y_mean), float(task.y_std)
    splits = ("train", "test")
    return StudyResult(
        cfg,
        plan,
        {"dataset": trained.dataset_used, **task.describe()},
        per_seed,
        timings,
        summary,
        table,
        rows,
        divergence=divergence,
        stage_stats=stage_stats,
        checkpoints={name: str(trained.store.path(name)) for name in stages} if trained.store else {},
        predictions={name: {s: p[s] * y_std + y_mean for s in splits} for name, p in preds.items()},
        targets={s: np.asarray(getattr(task, s).y, np.float64)[:, 0] * y_std + y_mean for s in splits},
        forget={s: np.asarray(getattr(task, s).forget) > 0.5 for s in splits},
        prediction_digests={
            name: [prediction_digest([p[s][i] for s in splits]) for i in range(cfg.seeds)] for name, p in preds.items()
        },
        environment=environment,
        curves={name: {k: s.history[k] for k in CURVE_VALUES if k in s.history} for name, s in stages.items()},
        metric_timing=metric_timing,
    )


def study_table(cfg: StudyConfig, summary: dict, rows: list[str]) -> str:
    """The study's Markdown table of ``summary`` (``report.summarise``): mean ± 95% CI."""
    return format_table(
        summary,
        rows,
        study_columns(cfg),
        digits=3,
        plain=("run_seconds", "time_vs_retrain"),
        spread="ci95",
        why={**UNDEFINED_WHY, "*": DIVERGED_WHY},
    )


def abstract_states(model: ModelFns, seeds: int) -> Any:
    """The abstract finished state (no optimizer state) of ``seeds`` stacked seeds: a
    checkpoint's restore target."""
    return finished(
        jax.eval_shape(jax.vmap(lambda k: model.fresh_state(k, jnp.float32(0.0))), seed_keys(0, seeds, "original"))
    )


def study_columns(cfg: StudyConfig) -> list[tuple[str, str]]:
    """The study table's (metric, header) columns; the attack's header says when it ran
    on fewer models than the study has seeds (``cfg.mia_models``)."""
    if cfg.mia_models is None or cfg.mia_models >= cfg.seeds:
        return TABLE_COLUMNS
    note = f"{cfg.mia_models} of {cfg.seeds} models"
    return [(key, with_direction(key, "MIA forget", note) if key == "mia" else h) for key, h in TABLE_COLUMNS]


def mask_diverged(per_seed: dict[str, dict[str, np.ndarray]], divergence: list[dict]) -> None:
    """Sets the metrics of diverged seeds to NaN in place (summaries skip NaN).

    A seed whose original or retrained model diverged has no valid reference, so it is
    masked in every row; a seed that diverged in an unlearner is masked in that row only.
    """
    for event in divergence:
        rows = per_seed if event["stage"] in ("original", "retrain") else [event["stage"]]
        for row in rows:
            for metric, values in per_seed[row].items():
                if metric not in ("run_seconds", "time_vs_retrain"):
                    values[event["seed"]] = np.nan


def predict_rows(
    stages: dict[str, StageResult],
    task: Task,
    model: ModelFns,
    plan: LoopPlan,
    splits: tuple[str, ...],
    on_row: Callable[[], Any] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Every row's models' predictions on ``splits``, in standardised units.

    A sharded stage's members' predictions are aggregated (``aggregate_predictions``).

    Returns:
        {row: {split: [S, N] float64}}; ``on_row`` is called after each row.
    """

    def split_preds(state, task):
        return {s: predict(model, state.params, state.batch_stats, getattr(task, s).x, plan) for s in splits}

    predict_all = programs.reuse(
        ("split_preds", id(model), splits, plan), lambda: SeedExecutor(split_preds, plan, n_per_seed=1), keep=(model,)
    )
    preds = {}
    for name, stage in stages.items():
        out = predict_all((stage.state,), (task,))
        preds[name] = {
            s: aggregate_predictions(to_host(v)[..., 0], stage.members, stage.aggregate) for s, v in out.items()
        }
        if on_row is not None:
            on_row()
    return preds


def reference_metrics(
    stages: dict[str, StageResult],
    preds: dict[str, dict[str, np.ndarray]],
    task: Task,
    cfg: StudyConfig,
    plan: LoopPlan,
    reference_dir: Path | None,
    models: str | None,
) -> ReferenceMetrics | None:
    """Where the original and retrained rows' metrics are kept for these models and metric
    settings (``metrics.reference_cache``), or None when they are not kept: no
    ``reference_dir``, or a reference row that is missing or an ensemble."""
    if reference_dir is None or not all(r in stages and stages[r].members == 1 for r in REFERENCE_ROWS):
        return None
    settings = {k: getattr(cfg, k) for k in METRIC_SETTINGS} | {"plan": dataclasses.asdict(plan)}
    key = reference_key({r: preds[r] for r in REFERENCE_ROWS}, data_fingerprint(task), settings, models or "")
    return ReferenceMetrics(reference_dir, key)


def reference_location(store: CheckpointStore | None) -> tuple[Path | None, str | None]:
    """``measure``'s (reference_dir, models) for a study saved in ``store``: the reference
    rows' metrics live beside their checkpoints, keyed by the checkpoints' names."""
    if store is None:
        return None, None
    return store.root, " ".join(store.path(r).name for r in REFERENCE_ROWS)


def attack_inputs(task: Task) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The task's standardised targets {"train"|"test": [N]} and forget masks {split: [N]
    bool} on the host: what the attack and the errors compare predictions with."""
    splits = ("train", "test")
    return (
        {s: np.asarray(getattr(task, s).y)[:, 0] for s in splits},
        {s: np.asarray(getattr(task, s).forget) > 0.5 for s in splits},
    )


def start_row_attack(pool: AttackPool, row_preds: dict[str, np.ndarray], task: Task, cfg: StudyConfig) -> PendingRates:
    """Queues the study's membership attack (``cfg``'s samples, seed, units and cap) on one
    row's standardised predictions {"train"|"test": [S, N]} on ``pool``."""
    targets, forget = attack_inputs(task)
    return start_svc_attack(
        pool, row_preds, targets, forget, float(task.y_std), cfg.mia_samples, cfg.seed, cfg.mia_units, cfg.mia_models
    )


class RowsAhead:
    """Each row predicted, and its membership attack queued on ``pool``, as soon as its
    stage is trained (``train_study`` calls ``row_done``), so the host attacks a row while
    the device trains the next ones; ``measure`` then takes ``preds`` and ``attacks``.

    Used by ``run_study`` off the CPU (``ATTACK_DURING_TRAINING``): on XLA:CPU the attack's
    threads would take cores from the training and inflate its measured times. The
    original and retrained rows are attacked once both are predicted, and only when the
    reference cache does not already hold their metrics. Predictions and rates are those
    ``measure`` would compute: the same programs on the same models.
    """

    def __init__(self, pool: AttackPool):
        self.pool = pool
        self.preds: dict[str, dict[str, np.ndarray]] = {}
        self.attacks: dict[str, PendingRates] = {}
        self._stages: dict[str, StageResult] = {}
        self._study: tuple | None = None

    def bind(
        self, cfg: StudyConfig, task: Task, model: ModelFns, plan: LoopPlan, store: CheckpointStore | None
    ) -> None:
        """The prepared study whose rows will arrive (``train_study``)."""
        self._study = (cfg, task, model, plan, store)

    def row_done(self, row: str, stage: StageResult) -> None:
        """Predicts ``row`` and queues its attack (the reference rows: once both are in)."""
        assert self._study is not None, "RowsAhead.bind first"
        cfg, task, model, plan, store = self._study
        self._stages[row] = stage
        self.preds[row] = predict_rows({row: stage}, task, model, plan, ("train", "val", "test"))[row]
        rows = [row] if row not in REFERENCE_ROWS else []
        if row in REFERENCE_ROWS and all(r in self.preds for r in REFERENCE_ROWS):
            cache = reference_metrics(self._stages, self.preds, task, cfg, plan, *reference_location(store))
            rows = list(REFERENCE_ROWS) if cache is None or cache.load() is None else []
        for name in rows:
            self.attacks[name] = start_row_attack(self.pool, self.preds[name], task, cfg)


def measure(
    stages: dict[str, StageResult],
    task: Task,
    model: ModelFns,
    plan: LoopPlan,
    relearn: Relearn,
    cfg: StudyConfig,
    progress: bool = False,
    reference_dir: Path | None = None,
    models: str | None = None,
    log: Callable[[str], None] = print,
    ahead: RowsAhead | None = None,
):
    """Predictions, errors, distances, membership attack and AIN for every stage's models.

    ``ahead``: the rows predicted, and their attacks started, while the study trained
    (``RowsAhead``; the attacks run on its pool); the other rows are predicted and
    attacked here.

    With ``reference_dir``, the original and retrained rows' metrics are kept there and
    reused when the same two rows' models are measured again with the same settings
    (``metrics.reference_cache``; ``models``: their checkpoint identity, part of the key):
    a benchmark's cells of one scenario attack and relearn them once.

    The membership attacks (``metrics.membership.AttackPool``) run in host threads while
    the device relearns the models for the AIN.

    Returns:
        (per_seed {stage: {metric: [S]}}, predictions {stage: {"train"|"val"|"test": [S, N]}}
        in standardised units, timing): ``timing`` {"attacked_models", "attack_threads",
        "attack_busy" (the attacks' thread-seconds), "attack_waited" (seconds the study
        waited for them after relearning), "attacked_during_training" (the models among
        them whose attack ``ahead`` started)}.
    """
    bar = tqdm(total=3 * len(stages), desc="metrics", unit="step", leave=False, disable=not progress)
    early = {} if ahead is None else ahead.preds
    bar.update(sum(name in early for name in stages))
    rest = {name: stage for name, stage in stages.items() if name not in early}
    preds = predict_rows(rest, task, model, plan, ("train", "val", "test"), on_row=bar.update)
    preds = {name: early[name] if name in early else preds[name] for name in stages}
    val_parts = {name: mae_parts(p, task) for name, p in preds.items()}  # no test row: a sweep's criterion
    cache = reference_metrics(stages, preds, task, cfg, plan, reference_dir, models)
    known = None if cache is None else cache.load()
    if known is not None:
        assert cache is not None
        log(f"metrics: original and retrain measured before with these models and settings ({cache.path})")
    forget_loss = programs.reuse(
        ("forget_loss", id(relearn), plan), lambda: SeedExecutor(relearn.forget_val_loss, plan, 1), keep=(relearn,)
    )
    relearn_steps = programs.reuse(
        ("relearn_steps", id(relearn), plan), lambda: RelearnRunner(relearn, plan), keep=(relearn,)
    )

    targets, forget = attack_inputs(task)
    y_std = float(task.y_std)

    attacked = [name for name in stages if known is None or name not in known]
    if cfg.mia_models is None and cfg.seeds > LARGE_ATTACK:
        log(
            f"note: the membership attack runs on all {cfg.seeds} models of each row; --attack-models "
            f"{LARGE_ATTACK} (mia_models) attacks the first {LARGE_ATTACK} only (benchmarks/RESULTS.md, issue 28)"
        )
    with contextlib.ExitStack() as stack:  # the attacks run on the host while the device relearns
        pool = AttackPool() if ahead is None else ahead.pool
        if ahead is None:
            stack.enter_context(pool)
        started = {} if ahead is None else ahead.attacks
        attacks = {
            name: started[name] if name in started else start_row_attack(pool, preds[name], task, cfg)
            for name in attacked
        }
        threshold = (1.0 + cfg.relearn_alpha) * forget_loss((stages["original"].state,), (task,))
        keys = seed_keys(cfg.seed, cfg.seeds, "relearn")
        lr = jnp.full((cfg.seeds,), cfg.relearn_lr, jnp.float32)
        steps = {}
        for name, stage in stages.items():  # relearning to the threshold: the slowest metric
            if known is not None and name in known:
                steps[name] = known[name]["relearn_steps"]
            elif stage.members > 1:  # an ensemble is not one model to relearn: no AIN
                steps[name] = np.full(cfg.seeds, np.nan)
            else:
                steps[name] = relearn_steps(keys, stage.state, threshold, lr, task)
            bar.update()

        per_seed = {}
        for name in stages:
            if name not in attacks:  # measured before (the reference cache)
                assert known is not None
                per_seed[name] = {k: v.copy() for k, v in known[name].items()}
                bar.update()
                continue
            metrics = prediction_metrics(
                preds[name],
                preds["retrain"],
                targets,
                forget,
                y_std,
                cfg.mia_samples,
                cfg.seed,
                cfg.mia_units,
                cfg.mia_models,
                mia=attacks[name].result(),
            )
            metrics["val_gap"] = validation_gap(val_parts[name], val_parts["retrain"])
            metrics["relearn_steps"] = steps[name].astype(np.float64)
            metrics["ain"] = anamnesis_index(steps[name], steps["retrain"])
            per_seed[name] = metrics
            bar.update()
    timing = {
        "attacked_models": len(attacked) * attacked_models(cfg.seeds, cfg.mia_models),
        "attack_threads": pool.workers,
        "attack_busy": pool.busy_seconds,
        "attack_waited": sum(p.waited for p in attacks.values()),
        "attacked_during_training": sum(name in started for name in attacked)
        * attacked_models(cfg.seeds, cfg.mia_models),
    }
    bar.close()
    if cache is not None and known is None:
        cache.save(per_seed)
    return per_seed, preds, timing
