"""Training from scratch with the paper's recipe: the original model (all rows) and the
retrained "gold" model (retain rows only)."""

from __future__ import annotations

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.loop import Fit, FitConfig, supervised_loss
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, fresh_start
from jaxunlearn.unlearn.registry import Unlearner, register

RECIPE_LR = 0.01  # Adam lr of the reference training recipe
DEFAULT_HP = {"lr": RECIPE_LR}  # the original and the retrained model


def recipe_fit(
    model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, rows: str, epochs: int, lr_key: str = "lr"
) -> Fit:
    """The reference recipe: Adam, reduce-on-plateau on validation loss, best weights kept."""
    fit_cfg = FitConfig(
        epochs=epochs,
        batch_size=cfg.batch_size,
        rows=rows,
        loss=cfg.loss,
        validate_on=rows,
        plateau=True,
        keep_best=True,
        augment_pad=cfg.augment_pad,
        lr_key=lr_key,
    )
    return Fit(model, fit_cfg, supervised_loss(model, cfg.loss), task, plan)


def make_original(model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: None = None) -> Pipeline:
    """The original model: fresh init, trained on every training row (forget rows included).

    Built as the retrained model's phase on the task without forget rows, whose retain rows
    are every row (``Pipeline.sees_forget``): the same batches, steps and validation as a
    phase over "all" rows, bit for bit, and the retrained model's compiled programs.
    """
    fit = recipe_fit(model, task.without_forget(), cfg, plan, rows="retain", epochs=cfg.train_epochs)
    phases = (Phase("train", fresh_start(model), fit),)
    return Pipeline("original", phases, DEFAULT_HP, needs_original=False, sees_forget=False)


def make_retrain(model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: None = None) -> Pipeline:
    """The gold standard: fresh init, trained on the retain rows only, validated on retain rows."""
    fit = recipe_fit(model, task, cfg, plan, rows="retain", epochs=cfg.train_epochs)
    return Pipeline("retrain", (Phase("train", fresh_start(model), fit),), DEFAULT_HP, needs_original=False)


# The reference stages every study runs (``cfg.train_epochs`` epochs each).
ORIGINAL = register(
    Unlearner(
        "original",
        make_original,
        DEFAULT_HP,
        key_id=0,
        reference=True,
        description="the original model, trained on every training row",
        shapes_only=True,
    )
)
RETRAIN = register(
    Unlearner(
        "retrain",
        make_retrain,
        DEFAULT_HP,
        key_id=1,
        reference=True,
        description="retrained from scratch without the forget rows (the gold standard)",
        shapes_only=True,
    )
)
