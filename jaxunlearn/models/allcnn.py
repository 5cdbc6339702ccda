"""All-convolutional regressor (the AllCNN of "Deep Regression Unlearning")."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.models.common import row_mask

# (channel multiplier of ``width``, kernel size, stride) for the 8 conv blocks.
_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 3, 1),
    (1, 3, 1),
    (1, 3, 2),
    (2, 3, 1),
    (2, 3, 1),
    (2, 3, 2),
    (2, 3, 1),
    (2, 1, 1),
)


class AllCNN(nn.Module):
    """AllCNN regressor: 8 Conv-BatchNorm-ReLU blocks, global average pool, Dense(1).

    Channels are ``[w, w, w, 2w, 2w, 2w, 2w, 2w]``; kernels are 3x3 'SAME'
    except a 1x1 last block; blocks 3 and 6 (1-based) use stride 2.

    Attributes:
        width: Base channel count ``w``.
        dtype: Compute dtype of every layer (parameters stay float32).
    """

    family: ClassVar[str] = "conv"

    width: int = 96
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False, mask: jax.Array | None = None
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Runs the network.

        Args:
            x: Images of shape [B, H, W, C].
            train: If True, BatchNorm uses batch statistics and updates the
                'batch_stats' collection (apply with ``mutable=['batch_stats']``);
                if False it uses the running averages.
            mask: Optional [B] bool; in training mode only the rows where it is True
                enter BatchNorm's batch statistics (padding rows are left out).

        Returns:
            ``(pred, feats)``: ``pred`` is the float32 prediction [B, 1];
            ``feats`` holds the 8 block outputs, each [B, h_i, w_i, c_i].
        """
        bn_mask = row_mask(mask, x.ndim)
        h = x
        feats = []
        for i, (mult, k, s) in enumerate(_BLOCKS):
            h = nn.Conv(
                self.width * mult,
                (k, k),
                strides=(s, s),
                padding="SAME",
                use_bias=False,
                dtype=self.dtype,
                name=f"conv_{i}",
            )(h)
            h = nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,
                epsilon=1e-5,
                dtype=self.dtype,
                name=f"bn_{i}",
            )(h, mask=bn_mask)
            h = nn.relu(h)
            feats.append(h)
        pooled = jnp.mean(h, axis=(1, 2))  # [B, 2w]
        pred = nn.Dense(1, dtype=self.dtype, name="head")(pooled)
        return pred.astype(jnp.float32), tuple(feats)
