"""Every per-seed metric of one model, computed from its predictions on the host."""
from __future__ import annotations

import numpy as np

from jaxunlearn.metrics.errors import masked_errors, wasserstein_to_reference
from jaxunlearn.metrics.membership import mia_member_rates

# (key, header) pairs of the study table, in order.
TABLE_COLUMNS: list[tuple[str, str]] = [
    ("test_retain_mae", "retain MAE (test)"),
    ("test_forget_mae", "forget MAE (test)"),
    ("train_forget_mae", "forget MAE (train)"),
    ("test_retain_mse", "retain MSE (test)"),
    ("test_forget_mse", "forget MSE (test)"),
    ("wasserstein", "W1 to retrain"),
    ("mia", "MIA forget"),
    ("ain", "AIN"),
    ("run_seconds", "time s"),
    ("time_vs_retrain", "time / retrain"),
]


def prediction_metrics(
    preds: dict[str, np.ndarray],
    retrain_preds: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    forget: dict[str, np.ndarray],
    y_std: float,
    mia_samples: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Errors, Wasserstein distance and membership attack for one model, per seed.

    Args:
        preds, retrain_preds: {"train"|"test": [S, N]} standardised predictions.
        targets: {"train"|"test": [N]} standardised targets; forget: {split: [N] bool}.
        y_std: target std (errors are reported in target units).
        mia_samples: samples per class for the attack; seed: its sampling seed.

    Returns:
        {metric: [S]}: {train,test}_{retain,forget}_{mae,mse}, wasserstein, mia.
    """
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        for part, mask in (("retain", ~forget[split]), ("forget", forget[split])):
            for name, value in masked_errors(preds[split], targets[split], mask, y_std).items():
                out[f"{split}_{part}_{name}"] = value
    out["wasserstein"] = wasserstein_to_reference(preds["train"], retrain_preds["train"], forget["train"], y_std)
    # The attack's features are per-sample L1 losses in standardised units (scale-free).
    train_loss = np.abs(preds["train"] - targets["train"][None, :])
    test_loss = np.abs(preds["test"] - targets["test"][None, :])
    out["mia"] = mia_member_rates(
        train_loss[:, ~forget["train"]], test_loss, train_loss[:, forget["train"]], n_train=mia_samples, seed=seed
    )
    return out
