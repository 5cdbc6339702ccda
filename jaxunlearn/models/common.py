"""Helpers shared by the models."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def row_mask(mask: jax.Array | None, ndim: int) -> jax.Array | None:
    """A per-row mask [B] as a bool array [B, 1, ..., 1] of ``ndim`` axes (None stays None).

    BatchNorm's ``mask`` must broadcast against its input; a row mask has to cover every
    spatial position and channel of its row.
    """
    if mask is None:
        return None
    if mask.ndim != 1:
        raise ValueError(f"the BatchNorm row mask must be [B], got shape {mask.shape}")
    return jnp.reshape(mask.astype(bool), (mask.shape[0],) + (1,) * (ndim - 1))
