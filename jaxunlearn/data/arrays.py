"""Core data containers: a split with its forget mask, and a task of three splits.

Everything here is a pytree of arrays, so a Task can be passed into jitted and vmapped
functions as an ordinary argument (shared across seeds with ``in_axes=None``).
Forget membership is a float mask over a fixed number of rows: static shapes, no
boolean indexing inside jit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Split:
    """One split (train, validation or test) with its forget mask.

    Attributes:
        x: inputs, [N, *feature_shape], standardised.
        y: targets, [N, 1] float32, standardised.
        forget: [N] float32, 1.0 for rows in the forget set, 0.0 for retain rows.
        rows: None (a model uses every row, in order), or int32 [M]: the rows of ``x`` a
            model uses, in this order (distinct). A per-model training set over shared
            arrays: U-LiRA's shadow sets and SISA's shards give each model its own ``rows``
            (``with_rows``) while ``x`` and ``y`` stay one copy. The forget rows are then
            the listed rows marked in ``forget``, the retain rows the other listed rows.
            An entry -1 is a hole, a slot holding no row, so that sets of unequal sizes
            share one length (SISA's shards): holes count in "all" and a training loop
            gives them weight 0; they are in neither "forget" nor "retain". Only training
            loops (``Fit``) understand holes; other phases expect lists without them.
    """

    x: jax.Array
    y: jax.Array
    forget: jax.Array
    rows: jax.Array | None = None

    if TYPE_CHECKING:  # struct.dataclass adds it at run time; declared for type checkers only

        def replace(self, **changes: Any) -> Self: ...

    @property
    def size(self) -> int:
        """N, the rows of the arrays (not ``rows``' count)."""
        return int(self.y.shape[0])

    @property
    def used(self) -> int:
        """M, how many rows a model uses: N, or the length of ``rows``."""
        return self.size if self.rows is None else int(self.rows.shape[0])

    def with_rows(self, rows: jax.Array | np.ndarray | None) -> Split:
        """This split restricted to ``rows`` (int32 [M], in order); traceable."""
        return self.replace(rows=None if rows is None else jnp.asarray(rows, jnp.int32))

    def host_indices(self, which: str) -> np.ndarray:
        """Row indices of the forget, retain or all used rows, as a host int32 array (static
        size), in the order of ``rows`` (increasing when ``rows`` is None)."""
        if which not in ("forget", "retain", "all"):
            raise ValueError(f"which must be 'forget', 'retain' or 'all', got {which!r}")
        order = np.arange(self.size) if self.rows is None else np.asarray(self.rows).astype(np.int64)
        if which == "all":
            return order.astype(np.int32)
        order = order[order >= 0]  # holes hold no row
        marked = np.asarray(self.forget)[order] > 0.5
        return order[marked if which == "forget" else ~marked].astype(np.int32)

    def indices(self, which: str, count: int) -> jax.Array:
        """The same row indices as ``host_indices(which)``, read from the forget mask (and
        ``rows``) when the program runs: int32 [count]. Only the set's size ``count``
        (static) is part of the compiled program, so tasks whose row sets differ but have
        the same sizes share their programs. Traceable; ``count`` must be the set's size.
        """
        if which not in ("forget", "retain", "all"):
            raise ValueError(f"which must be 'forget', 'retain' or 'all', got {which!r}")
        if which == "all":
            return jnp.arange(self.size, dtype=jnp.int32) if self.rows is None else self.rows
        positions = jnp.nonzero(self._chosen(which), size=count, fill_value=0)[0]
        return (positions if self.rows is None else self.rows[positions]).astype(jnp.int32)

    def padded_indices(self, which: str) -> tuple[jax.Array, jax.Array | None]:
        """The same row indices as ``indices(which, count)``, with no count in the program:
        int32 [M] (M = ``used``) whose first ``count`` entries are the set's rows (the rest
        filler), and ``count`` as an int32 scalar read when the program runs (None for
        "all": every entry is used). Every forget set of a split then shares one program.
        Traceable."""
        if which == "all":
            return self.indices("all", self.used), None
        return self.indices(which, self.used), jnp.sum(self._chosen(which), dtype=jnp.int32)

    def _chosen(self, which: str) -> jax.Array:
        """bool [used]: which entries (rows, or ``rows``' entries) are in the forget or the
        retain set; a hole (-1) is in neither."""
        if self.rows is None:
            marked = self.forget > 0.5
            return marked if which == "forget" else ~marked
        marked = self.forget[jnp.maximum(self.rows, 0)] > 0.5
        return (marked if which == "forget" else ~marked) & (self.rows >= 0)


@struct.dataclass
class Task:
    """A regression task divided into forget and retain rows by one rule.

    Attributes:
        train, val, test: the three splits.
        y_mean, y_std: scalars used to standardise the targets; errors are reported in the
            target's own units as ``error_std_units * y_std`` (MAE) or ``* y_std**2`` (MSE).
        name: a human-readable description (static).
    """

    train: Split
    val: Split
    test: Split
    y_mean: jax.Array
    y_std: jax.Array
    name: str = struct.field(pytree_node=False, default="task")

    if TYPE_CHECKING:  # struct.dataclass adds it at run time; declared for type checkers only

        def replace(self, **changes: Any) -> Self: ...

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def layout(self, counts: bool = True) -> tuple:
        """What a compiled program may depend on: the input shape and, per split, its rows,
        the rows a model uses and (with ``counts``) their forget rows: counts, never which
        rows. Tasks with equal layouts share programs; without ``counts``, every forget set
        of a task's shape has its layout (for programs that read the counts at run time)."""
        splits = (("train", self.train), ("val", self.val), ("test", self.test))
        if not counts:
            return (self.input_shape, tuple((name, split.size, split.used) for name, split in splits))
        sizes = tuple((name, split.size, split.used, int(split.host_indices("forget").size)) for name, split in splits)
        return (self.input_shape, sizes)

    def without_forget(self) -> Task:
        """This task with no forget row in any split (every row retained; shapes unchanged).
        A model trained on its retain rows is trained on every row, as the original is."""

        def cleared(split: Split) -> Split:  # zeros from the host: no program compiles for them
            return split.replace(forget=jax.device_put(np.zeros(split.forget.shape, split.forget.dtype)))

        return self.replace(train=cleared(self.train), val=cleared(self.val), test=cleared(self.test))

    def with_train_rows(self, rows: jax.Array | np.ndarray | None) -> Task:
        """This task with its training split restricted to ``rows`` (int32 [M]; see
        ``Split.rows``); None leaves it as it is. Traceable."""
        return self if rows is None else self.replace(train=self.train.with_rows(rows))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "input_shape": list(self.input_shape)}
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            n_forget = int(np.asarray(split.forget).sum())
            out[split_name] = {"rows": split.size, "forget": n_forget, "retain": split.size - n_forget}
        return out


def marked_rows(forget: Any, rows: np.ndarray) -> np.ndarray:
    """bool [..., M]: which entries of the row lists ``rows`` [..., M] (``Split.rows``,
    holes -1 included) are rows marked in the forget mask ``forget`` [N]; a hole is not."""
    rows = np.asarray(rows)
    return np.asarray((np.asarray(forget)[np.maximum(rows, 0)] > 0.5) & (rows >= 0), dtype=bool)


def check_train_rows(task: Task, rows: Any) -> np.ndarray:
    """Checks per-model training rows for ``task``: int [S, M], each row of ``rows`` M
    distinct indices into the training split or holes (-1, ``Split.rows``), and the same
    number of forget rows among every model's rows (the counts are compiled in). Returns
    them as a host int32 array.

    Raises:
        ValueError: naming what is wrong.
    """
    host = np.asarray(rows)
    if host.ndim != 2 or host.shape[1] == 0:
        raise ValueError(f"training rows must have shape [models, rows] with rows >= 1, got {host.shape}")
    if not np.issubdtype(host.dtype, np.integer):
        raise ValueError(f"training rows must be integer indices, got dtype {host.dtype}")
    size = task.train.size
    if host.min() < -1 or host.max() >= size:
        raise ValueError(
            f"training rows must lie in [0, {size}) (or be -1, a hole), got indices from {host.min()} to {host.max()}"
        )
    ordered = np.sort(host, axis=1)
    repeats = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if np.any(repeats):
        bad = int(np.flatnonzero(np.any(repeats, axis=1))[0])
        raise ValueError(f"training rows of model {bad} repeat an index: each model's rows must be distinct")
    forget = np.count_nonzero(marked_rows(task.train.forget, host), axis=1)
    if np.any(forget != forget[0]):
        raise ValueError(
            f"every model's training rows must hold the same number of forget rows (it is compiled in); "
            f"got counts from {forget.min()} to {forget.max()}"
        )
    return host.astype(np.int32)


def standardise(
    x_train: np.ndarray, y_train: np.ndarray, *others: tuple[np.ndarray, np.ndarray], per_feature: bool = True
) -> tuple[list[tuple[np.ndarray, np.ndarray]], float, float]:
    """Standardise inputs and targets with statistics of the training rows only.

    Args:
        x_train: [N, ...] training inputs; y_train: [N] or [N, 1] training targets.
        *others: further (x, y) pairs (validation, test) transformed with the same statistics.
        per_feature: standardise each input feature separately (else one scalar mean/std).

    Returns:
        ([(x, y[N,1]) for train and each other pair], y_mean, y_std).
    """
    x_train = np.asarray(x_train, np.float32)
    axis = 0 if per_feature else None
    x_mean = x_train.mean(axis=axis, keepdims=per_feature)
    x_std = x_train.std(axis=axis, keepdims=per_feature)
    x_std = np.where(x_std > 0, x_std, 1.0)
    y_train = np.asarray(y_train, np.float64).reshape(-1)
    y_mean = float(y_train.mean())
    y_std = float(y_train.std()) or 1.0
    pairs = [(x_train, y_train)] + [
        (np.asarray(x, np.float32), np.asarray(y, np.float64).reshape(-1)) for x, y in others
    ]
    out = [
        (((x - x_mean) / x_std).astype(np.float32), ((y - y_mean) / y_std).astype(np.float32).reshape(-1, 1))
        for x, y in pairs
    ]
    return out, y_mean, y_std


def make_task(
    splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    y_mean: float,
    y_std: float,
    name: str,
) -> Task:
    """Builds a Task from host arrays {split: (x, y[N,1], forget_mask[N] bool)}, on device.

    Arrays are cast on the host and copied with ``device_put``: no XLA program runs, so bad
    input found later is still rejected before any compute.
    """

    def f32(a):
        return jax.device_put(np.asarray(a, np.float32))

    def to_split(x, y, forget):
        return Split(x=f32(x), y=f32(np.asarray(y).reshape(-1, 1)), forget=f32(np.asarray(forget, bool)))

    return Task(
        train=to_split(*splits["train"]),
        val=to_split(*splits["val"]),
        test=to_split(*splits["test"]),
        y_mean=f32(y_mean),
        y_std=f32(y_std),
        name=name,
    )
