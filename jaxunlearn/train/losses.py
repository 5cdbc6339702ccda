"""Elementwise regression losses, masked means and the attention-transfer loss.

Losses are unreduced ([B, 1] in, [B, 1] out) with explicit shape checks, so a [B] vs
[B, 1] mix-up fails loudly instead of broadcasting to [B, B]. Reductions over a batch use
float weights (masked means), never boolean indexing, so shapes stay static under jit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp


def _check(pred: jax.Array, target: jax.Array) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")


def l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """|pred - target|, elementwise. pred, target: [B, 1] -> [B, 1]."""
    _check(pred, target)
    return jnp.abs(pred - target)


def mse_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """(pred - target)^2, elementwise. pred, target: [B, 1] -> [B, 1]."""
    _check(pred, target)
    return jnp.square(pred - target)


def quantile_loss(pred: jax.Array, target: jax.Array, q: float = 0.5) -> jax.Array:
    """Pinball loss max(q * e, (q - 1) * e) with e = target - pred; [B, 1] -> [B, 1].

    q = 0.5 gives half the L1 loss; the TFT forecaster of the paper uses q in {0.1, 0.5, 0.9}.
    """
    _check(pred, target)
    err = target - pred
    return jnp.maximum(q * err, (q - 1.0) * err)


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "l1": l1_loss,
    "mse": mse_loss,
    "quantile": quantile_loss,
}


def get_loss(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Looks up an elementwise loss by name."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {sorted(LOSSES)}")
    return LOSSES[name]


def masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """The weighted mean sum(values * weights) / sum(weights), and 0 when every weight is 0.

    Args:
        values: [B] or [B, 1] per-row values.
        weights: [B] row weights (0/1 masks or general non-negative weights, e.g. fractions
            summing to less than 1).

    Returns:
        A scalar.
    """
    values = values.reshape(values.shape[0], -1)
    if values.shape[1] != 1 or weights.shape != (values.shape[0],):
        raise ValueError(f"masked_mean needs values [B] or [B, 1] and weights [B]; got {values.shape}, {weights.shape}")
    w = weights.astype(jnp.float32)
    total = jnp.sum(w)
    # Divides by the total itself (dividing by max(total, 1), as before, shrank the mean of
    # fractional weights that sum below 1; with 0/1 masks both give the same bits).
    return jnp.where(total > 0, jnp.sum(values[:, 0].astype(jnp.float32) * w) / jnp.where(total > 0, total, 1.0), 0.0)


def attention_map(activation: jax.Array) -> jax.Array:
    """Attention map of Zagoruyko & Komodakis: L2-normalised mean over channels of a^2.

    Args:
        activation: [B, *positions, C] (conv maps [B, H, W, C]; sequences [B, T, H]), or a
            dense layer's [B, H], whose units are treated as positions with one channel.

    Returns:
        [B, P] float32 with unit L2 norm per row (P = product of the position axes).
    """
    a = jnp.square(activation.astype(jnp.float32))
    if a.ndim >= 3:
        a = jnp.mean(a, axis=-1)
    a = a.reshape(a.shape[0], -1)
    return a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def attention_transfer_loss(
    student_feats: Sequence[jax.Array], teacher_feats: Sequence[jax.Array], weights: jax.Array
) -> jax.Array:
    """Sum over layers of the row-weighted mean of mean_p (A_s - A_t)^2.

    Args:
        student_feats, teacher_feats: matching tuples of activations, each [B, ...].
        weights: [B] row weights (e.g. a forget-set term uses the forget mask).

    Returns:
        A scalar.
    """
    if len(student_feats) != len(teacher_feats):
        raise ValueError(f"{len(student_feats)} student activations vs {len(teacher_feats)} teacher activations")
    return attention_transfer_to_maps(student_feats, tuple(attention_map(t) for t in teacher_feats), weights)


def attention_transfer_to_maps(
    student_feats: Sequence[jax.Array], teacher_maps: Sequence[jax.Array], weights: jax.Array
) -> jax.Array:
    """``attention_transfer_loss`` against precomputed teacher attention maps.

    Args:
        student_feats: activations, each [B, ...].
        teacher_maps: ``attention_map`` of the matching teacher activations, each [B, P_l].
        weights: [B] row weights.
    """
    if len(student_feats) != len(teacher_maps):
        raise ValueError(f"{len(student_feats)} student activations vs {len(teacher_maps)} teacher maps")
    total = jnp.zeros((), jnp.float32)
    for s, t in zip(student_feats, teacher_maps, strict=True):
        per_row = jnp.mean(jnp.square(attention_map(s) - t), axis=1)
        total = total + masked_mean(per_row, weights)
    return total
