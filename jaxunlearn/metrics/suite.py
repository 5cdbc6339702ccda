"""Every per-seed metric of one model, computed from its predictions on the host."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxunlearn.metrics.errors import masked_errors, wasserstein_to_reference
from jaxunlearn.metrics.membership import AttackPool, PendingRates

# The units of the SVC attack's loss features (``svc_attack``): ours, then the reference's.
MIA_UNITS = ("standardised", "raw")

# Which way a metric is better: lower; nearest the retrained model's value (an unlearned
# model should err on the forget rows as a model that never saw them does, no less);
# nearest 1 (the AIN: relearning as fast as the retrained model).
LOWER, NEAREST_RETRAIN, NEAREST_ONE = "lower", "nearest retrain", "nearest 1"
PER_SEED, PER_STAGE = "seed", "stage"


@dataclasses.dataclass(frozen=True)
class Metric:
    """What one key of a study's per-seed metrics means.

    Attributes:
        header: its column in the study table (without the direction), or None when the
            table does not show it (results.json and the tidy export still hold it).
        direction: which way is better (``LOWER``, ``NEAREST_RETRAIN``, ``NEAREST_ONE``),
            or None where neither is (a raw count).
        unit: what its values count.
        definition: one sentence a reader can check the code against.
        per: ``PER_SEED``: one value per seed's model; ``PER_STAGE``: one value for all the
            seeds of a row together (a timing; results.json repeats it for every seed, the
            tidy export holds it once).
    """

    header: str | None
    direction: str | None
    unit: str
    definition: str
    per: str = PER_SEED


_SPLITS = {"train": "training", "test": "test"}
_PARTS = {"retain": "retain rows (not forget)", "forget": "forget rows"}
_ERRORS = {"mae": ("mean absolute error", "target units"), "mse": ("mean squared error", "target units squared")}
# The error columns of the study table, {key: header}; the other split/part/error keys are
# kept in results.json and the tidy export only.
_ERROR_HEADERS = {
    "test_retain_mae": "retain MAE (test)",
    "test_forget_mae": "forget MAE (test)",
    "train_forget_mae": "forget MAE (train)",
    "test_retain_mse": "retain MSE (test)",
    "test_forget_mse": "forget MSE (test)",
}


def _error_metrics() -> dict[str, Metric]:
    every = {
        f"{split}_{part}_{error}": Metric(
            _ERROR_HEADERS.get(f"{split}_{part}_{error}"),
            NEAREST_RETRAIN if part == "forget" else LOWER,
            unit,
            f"the model's {error_words} on the {split_words} split's {part_words}",
        )
        for split, split_words in _SPLITS.items()
        for part, part_words in _PARTS.items()
        for error, (error_words, unit) in _ERRORS.items()
    }
    return {**{key: every[key] for key in _ERROR_HEADERS}, **every}  # the table's columns first


# Every per-seed metric of a study, in the table's column order (the others after): the one
# place that maps results.json's keys to the table's headers (docs/OUTPUTS.md is generated
# from it).
METRICS: dict[str, Metric] = {
    **_error_metrics(),
    "wasserstein": Metric(
        "W1 to retrain",
        LOWER,
        "target units",
        "Wasserstein-1 distance between the model's and the retrained model's (same seed) predictions on the "
        "training forget rows",
    ),
    "mia": Metric(
        "MIA forget",
        NEAREST_RETRAIN,
        "fraction of rows",
        "the share of the training forget rows that the paper's membership attack (an RBF SVC on per-row L1 "
        "losses, retain rows against test rows) calls members",
    ),
    "ain": Metric(
        "AIN",
        NEAREST_ONE,
        "ratio",
        "anamnesis index: relearn_steps over the retrained model's relearn_steps (same seed)",
    ),
    "relearn_steps": Metric(
        None,
        None,
        "optimizer steps",
        "steps of training on the forget rows until the model's forget loss falls to (1 + relearn_alpha) times "
        "the original model's",
    ),
    "val_gap": Metric(
        None,
        LOWER,
        "standard deviations of the training targets",
        "the norm of the MAE gaps to the retrained model of the same seed on the training retain rows, the "
        "training forget rows and every validation row (``validation_gap``): what a sweep's best row is chosen "
        "by, reading no test row",
    ),
    "run_seconds": Metric(
        "time s", LOWER, "seconds", "the row's run time for all its seeds together, compile time apart", PER_STAGE
    ),
    "time_vs_retrain": Metric(
        "time / retrain", LOWER, "ratio", "run_seconds over the retrained models' run_seconds", PER_STAGE
    ),
}
DIRECTIONS: dict[str, str] = {key: m.direction for key, m in METRICS.items() if m.direction}

# Why a seed can lack a value of a metric (the table shows n then, and says why).
UNDEFINED_WHY: dict[str, str] = {
    "ain": "the AIN is undefined for a seed whose retrained model needed no relearning step (a ratio to 0), "
    "or whose relearning diverged",
    "mia": "the attack ran on the first models only (--attack-models)",
}
DIVERGED_WHY = (
    "a seed whose training diverged (NaN/inf) has no values (the log and results.json's divergence say where)"
)


def with_direction(key: str, header: str, note: str | None = None) -> str:
    """``header [direction; note]``: a table header that says which way is better."""
    parts = [p for p in (DIRECTIONS.get(key), note) if p]
    return f"{header} [{'; '.join(parts)}]" if parts else header


# The gap to retraining (lower is better): per seed, the norm of the MAE gaps between a
# model and the retrained model of the same seed on these rows, in standard deviations of
# the training targets. The leaderboard ranks by it; every study names its closest row by it.
GAP_PARTS = ("test_retain_mae", "test_forget_mae", "train_forget_mae")


def gap_to_retrain(row: dict[str, np.ndarray], retrain: dict[str, np.ndarray], y_std: float) -> np.ndarray:
    """[S] per-seed gap to retraining (``GAP_PARTS``) of one row's per-seed metrics {metric: [S]}."""
    gaps = np.stack([(np.asarray(row[p], np.float64) - np.asarray(retrain[p], np.float64)) / y_std for p in GAP_PARTS])
    return np.sqrt((gaps**2).sum(axis=0))


