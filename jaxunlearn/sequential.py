"""Sequential forget requests: k forget sets unlearned one after another.

A person's request rarely comes alone. ``run_sequential`` draws ``requests`` disjoint random
forget sets (each ``fraction`` of every split's rows) and, for request j = 1..k:

1. starts the unlearner from the models request j-1 left (request 1: the original models),
   with the same hyperparameters every time;
2. gives it request j's training rows to forget and, to keep, the training rows no request
   has named; the rows of requests 1..j-1 are out of its training set (``Split.rows``: x and
   y stay one copy, and the standardisation stays the original's);
3. compares it with retraining without requests 1..j (the retrained models of this request);
4. measures every metric with requests 1..j as the forget rows of every split, so drift as
   the requests accumulate shows in the table of each request.

The original models row is the models before any request, measured against the same
references. A sharded unlearner (SISA) is refused: its requests would need its shards'
checkpoints.

>>> result = run_sequential(StudyConfig(seeds=4), NAME, requests=4, fraction=0.025)  # doctest: +SKIP
>>> print(result.steps[-1].table)                                                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.forget_rules import SPLITS, Mask
from jaxunlearn.data.sources import RawData, build_task, load_dataset
from jaxunlearn.metrics.relearn import Relearn, RelearnConfig
from jaxunlearn.report import format_table, summarise
from jaxunlearn.runner import StageResult
from jaxunlearn.seeds import replicate

# Request j (0-based) runs with root seed cfg.seed + j * REQUEST_SEED_STRIDE: its unlearning
# and retraining never reuse an earlier request's keys.
REQUEST_SEED_STRIDE = 1000


@dataclasses.dataclass
class RequestResult:
    """The study after one request.

    Attributes:
        request: j (1-based); forgotten: {split: rows forgotten so far}.
        per_seed: {row: {metric: [S]}} for "original", "retrain" (without requests 1..j)
            and the unlearner after request j; summary: ``summarise(per_seed)``; table: text.
        predictions: {row: {"train"|"test": [S, N]}} in standardised units.
    """

    request: int
    forgotten: dict[str, int]
    per_seed: dict[str, dict[str, np.ndarray]]
    summary: dict
    table: str
    predictions: dict[str, dict[str, np.ndarray]]


@dataclasses.dataclass
class SequentialResult:
    """Every request's result, and the seconds spent training and unlearning (compile
    included, metrics apart) and compiling."""

    config: StudyConfig
    unlearner: str
    steps: list[RequestResult]
    seconds: float = 0.0
    compile_seconds: float = 0.0


def request_masks(raw: RawData, requests: int, fraction: float, draw: int = 0) -> list[dict[str, np.ndarray]]:
    """``requests`` disjoint forget masks per split, each ``max(1, round(fraction N))`` rows
    drawn at random (seeded by ``draw`` and the split).

    Raises:
        ValueError: fewer than 1 request, a fraction outside (0, 1), or requests that would
            leave a split's training rows without a row to keep.
    """
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"requests must be a positive integer, got {requests!r}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    out: list[dict[str, np.ndarray]] = [{} for _ in range(requests)]
    for i, split in enumerate(SPLITS):
        n = np.asarray(raw.splits[split][1]).reshape(-1).shape[0]
        size = max(1, round(fraction * n))
        if requests * size >= n:
            raise ValueError(
                f"{requests} requests of {size} rows leave no {split} row to keep ({n} rows); "
                f"use fewer requests or a smaller fraction"
            )
        order = np.random.default_rng([draw, i]).permutation(n)
        for j in range(requests):
            mask = np.zeros(n, bool)
            mask[order[j * size : (j + 1) * size]] = True
            out[j][split] = mask
    return out


@dataclasses.dataclass(frozen=True)
class Request:
    """Request j (1-based) as the stages see it.

    Attributes:
        task: what request j's stages run on: its forget rows are request j's, its training
            rows those no earlier request named (``Split.rows``; x and y stay one copy).
        forgotten: {split: bool [N]} the rows of requests 1..j: what the metrics judge.
    """

    task: Any
    forgotten: dict[str, np.ndarray]


def request_tasks(raw: RawData, masks: list[dict[str, np.ndarray]]) -> list[Request]:
    """One ``Request`` per mask of ``request_masks``, in order."""
    out = []
    for j in range(len(masks)):
        forgotten = {s: np.logical_or.reduce([m[s] for m in masks[: j + 1]]) for s in SPLITS}
        earlier = np.logical_or.reduce([m["train"] for m in masks[:j]]) if j else np.zeros_like(forgotten["train"])
        task = build_task(raw, Mask(masks[j])).with_train_rows(np.flatnonzero(~earlier).astype(np.int32))
        out.append(Request(task, forgotten))
    return out


def sharded_unlearners(cfg: StudyConfig, task: Any, model: Any = None) -> list[str]:
    """Which of ``cfg.unlearners`` build a sharded stage (SISA) on ``task``: they cannot run
    sequential requests. Builds the pipelines only (nothing compiles)."""
    from jaxunlearn.study import prepare_study, resolve_plan

    cfg, task, fns, _, _ = prepare_study(cfg, task, model, log=lambda message: None)
    plan = resolve_plan(cfg, fns.family)
    assert cfg.unlearners is not None  # resolved by __post_init__
    return [u for u in cfg.unlearners if unlearn.get(u).build(fns, task, cfg, plan).shards is not None]


def run_sequential(
    cfg: StudyConfig,
    unlearner: str,
    requests: int = 4,
    fraction: float = 0.025,
    draw: int = 0,
    raw: RawData | None = None,
    model: Any = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SequentialResult:
    """Runs ``unlearner`` over ``requests`` successive forget requests (module docstring).

    Args:
        cfg: the study's settings (its forget rule is replaced by the requests; its
            ``hp`` and ``settings`` apply to every request).
        unlearner: a registered, unsharded unlearner.
        requests, fraction, draw: k requests of ``fraction`` of each split, drawn with ``draw``.
        raw: your own data (default ``cfg.dataset``); model: your own model.

    Returns:
        One ``RequestResult`` per request, in order.
    """
    from jaxunlearn.study import measure, study_columns, train_study

    if unlearner not in unlearn.names():
        raise ValueError(f"unknown unlearner {unlearner!r}; choose from {unlearn.names()}")
    cfg = cfg.replace(unlearners=(unlearner,), sweep=(), trials=())
    raw = load_dataset(cfg.dataset, **dict(cfg.dataset_kwargs)) if raw is None else raw
    masks = request_masks(raw, requests, fraction, draw)
    if sharded_unlearners(cfg, build_task(raw, Mask(masks[0])), model):
        raise ValueError(f"{unlearner} is a sharded unlearner; sequential requests would need its shards' checkpoints")
    original: StageResult | None = None
    current: StageResult | None = None
    steps = []
    seconds = compile_seconds = 0.0
    for j, request in enumerate(request_tasks(raw, masks)):
        task, forgotten = request.task, request.forgotten
        request_cfg = cfg.replace(seed=cfg.seed + j * REQUEST_SEED_STRIDE)
        trained = train_study(request_cfg, progress, log, task, None, False, model, True, None, current)
        ran = [stage for row, stage in trained.stages.items() if row not in trained.loaded]
        seconds += sum(stage.wall for stage in ran)
        compile_seconds += sum(stage.compile for stage in ran)
        original = trained.stages["original"] if original is None else original
        current = trained.stages[unlearner]
        judged = replicate(build_task(raw, Mask(forgotten)), trained.plan)
        relearn = Relearn(
            trained.metric_model,
            judged,
            RelearnConfig(cfg.batch_size, cfg.loss, cfg.relearn_max_epochs, cfg.relearn_alpha),
            trained.plan,
        )
        stages = {"original": original, "retrain": trained.stages["retrain"], unlearner: current}
        per_seed, preds, _ = measure(stages, judged, trained.metric_model, trained.plan, relearn, request_cfg, progress)
        retrain_run = max(stages["retrain"].run, 1e-9)
        for row, stage in stages.items():
            per_seed[row]["run_seconds"] = np.full(cfg.seeds, stage.run)
            per_seed[row]["time_vs_retrain"] = np.full(cfg.seeds, stage.run / retrain_run)
        summary = summarise(per_seed)
        table = format_table(
            summary, list(stages), study_columns(cfg), plain=("run_seconds", "time_vs_retrain"), spread="ci95"
        )
        counts = {s: int(forgotten[s].sum()) for s in SPLITS}
        log(f"request {j + 1}/{requests}: {counts['train']} training rows forgotten so far")
        steps.append(RequestResult(j + 1, counts, per_seed, summary, table, preds))
    return SequentialResult(cfg, unlearner, steps, seconds, compile_seconds)


def evaluate_sequential(
    cfg: StudyConfig,
    ecfg: Any,
    requests: int = 4,
    fraction: float = 0.025,
    draw: int = 0,
    raw: RawData | None = None,
    model: Any = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[Any, dict[str, Any]]:
    """The NeurIPS'23 per-example test after the last of ``requests`` sequential requests.

    For each of ``cfg.unlearners``, N = ``ecfg.models`` models unlearned request by request
    from ONE original model (model i after request j starts from model i after request
    j - 1; request j draws seeds j N .. j N + N - 1 of the unlearner's stage, so no request
    reuses another's keys), against N models retrained without requests 1..k and a second,
    independent N (the noise floor). The forget examples scored are the training rows of
    all k requests. Blocks are saved under ``checkpoint_dir`` as ``run_evaluation`` saves
    them (``resume`` loads them). U-LiRA is not built for sequential requests.

    Args:
        cfg: the study's settings (its forget rule is replaced by the requests).
        ecfg: an ``EvaluationConfig`` of the "neurips23" protocol.
        requests, fraction, draw: as ``run_sequential``.

    Returns:
        (the ``EvaluationResult``, a description of the run), as ``run_evaluation``.
    """
    from jaxunlearn.evaluation import neurips23, run_evaluation

    if ecfg.protocol != "neurips23":
        raise ValueError(f"sequential requests are evaluated by the neurips23 protocol only, not {ecfg.protocol!r}")
    raw = load_dataset(cfg.dataset, **dict(cfg.dataset_kwargs)) if raw is None else raw
    cfg = cfg.replace(forget=None)
    steps = request_tasks(raw, request_masks(raw, requests, fraction, draw))
    sharded = sharded_unlearners(cfg, steps[0].task, model)
    if sharded:
        raise ValueError(f"{sharded} build sharded stages; sequential requests would need their shards' checkpoints")
    described = {"requests": requests, "fraction": fraction, "draw": draw}

    def protocol(cfg, ecfg, blocks, task, log):
        n = ecfg.models
        neurips23.announce(n, log)
        last = steps[-1].task
        original = blocks.run("original", "original", steps[0].task, 0, 1)
        retrained = blocks.run("retrain", "retrain", last, 0, n, description=described)
        floor = blocks.run("retrain-floor", "retrain", last, n, n, description=described)
        unlearned, seconds = {}, {}
        for name in cfg.unlearners:
            current, seconds[name] = original, 0.0
            for j, request in enumerate(steps):
                block = f"{name}-request{j + 1}"
                current = blocks.run(
                    block, name, request.task, j * n, n, original=current, description={**described, "request": j + 1}
                )
                seconds[name] += current.run
            unlearned[name] = current
        judged = build_task(raw, Mask(steps[-1].forgotten))
        what = (
            f"every unlearned model starts from ONE original model and unlearns {requests} requests of "
            f"{fraction:.1%} of the rows in turn; the forget examples are all {requests} requests' training rows"
        )
        return neurips23.score_blocks(cfg, ecfg, blocks, judged, original, retrained, floor, unlearned, seconds, what)

    return run_evaluation(cfg, ecfg, steps[0].task, model, checkpoint_dir, resume, progress, log, protocol=protocol)
