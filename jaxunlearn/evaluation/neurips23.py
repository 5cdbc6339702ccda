"""The NeurIPS 2023 unlearning challenge's protocol, for regression (../EVALUATION.md, docs).

ONE original model is trained on every training row. Each unlearner turns it into N
models that differ only in the unlearner's own randomness (its key: data order, noise,
proxy init). N models are retrained from scratch on the retain rows (seeds 0..N-1 of the
retrain stage), and a second, independent N (seeds N..2N-1) measure the metric's noise
floor: retrained against retrained should score F near 1. The original itself, N times
(do nothing), is the control that must score badly.

Per forget example, the statistic is each model's prediction in standardised target
units: [N, F] per row, compared with the retrained models' by
``jaxunlearn.metrics.epsilon``. Beside it, the paper's SVC attack runs on the first
``attack_models`` models of each row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.evaluation.blocks import BlockRunner
from jaxunlearn.evaluation.protocol import EvaluationConfig, EvaluationResult, register_protocol
from jaxunlearn.evaluation.table import Column, markdown_table
from jaxunlearn.metrics.epsilon import (
    EPS_CAP,
    GRID_PER_UNIT,
    RANGE_GUARD,
    eps_histogram,
    few_models_warning,
    final_score,
    forgetting_quality,
    grid_scale,
    point_cutoff,
)
from jaxunlearn.metrics.spread import spread_summary
from jaxunlearn.metrics.suite import svc_attack
from jaxunlearn.runner import StageResult

ORIGINAL_ROW = "original (do nothing)"
FLOOR_ROW = "retrain (2nd set: noise floor)"
# The EvaluationConfig fields this protocol reads beyond ``protocol.SHARED_SETTINGS``.
SETTINGS = ("attack_models", "grid_unit")
# What one unit of the eps attacks' grid is, as the notes under the table say it.
GRID_UNIT_TEXT = {
    "reference-std": "standard deviation of the reference's predictions on each example",
    "target": "standardised target unit (the challenge's rule taken literally)",
}
ROW_COLUMN = Column(
    "row",
    "row",
    f"the N models scored against the reference (N models retrained from scratch on the retain rows): "
    f"`{ORIGINAL_ROW}` (the one original model N times: the control that must score badly), "
    f"`{FLOOR_ROW}` (N more retrained models: what an unlearner indistinguishable from retraining scores), "
    "then each unlearner (N models unlearned from the one original model).",
)
COLUMNS = [
    Column(
        "forgetting_quality",
        "F",
        "forgetting quality: the mean over the forget examples of the points each example's eps earns "
        "(2^-k for eps in bin k = [k/2, (k+1)/2), none at or beyond the cut-off ceil(ln(N - 1))); in [0, 1], "
        "higher is better, read against the noise floor row's F (two retrained sets score about 0.1-0.2 against "
        "each other), not against 1.",
    ),
    Column(
        "score",
        "final score",
        "F x (retain MAE_R/MAE_U) x (test MAE_R/MAE_U): the challenge's final score with its accuracy ratios "
        "turned into error ratios (the two columns below), not capped; higher is better.",
    ),
    Column(
        "eps_mean",
        "mean eps",
        f"the mean over the forget examples of the per-example eps (in [0, {EPS_CAP:g}]: the largest eps of the "
        "threshold and interval attacks on the row's N predictions against the reference's); examples at the cap "
        "weigh heavily; lower is better, the noise floor row's is what retraining shows.",
    ),
    Column(
        "eps_capped",
        "eps at cap",
        f"the share of forget examples whose eps is at the cap, {EPS_CAP:g}: an attack told the row's N "
        "predictions from the reference's without a single error (FPR = FNR = 0, eps = infinity), or the range "
        f"guard fired (one sample's range under {RANGE_GUARD:g} times the other's: a point mass, such as the "
        "original row or a deterministic unlearner). N models a side cannot show a finite eps at or beyond the "
        "cut-off, so (for N >= 3) these are exactly the examples that earn no point. In [0, 1]; lower is better.",
    ),
    Column(
        "spread_ratio",
        "spread ratio",
        "the median over the forget examples of the std of the row's N predictions divided by the reference's "
        "(jaxunlearn.metrics.spread): 1 is retraining's spread, above 1 wider, below 1 narrower; the original row "
        "is 0 (one model N times). A row near 0 is almost a point mass: its eps says where that point sits.",
    ),
    Column(
        "mean_shift",
        "mean shift",
        "the median over the forget examples of |mean of the row's N predictions - the reference's mean|, in units "
        "of the reference's std: where the row sits, apart from its spread; the noise floor row's is what two "
        "retrained sets show (of the order of sqrt(2/N)). Lower is better.",
    ),
    Column(
        "retain_mae_ratio",
        "retain MAE_R/MAE_U",
        "the reference's MAE on the retain rows divided by the row's (each the mean over its N models): 1 is "
        "retraining's error, below 1 a larger error than retraining's, above 1 a smaller one.",
    ),
    Column(
        "test_mae_ratio",
        "test MAE_R/MAE_U",
        "the same ratio on all test rows (those a forget rule marks included).",
    ),
    Column(
        "svc_member_rate",
        "SVC member rate",
        "the paper's population attack (an RBF SVC on per-sample L1 losses, trained on retain rows against test "
        "rows): the share of forget rows it calls members, averaged over the row's first `attack_models` models "
        "(`--attack-models`); nearest the noise floor row's is best (a rate near 0 is overshooting, not "
        "forgetting).",
    ),
    Column(
        "run_seconds",
        "time s",
        "seconds the row's N models took after compiling, all together (the original row reuses the one "
        "original model: 0).",
    ),
    Column(
        "time_vs_retrain",
        "time / retrain",
        "`time s` divided by the reference's (N models retrained from scratch); the challenge turned away "
        "unlearners slower than about 0.2.",
    ),
]


def _mae(preds: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
    """Mean over models of each model's MAE on the rows ``mask`` (standardised units)."""
    return float(np.mean(np.abs(preds[:, mask] - targets[None, mask])))


