"""SCRUB for regression: a student pushed away from its teacher on the forget rows and held
to it (and to the labels) on the retain rows.

A baseline from the general unlearning literature (Kurmanji et al., "Towards Unbounded
Machine Unlearning", NeurIPS 2023), not part of the regression paper. The teacher is the
original model (frozen, inference mode); the student starts as a copy of it. SCRUB
alternates passes over the forget rows ("max") and over the retain rows ("min") with one
optimizer:

    max pass: loss = - mean over forget rows of L(s(x), t(x))
    min pass: loss = mean over retain rows of L(s(x), y) + d * L(s(x), t(x))

The first ``max_epochs`` epochs are a min pass then a max pass; the remaining epochs are
min passes only. The classification original measures student-teacher distance with a KL
divergence; for regression we use the task's own loss L between the two predictions (as
Blindspot does between student and proxy). d = ``distill_weight``.

One change of order: SCRUB runs each epoch's max pass first. There the student still
equals the teacher, where a smooth distance (KL, or MSE here) has zero gradient; the
classification original moves off that point only through train-mode randomness (dropout,
batch statistics), and a deterministic regression model would not move at all (with L1,
the subgradient at 0 would push every forget prediction upwards). After a min pass the
student differs from the teacher on the forget rows in the direction training on the
retain rows takes it, and the max pass amplifies that difference.

Without augmentation the teacher's predictions on the training rows are computed once
per phase; with augmentation the teacher sees each augmented batch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.contract import model_key
from jaxunlearn.train.loop import BatchLoss, Fit, FitConfig, predict
from jaxunlearn.train.losses import get_loss, masked_mean
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, from_original
from jaxunlearn.unlearn.registry import EPOCHS_RANGE, LR_RANGE, Range, Unlearner, register, require_positive

# Adam lr (as fine-tuning) and the teacher term's weight in the min passes (ours).
DEFAULT_HP = {"lr": 1e-3, "distill_weight": 1.0}
HP_BOUNDS = {"distill_weight": (0.0, float("inf"))}


@dataclasses.dataclass(frozen=True)
class ScrubSettings:
    """epochs: SCRUB's epochs (5); max_epochs: how many of the first ones start with a max
    pass over the forget rows (1; at most ``epochs``); forget_batch: rows per step of the
    max passes (None: the study's batch size, capped at the forget-set size, so a forget
    set under one batch takes one step per pass)."""

    epochs: int = 5
    max_epochs: int = 1
    forget_batch: int | None = None

    def __post_init__(self):
        require_positive(self, "epochs", "max_epochs")
        if self.forget_batch is not None:
            require_positive(self, "forget_batch")
        if self.max_epochs > self.epochs:
            raise ValueError(f"max_epochs ({self.max_epochs}) must be <= epochs ({self.epochs})")


def _teacher_pred(model: ModelFns, batch: dict, aux: dict) -> jax.Array:
    """The teacher's predictions [B, 1] on ``batch``: from the cache, or by running it."""
    if "teacher_pred" in aux:
        return aux["teacher_pred"][batch["idx"]]
    params, batch_stats = aux["teacher"]
    return jax.lax.stop_gradient(model.apply_eval(params, batch_stats, batch["x"])[0])


def scrub_loss(model: ModelFns, loss_name: str, maximise: bool) -> BatchLoss:
    """The objective of a max pass (``maximise``) or a min pass; ``aux`` holds the teacher
    (see ``_teacher_pred``). The batch's rows are all forget (max) or all retain (min) rows."""
    loss_fn = get_loss(loss_name)

    def batch_loss(params, batch_stats, batch, key, hp, aux):
        pred, _, new_stats = model.apply_train(params, batch_stats, batch["x"], batch["w"] > 0, model_key(key))
        distance = masked_mean(loss_fn(pred, _teacher_pred(model, batch, aux)), batch["w"])
        if maximise:
            return -distance, new_stats
        return masked_mean(loss_fn(pred, batch["y"]), batch["w"]) + hp["distill_weight"] * distance, new_stats

    return batch_loss


def max_pass_batch(cfg: StudyConfig, settings: ScrubSettings, forget_rows: int) -> int:
    """What ``make_scrub`` reads of the forget count (its ``forget_count_class``): the max
    passes' batch, ``settings.forget_batch`` or the batch size, capped at the count."""
    return min(settings.forget_batch or cfg.batch_size, forget_rows)


def make_scrub(model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: ScrubSettings) -> Pipeline:
    """Student = original weights, Adam lr 1e-3, ``settings.epochs`` epochs (default 5) of
    which the first ``settings.max_epochs`` (default 1) end with a max pass. A max pass takes
    ``settings.forget_batch`` forget rows per step (default: the batch size, capped at the
    forget-set size)."""
    forget_rows = int(task.train.host_indices("forget").size)
    if forget_rows == 0:
        raise ValueError("SCRUB needs forget rows: the forget set is empty")
    if settings.forget_batch is not None and settings.forget_batch > forget_rows:
        raise ValueError(
            f"scrub.forget_batch ({settings.forget_batch}) must be <= the {forget_rows} forget training rows"
        )
    max_batch = max_pass_batch(cfg, settings, forget_rows)
    first = from_original()

    def start(key, original, task, hp, earlier):
        # Each phase continues from the previous phase's model with its step count at 0, as
        # every other phase starts: a divergence is reported as (phase, step within it).
        state = (
            earlier[-1].replace(step=jnp.zeros_like(earlier[-1].step))
            if earlier
            else first(key, original, task, hp, earlier)[0]
        )
        if cfg.augment_pad > 0:
            return state, {"teacher": (original.params, original.batch_stats)}
        return state, {"teacher_pred": predict(model, original.params, original.batch_stats, task.train.x, plan)}

    def fit(rows: str, epochs: int, maximise: bool) -> Fit:
        batch = max_batch if rows == "forget" else cfg.batch_size
        fit_cfg = FitConfig(epochs=epochs, batch_size=batch, rows=rows, loss=cfg.loss, augment_pad=cfg.augment_pad)
        return Fit(model, fit_cfg, scrub_loss(model, cfg.loss, maximise), task, plan)

    max_fit, min_fit = fit("forget", 1, True), fit("retain", 1, False)
    phases = []
    for i in range(settings.max_epochs):
        phases += [Phase(f"min{i + 1}", start, min_fit), Phase(f"max{i + 1}", start, max_fit)]
    if settings.epochs > settings.max_epochs:
        phases.append(Phase("min", start, fit("retain", settings.epochs - settings.max_epochs, False)))
    return Pipeline("scrub", tuple(phases), DEFAULT_HP)


SCRUB = register(
    Unlearner(
        "scrub",
        make_scrub,
        DEFAULT_HP,
        HP_BOUNDS,
        settings=ScrubSettings,
        key_id=6,
        description="SCRUB: student pushed from its teacher on forget rows, held on retain rows",
        search={"lr": LR_RANGE, "distill_weight": Range(0.01, 10.0, log=True), "epochs": EPOCHS_RANGE},
        shapes_only=True,
        forget_count_class=max_pass_batch,
    )
)
