"""LSTM regressor for token-embedding sequences and sentence pairs (STS-B)."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp


class LSTMRegressor(nn.Module):
    """Shared-LSTM regressor over one sequence or a sentence pair.

    One LSTM (shared between the two sentences of a pair) encodes each
    sequence; its representation is the output at the last time step. A pair
    concatenates the two representations. A head ``Dense(hidden) -> ReLU ->
    Dense(1)`` gives the prediction.

    Attributes:
        hidden: LSTM hidden size ``H`` (also the head's hidden width).
        dtype: Compute dtype of every layer (parameters stay float32). Flax
            keeps the LSTM carry (c, h) in float32, so with bfloat16 the gate
            matmuls run in bfloat16 but the state and ``feats`` are float32.
    """

    family: ClassVar[str] = "recurrent"

    hidden: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Runs the network.

        Args:
            x: A sequence batch [B, T, E] or a sentence-pair batch [B, 2, T, E].
            train: Unused (no batch statistics or dropout); kept for the
                common model interface.

        Returns:
            ``(pred, feats)``: ``pred`` is the float32 prediction [B, 1];
            ``feats`` is ``(outputs,)`` with the LSTM output sequence [B, T, H]
            for a single sequence, or the two sentences' outputs concatenated
            along time, [B, 2T, H], for a pair.

        Raises:
            ValueError: If ``x`` is not of rank 3 or 4, or a rank-4 input's
                second axis is not 2.
        """
        del train
        if x.ndim == 3:
            pair = False
            seqs = x  # [B, T, E]
        elif x.ndim == 4:
            if x.shape[1] != 2:
                raise ValueError(f"LSTMRegressor: pair input must be [B, 2, T, E], got shape {x.shape}")
            pair = True
            b, _, t, e = x.shape
            seqs = jnp.reshape(x, (b * 2, t, e))  # [2B, T, E], rows (b, sentence)
        else:
            raise ValueError(
                "LSTMRegressor expects [B, T, E] (sequence) or [B, 2, T, E] (sentence pair), "
                f"got rank {x.ndim} shape {x.shape}"
            )
        cell = nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype, name="lstm_cell")
        out = nn.RNN(cell, name="lstm")(seqs.astype(self.dtype))  # [B or 2B, T, H]
        last = out[:, -1, :]  # [B or 2B, H]
        if pair:
            b, _, t, _ = x.shape
            rep = jnp.reshape(last, (b, 2 * self.hidden))  # [h1, h2]
            seq_feats = jnp.reshape(out, (b, 2 * t, self.hidden))  # sentence 1 then 2
        else:
            rep, seq_feats = last, out
        h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc")(rep))
        pred = nn.Dense(1, dtype=self.dtype, name="head")(h)
        return pred.astype(jnp.float32), (seq_feats,)