def model_warnings(n: int) -> list[str]:
    """The warnings about N models a row, said before the work and again under the table."""
    return [w for w in (few_models_warning(n),) if w]


def announce(n: int, log: Callable[[str], None]) -> None:
    for warning in model_warnings(n):
        log(f"warning: {warning}")


def run_neurips23(
    cfg: StudyConfig, ecfg: EvaluationConfig, blocks: BlockRunner, task: Task, log: Callable[[str], None] = print
) -> EvaluationResult:
    n = ecfg.models
    announce(n, log)
    original = blocks.run("original", "original", task, 0, 1)
    retrained = blocks.run("retrain", "retrain", task, 0, n)
    floor = blocks.run("retrain-floor", "retrain", task, n, n)
    assert cfg.unlearners is not None  # resolved by __post_init__
    unlearned = {name: blocks.run(name, name, task, 0, n, original=original) for name in cfg.unlearners}
    return score_blocks(cfg, ecfg, blocks, task, original, retrained, floor, unlearned)


def score_blocks(
    cfg: StudyConfig,
    ecfg: EvaluationConfig,
    blocks: BlockRunner,
    task: Task,
    original: StageResult,
    retrained: StageResult,
    floor: StageResult,
    unlearned: dict[str, StageResult],
    run_seconds: dict[str, float] | None = None,
    what: str = "every unlearned model starts from ONE original model",
) -> EvaluationResult:
    """The protocol's table from its blocks of models: ``original`` (one model), the
    ``retrained`` reference and the ``floor`` (N each), and N ``unlearned`` models per
    unlearner, all predicted on ``task``, whose forget rows are the examples scored.

    Args:
        run_seconds: {unlearner: seconds} where a row's time is not its block's ``run``
            (several blocks in a chain); what: how the unlearned models came to be, for the notes.
    """
    n = ecfg.models
    warnings = model_warnings(n)
    preds = {
        ORIGINAL_ROW: {s: np.repeat(p, n, axis=0) for s, p in blocks.predictions(original, task).items()},
        "retrain": blocks.predictions(retrained, task),
        FLOOR_ROW: blocks.predictions(floor, task),
    }
    seconds = {ORIGINAL_ROW: 0.0, FLOOR_ROW: floor.run}
    for name, result in unlearned.items():
        preds[name] = blocks.predictions(result, task)
        seconds[name] = result.run if run_seconds is None else run_seconds[name]

    targets = {s: np.asarray(getattr(task, s).y, np.float64)[:, 0] for s in ("train", "test")}
    forget = {s: np.asarray(getattr(task, s).forget) > 0.5 for s in ("train", "test")}
    all_test = np.ones_like(forget["test"])
    reference = preds["retrain"]
    ref_retain, ref_test = (
        _mae(reference["train"], targets["train"], ~forget["train"]),
        _mae(reference["test"], targets["test"], all_test),
    )
    rows = [ORIGINAL_ROW, FLOOR_ROW, *unlearned]
    metrics, per_example, histograms = {}, {}, {}
    ref_forget = reference["train"][:, forget["train"]]  # [N, F]: the reference on the forget examples
    scale = grid_scale(ref_forget, ecfg.grid_unit)
    attack = min(ecfg.attack_models, n)
    for row in rows:
        p = preds[row]
        on_forget = p["train"][:, forget["train"]]
        quality, eps = forgetting_quality(on_forget, ref_forget, scale=scale)
        retain_mae, test_mae = (
            _mae(p["train"], targets["train"], ~forget["train"]),
            _mae(p["test"], targets["test"], all_test),
        )
        svc = svc_attack(p, targets, forget, float(task.y_std), cfg.mia_samples, cfg.seed, cfg.mia_units, attack)
        metrics[row] = {
            "forgetting_quality": quality,
            "score": final_score(quality, retain_mae, ref_retain, test_mae, ref_test),
            "eps_mean": float(np.mean(eps)),
            "eps_median": float(np.median(eps)),
            "eps_capped": float(np.mean(eps >= EPS_CAP)),
            **spread_summary(on_forget, ref_forget),
            "retain_mae_ratio": ref_retain / retain_mae,
            "test_mae_ratio": ref_test / test_mae,
            "retain_mae": retain_mae * float(task.y_std),
            "test_mae": test_mae * float(task.y_std),
            "svc_member_rate": float(np.mean(svc)),
            "run_seconds": seconds[row],
            "time_vs_retrain": seconds[row] / max(retrained.run, 1e-9),
        }
        per_example[row] = {"eps": [float(e) for e in eps]}
        histograms[row] = eps_histogram(eps, n)
    notes = [
        f"{n} models per row; {what}; the reference is {n} models "
        f"retrained from scratch, the noise floor a second, independent {n}.",
        f"Points stop at eps = ceil(ln({n} - 1)) = {point_cutoff(n):g}; the attacks' grid: {GRID_PER_UNIT} points "
        f"per {GRID_UNIT_TEXT[ecfg.grid_unit]}; SVC member rate: the first {attack} models of each row, "
        f"{cfg.mia_units} loss units.",
        *(f"WARNING: {w}" for w in warnings),
    ]
    columns = [ROW_COLUMN, *COLUMNS]
    return EvaluationResult(
        "neurips23",
        rows,
        metrics,
        per_example,
        [int(i) for i in np.flatnonzero(forget["train"])],
        dict(blocks.timings),
        markdown_table(rows, metrics, COLUMNS, ROW_COLUMN.header),
        histograms,
        notes,
        columns,
        warnings,
    )


register_protocol("neurips23", run_neurips23, SETTINGS, [ROW_COLUMN, *COLUMNS])
