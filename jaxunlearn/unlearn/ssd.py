"""Selective Synaptic Dampening (SSD) for regression: shrink the weights that matter far
more to the forget rows than to the training data as a whole. No training steps.

A retraining-free baseline from the general unlearning literature (Foster, Schoepf and
Brintrup, "Fast Machine Unlearning Without Retraining Through Selective Synaptic
Dampening", AAAI 2024), not part of the regression paper. Two passes over the training
rows give, for every parameter i, an importance (a diagonal Fisher estimate):

    F_D[i] = importance over all training rows,   F_f[i] = importance over the forget rows

and each parameter the forget rows single out is scaled down:

    if F_f[i] > a * F_D[i]:   theta[i] <- min(l * F_D[i] / F_f[i], 1) * theta[i]

a = ``selection_weight`` (10) and l = ``dampening`` (1), the values of SSD's ResNet-18
experiments. BatchNorm running statistics are left as they are.

The importance of a row set is, as in SSD's own practice, the mean over mini-batches of
the squared gradient of the batch's mean loss: the task's loss (the regression
likelihood's negative log up to constants: Laplace for L1, Gaussian for MSE), the model in
inference mode, rows in a shuffled order from the phase's key, ``batch_size`` rows per
batch (for the forget rows at most their number), no augmentation. Why not the
per-row Fisher, mean of squared per-row gradients: the full data contain the forget rows,
so per-row F_D[i] >= p * F_f[i] for a forget fraction p, and no parameter could ever be
selected once a * p >= 1 (a = 10 with this library's usual 20% forget sets). A squared
batch gradient measures instead how consistently the rows push a weight one way: near a
minimum the full data's mean gradient is small, while the forget rows' is not.

The importances are one phase and the dampening another, so a sweep of ``a`` and ``l``
computes the importances once per seed (``Phase.reads_hp``).

``lfssd`` (Loss-Free SSD; Foster, Schoepf and Brintrup, "Loss-Free Machine Unlearning",
ICLR 2024 Tiny Papers) is the same with the loss replaced by the squared l2 norm of the
model's output, here the squared prediction [N, 1]: it reads no labels, so it can forget
rows whose targets are gone. Everything else (batches, selection, dampening, defaults) is
SSD's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.loop import Fit, all_finite, epoch_batches, row_set, scan_batches
from jaxunlearn.train.losses import get_loss, masked_mean
from jaxunlearn.train.state import ModelFns, TrainState
from jaxunlearn.unlearn.base import OneShot, Phase, Pipeline
from jaxunlearn.unlearn.registry import Range, Unlearner, batch_capped_count, register

# SSD's alpha (selection weighting) and lambda (dampening constant) from its ResNet-18 runs.
DEFAULT_HP = {"selection_weight": 10.0, "dampening": 1.0}
HP_BOUNDS = {"selection_weight": (0.0, float("inf")), "dampening": (0.0, float("inf"))}
# Equal-budget tuning: a decade either side of the paper's alpha = 10 and lambda = 1.
SSD_SEARCH = {"selection_weight": Range(1.0, 100.0, log=True), "dampening": Range(0.1, 10.0, log=True)}


@struct.dataclass
class Importances:
    """Per-parameter importances, each a pytree shaped like the model's params (float32).

    Attributes:
        full: over all training rows (F_D); forget: over the forget rows (F_f).
    """

    full: object
    forget: object


def output_norm(pred: jax.Array, y: jax.Array) -> jax.Array:
    """LFSSD's objective per row: the squared l2 norm of the output, pred [N, 1] -> [N, 1]
    (``y`` is not read)."""
    del y
    return jnp.square(pred)


def batch_importance(
    model: ModelFns,
    objective,
    params,
    batch_stats,
    task: Task,
    rows: jax.Array,
    batch_size: int,
    key: jax.Array,
    plan: LoopPlan,
    count: jax.Array | None = None,
) -> tuple[object, jax.Array]:
    """Mean over the shuffled mini-batches of ``rows`` of the squared gradient of each
    batch's masked mean of ``objective(pred [B, 1], y [B, 1]) -> [B, 1]`` (a task loss, or
    ``output_norm``), the model in inference mode. Returns (pytree like ``params``, the
    objective's mean over the batches). With ``count`` (traced), only ``rows[:count]`` are
    the rows (``epoch_batches``): the loop runs over their ``ceil(count / B)`` batches."""
    idx, w = epoch_batches(key, rows, batch_size, count)

    def batch_loss(p, batch):
        pred = model.apply_eval(p, batch_stats, batch["x"])[0]
        return masked_mean(objective(pred, batch["y"]), batch["w"])

    def accumulate(carry, inputs):
        total, loss_sum = carry
        loss, grads = jax.value_and_grad(batch_loss)(params, Fit.gather(task, None, *inputs))
        total = jax.tree_util.tree_map(lambda t, g: t + jnp.square(g.astype(jnp.float32)), total, grads)
        return (total, loss_sum + loss), None

    zeros = jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    (total, loss_sum), _ = scan_batches(
        accumulate, (zeros, jnp.zeros((), jnp.float32)), (idx, w), count, batch_size, plan
    )
    if count is None:
        nb = idx.shape[0]
        return jax.tree_util.tree_map(lambda t: t / nb, total), loss_sum / nb
    # XLA turns a division by a constant into a product with its reciprocal: so does this, or
    # a count of 3 batches would round otherwise than a program with the count in it.
    reciprocal = 1.0 / ((count + batch_size - 1) // batch_size).astype(jnp.float32)
    return jax.tree_util.tree_map(lambda t: t * reciprocal, total), loss_sum * reciprocal


def dampen(params, importances: Importances, selection_weight: jax.Array, dampening: jax.Array):
    """SSD's update (module docstring). Returns (new params, fraction of scalars dampened)."""

    tree_map = jax.tree_util.tree_map
    chosen = tree_map(lambda full, forget: forget > selection_weight * full, importances.full, importances.forget)

    def scale(p, pick, full, forget):
        factor = jnp.minimum(dampening * full / jnp.where(pick, forget, 1.0), 1.0)
        return jnp.where(pick, factor * p, p).astype(p.dtype)

    new = tree_map(scale, params, chosen, importances.full, importances.forget)
    count = sum(jnp.sum(c) for c in jax.tree_util.tree_leaves(chosen))
    size = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    return new, jnp.asarray(count, jnp.float32) / size


def make_ssd(
    model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: None = None, label_free: bool = False
) -> Pipeline:
    """Phase "importance" (F_D and F_f of the original model), then phase "dampen".
    ``label_free``: LFSSD's importances (``output_norm``) instead of the task loss's."""
    objective = output_norm if label_free else get_loss(cfg.loss)
    # Only the sets' sizes are fixed here; which rows is read from the task at run time.
    all_count, forget_count = task.train.used, int(task.train.host_indices("forget").size)
    if forget_count == 0:
        raise ValueError("SSD needs forget rows: the forget set is empty")
    if cfg.batch_size > all_count:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the {all_count} training rows; use batch_size <= {all_count}"
        )

    def from_original(key, original, task, hp, earlier):
        if original is None:
            raise ValueError("SSD dampens the original model, but none was given")
        return original, (earlier[-1] if earlier else None)

    def importance(key, state: TrainState, task, hp, aux):
        k_full, k_forget = jax.random.split(key)
        full, loss = batch_importance(
            model,
            objective,
            state.params,
            state.batch_stats,
            task,
            task.train.indices("all", all_count),
            cfg.batch_size,
            k_full,
            plan,
        )
        # Under rows as data the forget count is read at run time: one program for every
        # forget set of at least a batch (a smaller one sets the batch size, so its own).
        forget_rows, count = row_set(task.train, "forget", forget_count, plan)
        forget, _ = batch_importance(
            model,
            objective,
            state.params,
            state.batch_stats,
            task,
            forget_rows,
            min(cfg.batch_size, forget_count),
            k_forget,
            plan,
            count,
        )
        result = Importances(full, forget)
        return result, {"train_loss": loss, "diverged_at": jnp.where(all_finite(result), -1, 0)}

    def apply(key, state: TrainState, task, hp, importances: Importances):
        del key
        params, fraction = dampen(state.params, importances, hp["selection_weight"], hp["dampening"])
        # Importances that are not finite: keep the original weights and report the seed.
        finite = all_finite(importances)
        params = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), params, state.params)
        return state.replace(params=params), {
            "dampened_fraction": jnp.where(finite, fraction, 0.0),
            "diverged_at": jnp.where(finite, -1, 0),
        }

    return Pipeline(
        "lfssd" if label_free else "ssd",
        (
            Phase("importance", from_original, OneShot(importance), reads_hp=()),
            Phase("dampen", from_original, OneShot(apply)),
        ),
        DEFAULT_HP,
    )


def make_lfssd(model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan, settings: None = None) -> Pipeline:
    """Loss-Free SSD: ``make_ssd`` with the output norm's importances (no labels read)."""
    return make_ssd(model, task, cfg, plan, label_free=True)


SSD = register(
    Unlearner(
        "ssd",
        make_ssd,
        DEFAULT_HP,
        HP_BOUNDS,
        key_id=7,
        description="Selective Synaptic Dampening: retraining-free, from parameter importances",
        search=SSD_SEARCH,
        shapes_only=True,
        forget_count_class=batch_capped_count,
    )
)
LFSSD = register(
    Unlearner(
        "lfssd",
        make_lfssd,
        DEFAULT_HP,
        HP_BOUNDS,
        key_id=8,
        description="Loss-Free SSD: SSD's importances from the output norm (no labels)",
        search=SSD_SEARCH,
        shapes_only=True,
        forget_count_class=batch_capped_count,
    )
)
