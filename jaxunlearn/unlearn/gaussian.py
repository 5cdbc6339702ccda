"""Gaussian amnesiac fine-tuning: forget labels replaced by random draws, then fine-tune.

The regression analogue of amnesiac unlearning (Graves et al.): every forget row's target
is replaced by an independent draw from N(m, s), m and s the mean and standard deviation
of the training targets (all rows, as the reference; or retain rows only), and the
original is fine-tuned on the whole relabelled training set.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.loop import Fit, FitConfig, supervised_loss
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, from_original
from jaxunlearn.unlearn.registry import EPOCHS_RANGE, LR_RANGE, Unlearner, register, require_positive

DEFAULT_HP = {"lr": 1e-3}  # Adam learning rate of the fine-tuning on relabelled rows


@dataclasses.dataclass(frozen=True)
class GaussianSettings:
    """epochs: fine-tuning epochs on the relabelled rows (paper: 1 AgeDB, 5 STS-B);
    stats: label statistics of the draws, "all" rows (the reference) or "retain" rows."""

    epochs: int = 1
    stats: str = "all"

    def __post_init__(self):
        require_positive(self, "epochs")
        if self.stats not in ("all", "retain"):
            raise ValueError(f"stats must be 'all' or 'retain', got {self.stats!r}")


def gaussian_relabel(
    key: jax.Array, y: jax.Array, forget: jax.Array, stats_from: str = "all", rows: jax.Array | None = None
) -> jax.Array:
    """Replaces forget targets by draws from N(mean, std) of the chosen rows' targets.

    Args:
        key: randomness for the draws.
        y: [N, 1] targets; forget: [N] float mask.
        stats_from: "all" rows or "retain" rows for the mean and std.
        rows: None (every row), or int32 [M]: the rows the model uses (``Split.rows``).
            Only they are read and relabelled, exactly as if ``y`` and ``forget`` held just
            them, in that order.

    Returns:
        [N, 1] targets; retain rows (and rows not in ``rows``) unchanged.
    """
    if rows is not None:
        return y.at[rows].set(gaussian_relabel(key, y[rows], forget[rows], stats_from))
    w = jnp.ones_like(forget) if stats_from == "all" else 1.0 - forget
    mean = jnp.sum(y[:, 0] * w) / jnp.sum(w)
    std = jnp.sqrt(jnp.sum(jnp.square(y[:, 0] - mean) * w) / jnp.sum(w))
    draws = mean + std * jax.random.normal(key, y.shape, y.dtype)
    return jnp.where(forget[:, None] > 0.5, draws, y)


def make_gaussian(
    model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: GaussianSettings
) -> Pipeline:
    """Original weights, Adam lr 1e-3, ``settings.epochs`` (paper: 1 AgeDB, 5 STS-B) on relabelled D."""
    base = from_original()

    def start(key, original, task, hp, earlier):
        state, _ = base(key, original, task, hp, earlier)
        return state, {"y": gaussian_relabel(key, task.train.y, task.train.forget, settings.stats, task.train.rows)}

    fit_cfg = FitConfig(
        epochs=settings.epochs, batch_size=cfg.batch_size, rows="all", loss=cfg.loss, augment_pad=cfg.augment_pad
    )
    fit = Fit(model, fit_cfg, supervised_loss(model, cfg.loss), task, plan)
    return Pipeline("gaussian", (Phase("relabel+fine-tune", start, fit),), DEFAULT_HP)


GAUSSIAN = register(
    Unlearner(
        "gaussian",
        make_gaussian,
        DEFAULT_HP,
        settings=GaussianSettings,
        key_id=3,
        default=True,
        description="Gaussian amnesiac: forget labels redrawn, then fine-tune (the paper)",
        search={"lr": LR_RANGE, "epochs": EPOCHS_RANGE},
        shapes_only=True,
    )
)
