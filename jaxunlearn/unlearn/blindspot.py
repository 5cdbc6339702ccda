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
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.loop import BatchLoss, Fit, FitConfig
from jaxunlearn.train.losses import attention_transfer_loss, get_loss, masked_mean
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import Phase, Pipeline, fresh_start, from_original
from jaxunlearn.unlearn.retrain import RECIPE_LR, recipe_fit


def blindspot_loss(model: ModelFns, loss_name: str) -> BatchLoss:
    """The student's objective; ``aux["proxy"]`` = (params, batch_stats) of the proxy."""
    loss_fn = get_loss(loss_name)

    def batch_loss(params, batch_stats, batch, key, hp, aux):
        proxy_params, proxy_stats = aux["proxy"]
        pred, feats, new_stats = model.apply_train(params, batch_stats, batch["x"])
        proxy_pred, proxy_feats = jax.lax.stop_gradient(model.apply_eval(proxy_params, proxy_stats, batch["x"]))
        forget_w = batch["forget"] * batch["w"]
        retain_w = (1.0 - batch["forget"]) * batch["w"]
        coeff = jnp.sum(forget_w) / jnp.maximum(jnp.sum(batch["w"]), 1.0)
        label_loss = masked_mean(loss_fn(pred, batch["y"]), retain_w)
        proxy_loss = masked_mean(loss_fn(pred, proxy_pred), forget_w) + hp["beta"] * attention_transfer_loss(
            feats, proxy_feats, forget_w
        )
        return coeff * proxy_loss + (1.0 - coeff) * label_loss, new_stats

    return batch_loss


def make_blindspot(model: ModelFns, task: Task, cfg: StudyConfig, plan: LoopPlan) -> Pipeline:
    """Proxy: ``cfg.proxy_epochs`` of the training recipe on D_r; student: original weights,
    Adam lr 1e-3, ``cfg.blindspot_epochs`` over D with the blindspot loss (beta = 50)."""
    proxy_fit = recipe_fit(model, task, cfg, plan, rows="retain", epochs=cfg.proxy_epochs, lr_key="proxy_lr")
    base = from_original()

    def student_start(key, original, task, hp, earlier):
        state, _ = base(key, original, task, hp, earlier)
        proxy = earlier[0]
        return state, {"proxy": (proxy.params, proxy.batch_stats)}

    student_cfg = FitConfig(epochs=cfg.blindspot_epochs, batch_size=cfg.batch_size, rows="all", loss=cfg.loss,
                            augment_pad=cfg.augment_pad)
    student_fit = Fit(model, student_cfg, blindspot_loss(model, cfg.loss), task, plan)
    phases = (
        Phase("proxy", fresh_start(model, "proxy_lr"), proxy_fit),
        Phase("student", student_start, student_fit),
    )
    return Pipeline("blindspot", phases, {"lr": 1e-3, "proxy_lr": RECIPE_LR, "beta": 50.0})
