"""CIFAR-style ResNet-18 regressor."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.models.common import row_mask


def _bn(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


class BasicBlock(nn.Module):
    """Two 3x3 Conv-BatchNorm layers with a residual connection.

    The shortcut is the identity, or a 1x1 strided Conv + BatchNorm projection
    when the stride or channel count changes.

    Attributes:
        features: Output channels.
        strides: Spatial stride of the first conv (and of the projection).
        dtype: Compute dtype.
    """

    features: int
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, bn_mask: jax.Array | None = None) -> jax.Array:
        """Maps [B, H, W, C] to [B, H / strides, W / strides, features].

        ``bn_mask`` ([B, 1, 1, 1] bool or None) selects the rows of BatchNorm's batch statistics.
        """
        s = (self.strides, self.strides)
        y = nn.Conv(self.features, (3, 3), s, padding="SAME", use_bias=False, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(_bn(train, self.dtype, "bn1")(y, mask=bn_mask))
        y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype, name="conv2")(y)
        y = _bn(train, self.dtype, "bn2")(y, mask=bn_mask)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(self.features, (1, 1), s, use_bias=False, dtype=self.dtype, name="proj_conv")(x)
            shortcut = _bn(train, self.dtype, "proj_bn")(shortcut, mask=bn_mask)
        return nn.relu(y + shortcut)


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 regressor.

    3x3 stride-1 stem (Conv-BN-ReLU, no max-pool), four stages of two
    BasicBlocks with widths ``[w, 2w, 4w, 8w]`` and strides ``[1, 2, 2, 2]``,
    global average pool, Dense(1).

    Attributes:
        width: Base channel count ``w``.
        dtype: Compute dtype of every layer (parameters stay float32).
    """

    family: ClassVar[str] = "conv"

    width: int = 64
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
            ``feats`` holds the 8 residual-block outputs, each [B, h_i, w_i, c_i].
        """
        bn_mask = row_mask(mask, x.ndim)
        h = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype, name="stem_conv")(x)
        h = nn.relu(_bn(train, self.dtype, "stem_bn")(h, mask=bn_mask))
        feats = []
        for stage, (mult, stride) in enumerate(zip((1, 2, 4, 8), (1, 2, 2, 2), strict=True)):
            for j in range(2):
                h = BasicBlock(
                    self.width * mult,
                    strides=stride if j == 0 else 1,
                    dtype=self.dtype,
                    name=f"stage{stage + 1}_block{j + 1}",
                )(h, train, bn_mask)
                feats.append(h)
        pooled = jnp.mean(h, axis=(1, 2))  # [B, 8w]
        pred = nn.Dense(1, dtype=self.dtype, name="head")(pooled)
        return pred.astype(jnp.float32), tuple(feats)
