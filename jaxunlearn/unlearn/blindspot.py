"""Blindspot unlearning (Tarun et al., ICML 2023).

Phase 1 trains a "blindspot" proxy from scratch on the retain rows for a few epochs: it
has never seen the forget rows. Phase 2 fine-tunes a copy of the original on every
training row; on retain rows it fits the labels, on forget rows it imitates the proxy's
predictions and the attention maps of its activations:

    coeff      = #forget rows in batch / #rows in batch
    label_loss = mean over retain rows of L(student(x), y)
    proxy_loss = mean over forget rows of L(student(x), proxy(x))
                 + beta * sum_l mean over forget rows of mean_p (A(a_l^s) - A(a_l^p))^2
    loss       = coeff * proxy_loss + (1 - coeff) * label_loss

One forward pass over the whole batch with masked means replaces the reference's boolean
indexing, so shapes stay static (BatchNorm statistics are therefore taken over the whole
batch rather than each subset).

The proxy runs in inference mode, so its outputs on a row do not depend on the batch.
Without augmentation they are therefore computed once, on the forget rows only, when the
student phase starts (``proxy_cache``), instead of on every row of every batch: the
student's epoch then costs what a training epoch costs. With augmentation the proxy sees
each augmented batch, as in the reference.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.contract import model_key
from jaxunlearn.train.loop import BatchLoss, Fit, FitConfig, map_chunks
from jaxunlearn.train.losses import attention_map, attention_transfer_to_maps, get_loss, masked_mean
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, fresh_start, from_original
from jaxunlearn.unlearn.registry import EPOCHS_RANGE, LR_RANGE, Range, Unlearner, register, require_positive
from jaxunlearn.unlearn.retrain import RECIPE_LR, recipe_fit

# student Adam lr, the proxy's recipe lr, and the attention-transfer weight (the paper's values)
DEFAULT_HP = {"lr": 1e-3, "proxy_lr": RECIPE_LR, "beta": 50.0}
HP_BOUNDS = {"beta": (0.0, float("inf"))}
# The cache is skipped when one seed's copy would need more device memory than this.
PROXY_CACHE_MAX_BYTES = 512 * 2**20


@dataclasses.dataclass(frozen=True)
class BlindspotSettings:
    """proxy_epochs: the proxy's epochs of the training recipe on the retain rows;
    epochs: the student's epochs (the paper: 2 and 1 on AgeDB, 10 and 5 on STS-B)."""

    proxy_epochs: int = 2
    epochs: int = 1

    def __post_init__(self):
        require_positive(self, "proxy_epochs", "epochs")


def proxy_outputs(model: ModelFns, params, batch_stats, x: jax.Array, plan: LoopPlan):
    """The proxy's targets for rows ``x`` [N, ...]: (pred [N, 1], attention maps ([N, P_l], ...))."""

    def targets(xc):
        pred, feats = model.apply_eval(params, batch_stats, xc)
        return pred, tuple(attention_map(f) for f in feats)

    return jax.lax.stop_gradient(map_chunks(targets, x, plan))


def blindspot_loss(model: ModelFns, loss_name: str) -> BatchLoss:
    """The student's objective.

    ``aux`` holds either "proxy" = (params, batch_stats), run on each batch, or "cache" =
    (pred [F, 1], maps ([F, P_l], ...)) of the F forget rows with "cache_slot" [N] int32,
    each training row's position in it (retain rows: slot 0, weight 0).
    """
    loss_fn = get_loss(loss_name)

    def batch_loss(params, batch_stats, batch, key, hp, aux):
        pred, feats, new_stats = model.apply_train(params, batch_stats, batch["x"], batch["w"] > 0, model_key(key))
        if "cache" in aux:
            slot = aux["cache_slot"][batch["idx"]]
            proxy_pred, proxy_maps = jax.tree_util.tree_map(lambda a: a[slot], aux["cache"])
        else:
            proxy_params, proxy_stats = aux["proxy"]
            proxy_pred, proxy_feats = jax.lax.stop_gradient(model.apply_eval(proxy_params, proxy_stats, batch["x"]))
            proxy_maps = tuple(attention_map(f) for f in proxy_feats)
        forget_w = batch["forget"] * batch["w"]
        retain_w = (1.0 - batch["forget"]) * batch["w"]
        coeff = jnp.sum(forget_w) / jnp.maximum(jnp.sum(batch["w"]), 1.0)
        label_loss = masked_mean(loss_fn(pred, batch["y"]), retain_w)
        proxy_loss = masked_mean(loss_fn(pred, proxy_pred), forget_w) + hp["beta"] * attention_transfer_to_maps(
            feats, proxy_maps, forget_w
        )
        return coeff * proxy_loss + (1.0 - coeff) * label_loss, new_stats

    return batch_loss


