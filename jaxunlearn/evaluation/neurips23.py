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
from jaxunlearn.evaluation.table import markdown_table
from jaxunlearn.metrics.epsilon import EPS_CAP, eps_histogram, final_score, forgetting_quality
from jaxunlearn.metrics.suite import svc_attack

ORIGINAL_ROW = "original (do nothing)"
FLOOR_ROW = "retrain (2nd set: noise floor)"
COLUMNS = [
    ("forgetting_quality", "F"),
    ("score", "final score"),
    ("eps_mean", "mean eps"),
    ("eps_capped", "eps at cap"),
    ("retain_mae_ratio", "retain MAE_R/MAE_U"),
    ("test_mae_ratio", "test MAE_R/MAE_U"),
    ("svc_member_rate", "SVC member rate"),
    ("run_seconds", "time s"),
    ("time_vs_retrain", "time / retrain"),
]


def _mae(preds: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
    """Mean over models of each model's MAE on the rows ``mask`` (standardised units)."""
    return float(np.mean(np.abs(preds[:, mask] - targets[None, mask])))


def run_neurips23(
    cfg: StudyConfig, ecfg: EvaluationConfig, blocks: BlockRunner, task: Task, log: Callable[[str], None] = print
) -> EvaluationResult:
    n = ecfg.models
    original = blocks.run("original", "original", task, 0, 1)
    retrained = blocks.run("retrain", "retrain", task, 0, n)
    floor = blocks.run("retrain-floor", "retrain", task, n, n)
    preds = {
        ORIGINAL_ROW: blocks.predictions(original, task),
        "retrain": blocks.predictions(retrained, task),
        FLOOR_ROW: blocks.predictions(floor, task),
    }
    preds[ORIGINAL_ROW] = {s: np.repeat(p, n, axis=0) for s, p in preds[ORIGINAL_ROW].items()}
    run_seconds = {ORIGINAL_ROW: 0.0, FLOOR_ROW: floor.run}
    assert cfg.unlearners is not None  # resolved by __post_init__
    for name in cfg.unlearners:
        result = blocks.run(name, name, task, 0, n, original=original)
        preds[name] = blocks.predictions(result, task)
        run_seconds[name] = result.run

    targets = {s: np.asarray(getattr(task, s).y, np.float64)[:, 0] for s in ("train", "test")}
    forget = {s: np.asarray(getattr(task, s).forget) > 0.5 for s in ("train", "test")}
    all_test = np.ones_like(forget["test"])
    reference = preds["retrain"]
    ref_retain, ref_test = (
        _mae(reference["train"], targets["train"], ~forget["train"]),
        _mae(reference["test"], targets["test"], all_test),
    )
    rows = [ORIGINAL_ROW, FLOOR_ROW, *cfg.unlearners]
    metrics, per_example, histograms = {}, {}, {}
    attack = min(ecfg.attack_models, n)
    for row in rows:
        p = preds[row]
        quality, eps = forgetting_quality(p["train"][:, forget["train"]], reference["train"][:, forget["train"]])
        retain_mae, test_mae = (
            _mae(p["train"], targets["train"], ~forget["train"]),
            _mae(p["test"], targets["test"], all_test),
        )
        svc = svc_attack(
            {s: v[:attack] for s, v in p.items()},
            targets,
            forget,
            float(task.y_std),
            cfg.mia_samples,
            cfg.seed,
            cfg.mia_units,
        )
        metrics[row] = {
            "forgetting_quality": quality,
            "score": final_score(quality, retain_mae, ref_retain, test_mae, ref_test),
            "eps_mean": float(np.mean(eps)),
            "eps_median": float(np.median(eps)),
            "eps_capped": float(np.mean(eps >= EPS_CAP)),
            "retain_mae_ratio": ref_retain / retain_mae,
            "test_mae_ratio": ref_test / test_mae,
            "retain_mae": retain_mae * float(task.y_std),
            "test_mae": test_mae * float(task.y_std),
            "svc_member_rate": float(np.mean(svc)),
            "run_seconds": run_seconds[row],
            "time_vs_retrain": run_seconds[row] / max(retrained.run, 1e-9),
        }
        per_example[row] = {"eps": [float(e) for e in eps]}
        histograms[row] = eps_histogram(eps, n)
    notes = [
        f"{n} models per row; every unlearned model starts from ONE original model; the reference is {n} models "
        f"retrained from scratch, the noise floor a second, independent {n}.",
        "F: the challenge's forgetting quality (mean points per forget example, 2^-k for eps in bin k of width 0.5); "
        "final score = F x (retain MAE_R/MAE_U) x (test MAE_R/MAE_U): the challenge's accuracy ratios, the right "
        "way up for errors.",
        f"SVC member rate: the paper's attack ({cfg.mia_units} loss units) on the first {attack} models of each row.",
        "time: the row's models after compiling, all together; the original's control costs nothing.",
    ]
    return EvaluationResult(
        "neurips23",
        rows,
        metrics,
        per_example,
        [int(i) for i in np.flatnonzero(forget["train"])],
        dict(blocks.timings),
        markdown_table(rows, metrics, COLUMNS),
        histograms,
        notes,
    )


register_protocol("neurips23", run_neurips23)
