"""NegGrad+: fine-tune on the retain rows while ascending the loss on the forget rows.

A baseline from the general unlearning literature (Kurmanji et al., "Towards Unbounded
Machine Unlearning", NeurIPS 2023), not part of the regression paper. The original is
trained on every training row, mixed in shuffled batches, with

    loss = w * mean over retain rows of L(f(x), y) - (1 - w) * mean over forget rows of L(f(x), y)

(w = ``retain_weight``; masked means, so a batch without forget rows is plain fine-tuning).
For regression the ascent term is unbounded (L1 grows linearly, MSE quadratically, as the
forget predictions move away from their targets), so the epochs and ``retain_weight`` set
how far it goes; a seed whose loss or weights become non-finite is frozen at its last
finite state and reported (``FitCarry.diverged_at``). With Adam only the ratio of the two
weights matters, not the overall scale.
"""

from __future__ import annotations

import dataclasses

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.contract import model_key
from jaxunlearn.train.loop import BatchLoss, Fit, FitConfig
from jaxunlearn.train.losses import get_loss, masked_mean
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, from_original
from jaxunlearn.unlearn.registry import EPOCHS_RANGE, LR_RANGE, Range, Unlearner, register, require_positive

# Adam lr (as fine-tuning) and the weight of the retain term (ours: the literature tunes it).
DEFAULT_HP = {"lr": 1e-3, "retain_weight": 0.95}
HP_BOUNDS = {"retain_weight": (0.0, 1.0)}


@dataclasses.dataclass(frozen=True)
class NegGradSettings:
    """epochs: epochs over every training row (default 5, as fine-tuning)."""

    epochs: int = 5

    def __post_init__(self):
        require_positive(self, "epochs")


def neggrad_loss(model: ModelFns, loss_name: str) -> BatchLoss:
    """The NegGrad+ objective on a mixed batch (see the module docstring)."""
    loss_fn = get_loss(loss_name)

    def batch_loss(params, batch_stats, batch, key, hp, aux):
        del aux
        pred, _, new_stats = model.apply_train(params, batch_stats, batch["x"], batch["w"] > 0, model_key(key))
        per_row = loss_fn(pred, batch["y"])
        retain = masked_mean(per_row, (1.0 - batch["forget"]) * batch["w"])
        forget = masked_mean(per_row, batch["forget"] * batch["w"])
        w = hp["retain_weight"]
        return w * retain - (1.0 - w) * forget, new_stats

    return batch_loss


def make_neggrad(model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: NegGradSettings) -> Pipeline:
    """Original weights, Adam lr 1e-3, ``settings.epochs`` (default 5, as fine-tuning) over D."""
    fit_cfg = FitConfig(
        epochs=settings.epochs, batch_size=cfg.batch_size, rows="all", loss=cfg.loss, augment_pad=cfg.augment_pad
    )
    fit = Fit(model, fit_cfg, neggrad_loss(model, cfg.loss), task, plan)
    return Pipeline("neggrad", (Phase("neggrad", from_original(), fit),), DEFAULT_HP)


NEGGRAD = register(
    Unlearner(
        "neggrad",
        make_neggrad,
        DEFAULT_HP,
        HP_BOUNDS,
        settings=NegGradSettings,
        key_id=5,
        description="NegGrad+: descend on retain rows, ascend on forget rows",
        search={"lr": LR_RANGE, "retain_weight": Range(0.0, 1.0), "epochs": EPOCHS_RANGE},
        shapes_only=True,
    )
)
