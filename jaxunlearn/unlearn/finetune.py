"""Fine-tuning baseline: continue training the original on the retain rows only."""

from __future__ import annotations

import dataclasses

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.loop import Fit, FitConfig, supervised_loss
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, from_original
from jaxunlearn.unlearn.registry import EPOCHS_RANGE, LR_RANGE, Unlearner, register, require_positive

DEFAULT_HP = {"lr": 1e-3}  # Adam learning rate


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """epochs: epochs over the retain rows (paper: 5)."""

    epochs: int = 5

    def __post_init__(self):
        require_positive(self, "epochs")


def make_finetune(
    model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: FinetuneSettings
) -> Pipeline:
    """Original weights, Adam lr 1e-3, ``settings.epochs`` (paper: 5) epochs on D_r."""
    fit_cfg = FitConfig(
        epochs=settings.epochs, batch_size=cfg.batch_size, rows="retain", loss=cfg.loss, augment_pad=cfg.augment_pad
    )
    fit = Fit(model, fit_cfg, supervised_loss(model, cfg.loss), task, plan)
    return Pipeline("finetune", (Phase("finetune", from_original(), fit),), DEFAULT_HP)


FINETUNE = register(
    Unlearner(
        "finetune",
        make_finetune,
        DEFAULT_HP,
        settings=FinetuneSettings,
        key_id=2,
        default=True,
        description="fine-tune the original on the retain rows (the paper's baseline)",
        search={"lr": LR_RANGE, "epochs": EPOCHS_RANGE},
        shapes_only=True,
    )
)
