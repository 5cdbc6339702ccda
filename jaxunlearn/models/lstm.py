"""LSTM regressor for token-embedding sequences and sentence pairs (STS-B)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

GATES = ("i", "f", "g", "o")  # input, forget, candidate, output


def householder_q(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The QR decomposition's Q of a square matrix by Householder reflections, in XLA's own
    operations: a [n, n] float -> (Q [n, n], the diagonal of R [n]).

    ``jnp.linalg.qr`` on the CPU calls LAPACK from the BLAS library numpy/scipy ship
    (OpenBLAS), which picks its kernel by the CPU: the same key gave other recurrent weights
    on an AVX-512 machine (kernel SkylakeX) than on an AVX2 one (Zen/Haswell), and training
    amplified that into percent-level differences of a study's metrics
    (docs/REPRODUCIBILITY.md). These reflections are matrix-vector products and sums that
    XLA compiles like the rest of the model.
    """
    n = a.shape[-1]
    rows = jnp.arange(n)

    def reflect(k, carry):
        r, q = carry
        x = jnp.where(rows >= k, r[:, k], 0.0)  # column k from the diagonal down
        alpha = -jnp.where(r[k, k] >= 0, 1.0, -1.0) * jnp.sqrt(jnp.sum(x * x))
        v = x - alpha * (rows == k)
        vv = jnp.sum(v * v)
        beta = jnp.where(vv > 0, 2.0 / jnp.where(vv > 0, vv, 1.0), 0.0)
        return r - beta * jnp.outer(v, v @ r), q - beta * jnp.outer(q @ v, v)

    r, q = jax.lax.fori_loop(0, n, reflect, (a, jnp.eye(n, dtype=a.dtype)))
    return q, jnp.diagonal(r)


def orthogonal_blocks(key: jax.Array, count: int, size: int) -> jax.Array:
    """``count`` independent Haar-random orthogonal [size, size] matrices: [count, size, size].

    Q of the QR decomposition of a Gaussian matrix, its columns' signs fixed by R's diagonal
    (which makes Q Haar-distributed), by :func:`householder_q`: no LAPACK, so the same key
    gives the same bits on every CPU (and no batched LAPACK QR, which could deadlock XLA:CPU
    under ``vmap`` over seeds in jax 0.10).
    """
    q, r_diag = jax.vmap(householder_q)(jax.random.normal(key, (count, size, size), jnp.float32))
    return q * jnp.where(r_diag >= 0, 1.0, -1.0)[..., None, :]


class _GateParams(nn.Module):
    """One gate's kernel [in, H] (and bias [H]), named as flax's LSTM cells name them, so
    parameter trees match ``nn.OptimizedLSTMCell``'s."""

    features: int
    use_bias: bool
    kernel_init: Callable

    @nn.compact
    def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array | None]:
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
        bias = (
            self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32) if self.use_bias else None
        )
        return kernel, bias


class LSTMLayer(nn.Module):
    """An LSTM over [N, T, E]: the function of ``nn.RNN(nn.OptimizedLSTMCell(H))``.

    Same parameter tree as flax's cell (i, f, g, o gates; input kernels without bias,
    recurrent kernels with bias, orthogonal at initialisation; zero initial state). With
    ``hoist_input`` the input projection x @ W_in is one [N*T, E] x [E, 4H] matmul before
    the time loop instead of T small ones inside it, so the sequential part holds only
    h @ W_h and the gate arithmetic; it is off by default because on XLA:CPU it was ~20%
    slower per training epoch (benchmarks/RESULTS.md), and the GPU suite measures both.
    The time loop is unrolled ``unroll`` steps per iteration.

    Attributes:
        hidden: H. dtype: matmul and gate compute dtype; the state (c, h) stays float32.
        hoist_input: project all time steps' inputs before the loop (else inside it).
        unroll: time steps per scan iteration (the whole sequence when it is shorter).
    """

    hidden: int
    dtype: Any = jnp.float32
    hoist_input: bool = False
    unroll: int = 16

    @nn.compact
    def __call__(self, seqs: jax.Array) -> jax.Array:
        """seqs [N, T, E] -> outputs h_t [N, T, H] float32."""
        n, t, e = seqs.shape
        w_in_gates = [
            _GateParams(self.hidden, False, nn.initializers.lecun_normal(), name=f"i{g}")(e)[0] for g in GATES
        ]
        # Recurrent kernels: orthogonal, as flax's, but drawn in one batched QR (see orthogonal_blocks).
        blocks = orthogonal_blocks(self.make_rng("params"), len(GATES), self.hidden) if self.is_initializing() else None
        # (flax also evaluates an initialiser's shape when the parameter exists: hence the zeros)
        rec = [
            _GateParams(
                self.hidden,
                True,
                lambda _key, shape, dtype, i=i: jnp.zeros(shape, dtype) if blocks is None else blocks[i],
                name=f"h{g}",
            )(self.hidden)
            for i, g in enumerate(GATES)
        ]
        w_in = jnp.concatenate(w_in_gates, axis=-1).astype(self.dtype)  # [E, 4H]
        w_h = jnp.concatenate([k for k, _ in rec], axis=-1).astype(self.dtype)  # [H, 4H]
        b_h = jnp.concatenate([b for _, b in rec if b is not None]).astype(self.dtype)[None, :]  # [1, 4H]: all have one
        seqs = seqs.astype(self.dtype)
        inputs = jnp.dot(seqs, w_in) if self.hoist_input else seqs  # [N, T, 4H] or [N, T, E]

        def step(carry, x_t):  # x_t [N, 4H] (projected) or [N, E]
            c, h = carry
            z = (jnp.dot(h.astype(self.dtype), w_h) + b_h) + (x_t if self.hoist_input else jnp.dot(x_t, w_in))
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
            h = nn.sigmoid(o) * jnp.tanh(c)
            return (c, h), h

        zeros = jnp.zeros((n, self.hidden), jnp.float32)
        _, hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(inputs, 0, 1), unroll=min(self.unroll, t))
        return jnp.swapaxes(hs, 0, 1)


class LSTMRegressor(nn.Module):
    """Shared-LSTM regressor over one sequence or a sentence pair.

    One LSTM (shared between the two sentences of a pair) encodes each
    sequence; its representation is the output at the last time step. A pair
    concatenates the two representations. A head ``Dense(hidden) -> ReLU ->
    Dense(1)`` gives the prediction.

    Attributes:
        hidden: LSTM hidden size ``H`` (also the head's hidden width).
        hoist_input: see ``LSTMLayer`` (the same function either way; a speed choice).
        dtype: Compute dtype of every layer (parameters stay float32). The LSTM
            state (c, h) stays float32, so with bfloat16 the gate matmuls run
            in bfloat16 but the state and ``feats`` are float32.
    """

    family: ClassVar[str] = "recurrent"

    hidden: int = 128
    dtype: Any = jnp.float32
    hoist_input: bool = False

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
        out = LSTMLayer(self.hidden, dtype=self.dtype, hoist_input=self.hoist_input, name="lstm_cell")(seqs)
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
