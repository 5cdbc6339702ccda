"""Fine-tuning baseline: continue training the original on the retain rows only."""
from __future__ import annotations

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.loop import Fit, FitConfig, supervised_loss
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, from_original

DEFAULT_HP = {"lr": 1e-3}  # Adam learning rate


def make_finetune(model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan) -> Pipeline:
    """Original weights, Adam lr 1e-3, ``cfg.finetune_epochs`` (paper: 5) epochs on D_r."""
    fit_cfg = FitConfig(epochs=cfg.finetune_epochs, batch_size=cfg.batch_size, rows="retain", loss=cfg.loss,
                        augment_pad=cfg.augment_pad)
    fit = Fit(model, fit_cfg, supervised_loss(model, cfg.loss), task, plan)
    return Pipeline("finetune", (Phase("finetune", from_original(), fit),), DEFAULT_HP)
