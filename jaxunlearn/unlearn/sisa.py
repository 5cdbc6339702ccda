"""SISA (Bourtoule et al., S&P 2021) for regression: exact unlearning by sharding.

The training rows are split, per seed, into ``shards`` disjoint shards of equal length (a
seed-derived random assignment; a shard one row short holds a hole, ``Split.rows``). Each
shard trains its own model with the study's recipe (``recipe_fit``: Adam,
reduce-on-plateau, best weights on the validation rows), all shards of all seeds together
as one batched axis of models, exactly as seeds are. The prediction is the ``aggregate``
(mean or median) of the shards' predictions.

With ``slices`` R > 1 every shard is cut into R slices trained incrementally: stage r
trains on slices 1..r (``train_epochs`` split over the stages), starting from the state
after stage r - 1, which is kept. Forgetting turns each forget row into a hole and
retrains only the shards that held one, each from the state before the first slice that
held one; the other shards are kept as they are. So the model after a deletion IS a SISA
model trained without the forget rows (same procedure, other random draws), and the cost
is only what was retrained. Every shard validates on every validation row: the deletion
request concerns training rows.

This module defines the settings and registers the stage; ``jaxunlearn.data.sharding``
draws the shards and ``jaxunlearn.shards`` runs it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.data.sharding import shard_task, slice_epochs, slice_length
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.loop import Fit, FitConfig, supervised_loss
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, Shards, fresh_start, from_original
from jaxunlearn.unlearn.registry import Unlearner, register, require_positive
from jaxunlearn.unlearn.retrain import DEFAULT_HP

AGGREGATES = ("mean", "median")


@dataclasses.dataclass(frozen=True)
class SisaSettings:
    """shards: S disjoint shards (1 = one model on every row, trained in R slices);
    slices: R incremental slices per shard (1 = none); aggregate: "mean" (fits MSE-trained
    shards) or "median" (fits L1) of the shards' predictions; batch_size: the shards'
    batch size (None: the study's, or a slice's rows when a slice holds fewer)."""

    shards: int = 4
    slices: int = 1
    aggregate: str = "mean"
    batch_size: int | None = None

    def __post_init__(self):
        require_positive(self, "shards", "slices")
        if self.batch_size is not None:
            require_positive(self, "batch_size")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")


def make_sisa(model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: SisaSettings) -> Pipeline:
    """The pipeline of one shard model's last slice stage; ``Pipeline.shards`` holds the
    settings and every slice stage's pipeline (stage r on slices 1..r), which
    ``jaxunlearn.shards.run_sharded`` runs."""
    rows = task.train.used  # a model's rows: all, or its own (U-LiRA's shadows)
    if settings.shards > rows:
        raise ValueError(f"sisa: {settings.shards} shards but only {rows} training rows; use shards <= {rows}")
    shard_size = -(-rows // settings.shards)
    if settings.slices > shard_size:
        raise ValueError(
            f"sisa: {settings.slices} slices but a shard holds {shard_size} rows; use slices <= {shard_size}"
        )
    if settings.slices > cfg.train_epochs:
        raise ValueError(
            f"sisa: {settings.slices} slices need at least as many training epochs (train_epochs "
            f"{cfg.train_epochs}); use slices <= {cfg.train_epochs}"
        )
    length = slice_length(rows, settings.shards, settings.slices)
    batch_size = min(cfg.batch_size, length) if settings.batch_size is None else settings.batch_size
    if batch_size > length:
        raise ValueError(
            f"sisa: a slice holds {length} rows, fewer than sisa.batch_size {batch_size}; use fewer shards or "
            f"slices, or sisa.batch_size <= {length}"
        )
    base = shard_task(task)
    stages = []
    for r, epochs in enumerate(slice_epochs(cfg.train_epochs, settings.slices)):
        seen = base.with_train_rows(np.arange((r + 1) * length))  # only the count is compiled in
        fit_cfg = FitConfig(
            epochs=epochs,
            batch_size=batch_size,
            rows="all",
            loss=cfg.loss,
            validate_on="all",
            plateau=True,
            keep_best=True,
            augment_pad=cfg.augment_pad,
        )
        fit = Fit(model, fit_cfg, supervised_loss(model, cfg.loss), seen, plan)
        start = fresh_start(model) if r == 0 else from_original()
        stages.append(
            Pipeline(
                "sisa",
                (Phase(f"slice {r + 1} of {settings.slices}", start, fit),),
                DEFAULT_HP,
                needs_original=r > 0,
                layout=seen.layout(),
            )
        )
    spec = Shards(settings.shards, settings.slices, settings.aggregate, length, tuple(stages))
    return dataclasses.replace(stages[-1], shards=spec)


SISA = register(
    Unlearner(
        "sisa",
        make_sisa,
        DEFAULT_HP,
        settings=SisaSettings,
        key_id=9,
        description="SISA: exact unlearning; models on disjoint shards, only shards with forget rows retrained",
    )
)