def validation_gap(parts: dict[str, np.ndarray], retrain: dict[str, np.ndarray]) -> np.ndarray:
    """[S] per-seed norm of the gaps between a model's and the retrained model's (same seed)
    MAE parts, e.g. ``tuning.mae_parts``' {"retain"|"forget"|"val": [S]} (standardised)."""
    gaps = np.stack([np.asarray(parts[k], np.float64) - np.asarray(retrain[k], np.float64) for k in parts])
    return np.sqrt((gaps**2).sum(axis=0))


# (key, header) pairs of the study table, in order; each header says which way is better.
TABLE_COLUMNS: list[tuple[str, str]] = [
    (key, with_direction(key, m.header)) for key, m in METRICS.items() if m.header is not None
]


def prediction_metrics(
    preds: dict[str, np.ndarray],
    retrain_preds: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    forget: dict[str, np.ndarray],
    y_std: float,
    mia_samples: int,
    seed: int,
    mia_units: str = "standardised",
    mia_models: int | None = None,
    mia: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Errors, Wasserstein distance and membership attack for one model, per seed.

    Args:
        preds, retrain_preds: {"train"|"test": [S, N]} standardised predictions.
        targets: {"train"|"test": [N]} standardised targets; forget: {split: [N] bool}.
        y_std: target std (errors are reported in target units).
        mia_samples: samples per class for the attack; seed: its sampling seed;
        mia_units: the attack's loss units (``svc_attack``).
        mia_models: attack only the first this many seeds' models (the others' "mia" is
            NaN); None: every seed's.
        mia: the attacked models' member rates [min(mia_models, S)] if they were already
            computed (``start_svc_attack`` with the same arguments); None: attack here.

    Returns:
        {metric: [S]}: {train,test}_{retain,forget}_{mae,mse}, wasserstein, mia.
    """
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        for part, mask in (("retain", ~forget[split]), ("forget", forget[split])):
            for name, value in masked_errors(preds[split], targets[split], mask, y_std).items():
                out[f"{split}_{part}_{name}"] = value
    out["wasserstein"] = wasserstein_to_reference(preds["train"], retrain_preds["train"], forget["train"], y_std)
    seeds = preds["train"].shape[0]
    attacked = attacked_models(seeds, mia_models)
    if mia is None:
        mia = svc_attack(preds, targets, forget, y_std, mia_samples, seed, mia_units, models=mia_models)
    if np.shape(mia) != (attacked,):
        raise ValueError(f"mia must hold the {attacked} attacked models' rates, got shape {np.shape(mia)}")
    out["mia"] = np.full(seeds, np.nan)
    out["mia"][:attacked] = mia
    return out


def attacked_models(seeds: int, mia_models: int | None) -> int:
    """How many of a row's ``seeds`` models the attack runs on: the first ``mia_models``
    (None: all)."""
    return seeds if mia_models is None else min(mia_models, seeds)


def start_svc_attack(
    pool: AttackPool,
    preds: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    forget: dict[str, np.ndarray],
    y_std: float,
    mia_samples: int,
    seed: int,
    units: str = "standardised",
    models: int | None = None,
) -> PendingRates:
    """Queues ``svc_attack`` of the first ``models`` seeds' models (None: all) on ``pool``;
    ``.result()`` gives their rates [min(models, S)]."""
    if units not in MIA_UNITS:
        raise ValueError(f"mia_units must be one of {MIA_UNITS}, got {units!r}")
    attacked = attacked_models(preds["train"].shape[0], models)
    scale = y_std if units == "raw" else 1.0
    train_loss = np.abs(preds["train"][:attacked] - targets["train"][None, :]) * scale
    test_loss = np.abs(preds["test"][:attacked] - targets["test"][None, :]) * scale
    return pool.submit(
        train_loss[:, ~forget["train"]], test_loss, train_loss[:, forget["train"]], n_train=mia_samples, seed=seed
    )


def svc_attack(
    preds: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    forget: dict[str, np.ndarray],
    y_std: float,
    mia_samples: int,
    seed: int,
    units: str = "standardised",
    models: int | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """The paper's membership attack per model: an RBF SVC trained on per-sample L1 losses
    of retain-train rows (members) against test rows (non-members), applied to the train
    forget rows; returns their member rate [S] (with ``models``: of the first that many
    seeds' models only). The models are attacked in ``workers`` threads (default
    ``membership.attack_workers()``), with the same rates for any count.

    ``units``: "standardised" (our default: losses in standardised target units, so the
    attack does not depend on the target's scale) or "raw" (the reference's: losses in the
    target's own units, y_std times larger; with a 1-D feature and gamma="auto" the RBF
    kernel then sees other distances, and the member rate changes).
    """
    with AttackPool(workers) as pool:
        return start_svc_attack(pool, preds, targets, forget, y_std, mia_samples, seed, units, models).result()
