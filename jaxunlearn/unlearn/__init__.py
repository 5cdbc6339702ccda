"""Unlearners by name. Each factory builds a ``Pipeline`` for (model, task, config, plan):
a pure single-seed function ``run(key, original, task, hp) -> (state, history)``."""
from __future__ import annotations

from typing import Callable

from jaxunlearn.unlearn import blindspot, finetune, gaussian, neggrad, retrain, scrub, ssd
from jaxunlearn.unlearn.base import Phase, Pipeline
from jaxunlearn.unlearn.blindspot import blindspot_loss, make_blindspot
from jaxunlearn.unlearn.finetune import make_finetune
from jaxunlearn.unlearn.gaussian import gaussian_relabel, make_gaussian
from jaxunlearn.unlearn.neggrad import make_neggrad
from jaxunlearn.unlearn.retrain import make_original, make_retrain
from jaxunlearn.unlearn.scrub import make_scrub
from jaxunlearn.unlearn.ssd import make_lfssd, make_ssd

UNLEARNERS: dict[str, Callable[..., Pipeline]] = {
    "retrain": make_retrain,
    "finetune": make_finetune,
    "gaussian": make_gaussian,
    "blindspot": make_blindspot,
    "neggrad": make_neggrad,  # beyond the paper: general-unlearning baselines
    "scrub": make_scrub,
    "ssd": make_ssd,  # beyond the paper: retraining-free
    "lfssd": make_lfssd,  # ... and label-free
}

# Each stage's float hyperparameters and their defaults: what ``--hp``/``--sweep`` may set.
STAGE_HP: dict[str, dict[str, float]] = {
    "original": retrain.DEFAULT_HP,
    "retrain": retrain.DEFAULT_HP,
    "finetune": finetune.DEFAULT_HP,
    "gaussian": gaussian.DEFAULT_HP,
    "blindspot": blindspot.DEFAULT_HP,
    "neggrad": neggrad.DEFAULT_HP,
    "scrub": scrub.DEFAULT_HP,
    "ssd": ssd.DEFAULT_HP,
    "lfssd": ssd.DEFAULT_HP,
}

# Allowed ranges (inclusive) of hyperparameters other than learning rates (which must be > 0).
STAGE_HP_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    "blindspot": blindspot.HP_BOUNDS,
    "neggrad": neggrad.HP_BOUNDS,
    "scrub": scrub.HP_BOUNDS,
    "ssd": ssd.HP_BOUNDS,
    "lfssd": ssd.HP_BOUNDS,
}


def get_unlearner(name: str) -> Callable[..., Pipeline]:
    """Looks up an unlearner factory by name."""
    if name not in UNLEARNERS:
        raise ValueError(f"unknown unlearner {name!r}; known unlearners: {sorted(UNLEARNERS)}")
    return UNLEARNERS[name]


__all__ = ["STAGE_HP", "STAGE_HP_BOUNDS", "UNLEARNERS", "Phase", "Pipeline", "blindspot_loss", "gaussian_relabel", "get_unlearner",
           "make_blindspot", "make_finetune", "make_gaussian", "make_neggrad", "make_original", "make_retrain",
           "make_lfssd", "make_scrub", "make_ssd"]