def proxy_cache_bytes(model: ModelFns, task: Task, rows: int | None = None) -> int:
    """Device bytes of one seed's proxy cache: ``rows`` (default: the forget rows) x
    (1 + attention map sizes) x 4."""
    _, feats = jax.eval_shape(
        lambda p, s: model.apply_eval(p, s, jnp.zeros((1, *model.input_shape))),
        *jax.eval_shape(model.init, jax.random.key(0)),
    )
    per_row = 1 + sum(int(np.prod(f.shape[1:-1] if len(f.shape) >= 3 else f.shape[1:])) for f in feats)
    rows = int(task.train.host_indices("forget").size) if rows is None else rows
    return rows * per_row * 4


def make_blindspot(
    model: ModelFns,
    task: Task,
    cfg: StudyConfig,
    plan: LoopPlan,
    settings: BlindspotSettings,
    proxy_cache: bool | None = None,
) -> Pipeline:
    """Proxy: ``settings.proxy_epochs`` of the training recipe on D_r; student: original weights,
    Adam lr 1e-3, ``settings.epochs`` over D with the blindspot loss (beta = 50).

    Args:
        proxy_cache: compute the proxy's outputs on the forget rows once (True), or on every
            batch (False). None: cache when there is no augmentation and one seed's cache
            fits in ``PROXY_CACHE_MAX_BYTES``. Both give the same loss up to rounding.

    Under a plan with row counts as data, a cache that fits with a slot for every used
    training row is padded to that many rows after it is computed on the forget rows: the
    student's epochs then hold no forget count and serve every forget set of the task,
    while the cached values stay those of the forget rows' own pass (a forward pass over
    other rows may round a row's output otherwise); only the student's start, which computes
    them, is compiled per count (``Phase.start_reads_forget_count``).
    """
    if proxy_cache is None:
        proxy_cache = cfg.augment_pad == 0 and proxy_cache_bytes(model, task) <= PROXY_CACHE_MAX_BYTES
    elif proxy_cache and cfg.augment_pad > 0:
        raise ValueError(
            "proxy_cache=True needs augment_pad == 0: with augmentation the proxy must see each augmented batch"
        )
    proxy_fit = recipe_fit(model, task, cfg, plan, rows="retain", epochs=settings.proxy_epochs, lr_key="proxy_lr")
    base = from_original()
    forget_count = int(task.train.host_indices("forget").size)  # which rows: read from the task at run time
    used = task.train.used
    pad_cache = (
        proxy_cache
        and not plan.counts_in_program
        and proxy_cache_bytes(model, task, rows=used) <= PROXY_CACHE_MAX_BYTES
    )

    def student_start(key, original, task, hp, earlier):
        state, _ = base(key, original, task, hp, earlier)
        proxy = earlier[0]
        if not proxy_cache:
            return state, {"proxy": (proxy.params, proxy.batch_stats)}
        forget_rows = task.train.indices("forget", forget_count)
        cache_slot = (
            jnp.zeros(task.train.size, jnp.int32).at[forget_rows].set(jnp.arange(forget_count, dtype=jnp.int32))
        )
        x_forget = task.train.x[forget_rows]
        cache = proxy_outputs(model, proxy.params, proxy.batch_stats, x_forget, plan)
        if pad_cache:  # slots past the forget rows are never read
            cache = jax.tree_util.tree_map(
                lambda a: jnp.concatenate([a, jnp.zeros((used - forget_count, *a.shape[1:]), a.dtype)]), cache
            )
        return state, {"cache": cache, "cache_slot": cache_slot}

    student_cfg = FitConfig(
        epochs=settings.epochs, batch_size=cfg.batch_size, rows="all", loss=cfg.loss, augment_pad=cfg.augment_pad
    )
    student_fit = Fit(model, student_cfg, blindspot_loss(model, cfg.loss), task, plan)
    phases = (
        Phase("proxy", fresh_start(model, "proxy_lr"), proxy_fit, reads_hp=("proxy_lr",)),
        Phase("student", student_start, student_fit, start_reads_forget_count=proxy_cache),
    )
    return Pipeline("blindspot", phases, DEFAULT_HP)


BLINDSPOT = register(
    Unlearner(
        "blindspot",
        make_blindspot,
        DEFAULT_HP,
        HP_BOUNDS,
        settings=BlindspotSettings,
        key_id=4,
        default=True,
        claims_subject=True,
        aliases={"proxy_epochs": "proxy_epochs", "blindspot_epochs": "epochs"},
        description="Blindspot (the paper): a proxy that never saw the forget rows guides the student there",
        search={
            "lr": LR_RANGE,
            "proxy_lr": LR_RANGE,
            "beta": Range(0.1, 1000.0, log=True),
            "proxy_epochs": EPOCHS_RANGE,
            "epochs": EPOCHS_RANGE,
        },
    )
)
