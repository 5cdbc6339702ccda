"""Disjoint shards of the training rows for sharded stages (the SISA unlearner):
a seed-derived random partition into equal-length row lists (``Split.rows``, holes where
a shard or slice is one row short), cut into slices trained incrementally."""

from __future__ import annotations

import jax
import numpy as np

from jaxunlearn.data.arrays import Task

ASSIGNMENT_TAG = 1912  # folded into the shard assignment's seed (arXiv 1912.03817, SISA)


def slice_length(train_rows: int, shards: int, slices: int) -> int:
    """Rows per slice: a shard holds ceil(N / S) rows in ``slices`` slices of this length."""
    shard = -(-train_rows // shards)
    return -(-shard // slices)


def shard_rows(train_rows: int, shards: int, slices: int, seed: int, replica: int) -> np.ndarray:
    """int32 [S, R * L]: shard s's rows (slice r at columns r*L .. r*L + L - 1), a random
    partition of the ``train_rows`` rows drawn from (``seed``, ``replica``); shards and
    slices one row short end in holes (-1). Every row is in exactly one shard."""
    length = slice_length(train_rows, shards, slices)
    per_shard = slices * length
    order = np.random.default_rng([seed, replica, ASSIGNMENT_TAG]).permutation(train_rows)
    out = np.full((shards, per_shard), -1, np.int64)
    for s, part in enumerate(np.array_split(order, shards)):
        for r, piece in enumerate(np.array_split(part, slices)):
            out[s, r * length : r * length + piece.size] = piece
    return out.astype(np.int32)


def slice_epochs(epochs: int, slices: int) -> list[int]:
    """``epochs`` spread over the slice stages (the later stages, which see more rows, get
    the remainder), so a shard trains ``epochs`` epochs in all."""
    base, extra = divmod(epochs, slices)
    return [base + (1 if r >= slices - extra else 0) for r in range(slices)]


def shard_task(task: Task) -> Task:
    """``task`` with no training row marked forget: a shard model trains on its rows
    whatever the forget rule (the unlearning step turns forget rows into holes)."""
    train = task.train  # zeros copied in, not computed: building a stage compiles nothing
    return task.replace(train=train.replace(forget=jax.device_put(np.zeros(train.forget.shape, np.float32)), rows=None))
