"""Multi-layer perceptron regressor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Fully connected regressor: ``[Dense -> ReLU] * len(hidden) -> Dense(1)``.

    Attributes:
        hidden: Widths of the hidden layers.
        dtype: Compute dtype of every layer (parameters stay float32).
    """

    family: ClassVar[str] = "dense"

    hidden: Sequence[int] = (256, 256, 256)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Runs the network.

        Args:
            x: Inputs of shape [B, ...]; every axis after the first is flattened
                into one feature axis, giving [B, D].
            train: Unused (no batch statistics or dropout); kept for the
                common model interface.

        Returns:
            ``(pred, feats)``: ``pred`` is the float32 prediction [B, 1];
            ``feats`` holds each hidden activation after ReLU, [B, H_i].
        """
        del train
        h = jnp.reshape(x, (x.shape[0], -1))
        feats = []
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"dense_{i}")(h))
            feats.append(h)
        pred = nn.Dense(1, dtype=self.dtype, name="head")(h)
        return pred.astype(jnp.float32), tuple(feats)
