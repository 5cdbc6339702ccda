"""Unlearners by name. Each factory builds a ``Pipeline`` for (model, task, config, plan):
a pure single-seed function ``run(key, original, task, hp) -> (state, history)``."""
from __future__ import annotations

from typing import Callable

from jaxunlearn.unlearn import blindspot, finetune, gaussian, retrain
from jaxunlearn.unlearn.base import Phase, Pipeline
from jaxunlearn.unlearn.blindspot import blindspot_loss, make_blindspot
from jaxunlearn.unlearn.finetune import make_finetune
from jaxunlearn.unlearn.gaussian import gaussian_relabel, make_gaussian
from jaxunlearn.unlearn.retrain import make_original, make_retrain

UNLEARNERS: dict[str, Callable[..., Pipeline]] = {
    "retrain": make_retrain,
    "finetune": make_finetune,
    "gaussian": make_gaussian,
    "blindspot": make_blindspot,
}

# Each stage's float hyperparameters and their defaults: what ``--hp``/``--sweep`` may set.
STAGE_HP: dict[str, dict[str, float]] = {
    "original": retrain.DEFAULT_HP,
    "retrain": retrain.DEFAULT_HP,
    "finetune": finetune.DEFAULT_HP,
    "gaussian": gaussian.DEFAULT_HP,
    "blindspot": blindspot.DEFAULT_HP,
}


def get_unlearner(name: str) -> Callable[..., Pipeline]:
    """Looks up an unlearner factory by name."""
    if name not in UNLEARNERS:
        raise ValueError(f"unknown unlearner {name!r}; known unlearners: {sorted(UNLEARNERS)}")
    return UNLEARNERS[name]


__all__ = ["STAGE_HP", "UNLEARNERS", "Phase", "Pipeline", "blindspot_loss", "gaussian_relabel", "get_unlearner",
           "make_blindspot", "make_finetune", "make_gaussian", "make_original", "make_retrain"]
