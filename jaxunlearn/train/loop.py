"""The compiled training loop shared by training, retraining and every unlearner.

A ``Fit`` is built once per (model, config, batch loss, task) and offers pure single-seed
functions: ``init_carry`` -> ``run_epochs`` (any number of times) -> ``finish``, and ``run``
which chains them in one trace. Inside an epoch the rows are permuted with a key folded
from the epoch number, cut into a static [num_batches, batch_size] index matrix (the last
batch padded with zero-weight rows), and the steps run in ``lax.scan``. Losses are masked
means, so no shape depends on data. Under ``LoopPlan.rows_as_data`` the index matrix has
room for every used row and the steps run in a loop over the first ``ceil(count / B)``
batches, ``count`` (the retain or forget set's size) being data: one program then serves
every forget set of the task, with the steps of a program compiled for the count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxunlearn.data.arrays import Split, Task
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.contract import model_key
from jaxunlearn.train.losses import get_loss, masked_mean
from jaxunlearn.train.state import ModelFns, TrainState, get_learning_rate, make_optimizer, set_learning_rate

# batch_loss(params, batch_stats, batch, key, hp, aux) -> (scalar loss, new batch_stats)
BatchLoss = Callable[..., tuple[jax.Array, Any]]

ROW_SETS = ("all", "retain", "forget")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Static settings of one training phase.

    Attributes:
        epochs: passes over the chosen rows.
        batch_size: rows per step.
        rows: which training rows an epoch visits: "all", "retain" or "forget".
        loss: elementwise loss name ("l1", "mse", "quantile") for validation.
        validate_on: validation rows for the plateau schedule / best weights
            ("all", "retain", "forget"), or None for no validation.
        plateau: reduce the learning rate x0.1 after 10 epochs without validation
            improvement (PyTorch ReduceLROnPlateau defaults).
        keep_best: return the weights of the best validation epoch (else the last).
        augment_pad: > 0 turns on image augmentation: random crop after zero padding by
            this many pixels, and random horizontal flips (inputs [B, H, W, C]).
        lr_key: the key in ``hp`` holding this phase's learning rate.
    """

    epochs: int
    batch_size: int = 256
    rows: str = "all"
    loss: str = "l1"
    validate_on: str | None = None
    plateau: bool = False
    keep_best: bool = False
    augment_pad: int = 0
    lr_key: str = "lr"

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.rows not in ROW_SETS:
            raise ValueError(f"rows must be one of {ROW_SETS}, got {self.rows!r}")
        if self.validate_on not in (*ROW_SETS, None):
            raise ValueError(f"validate_on must be one of {ROW_SETS} or None, got {self.validate_on!r}")
        if (self.plateau or self.keep_best) and self.validate_on is None:
            raise ValueError("plateau / keep_best need validate_on")
        get_loss(self.loss)


@struct.dataclass
class FitCarry:
    """Per-seed loop state between epochs.

    ``diverged_at`` is -1 while every step gave a finite loss and finite parameters; after
    the first step that did not, it holds that step's number in the phase, and the seed's
    state stays frozen at its last finite value (other seeds are unaffected).
    """

    state: TrainState
    best_params: Any
    best_batch_stats: Any
    best_val: jax.Array
    plateau: Any
    key: jax.Array
    diverged_at: jax.Array

    if TYPE_CHECKING:  # struct.dataclass adds it at run time; declared for type checkers only

        def replace(self, **changes: Any) -> Self: ...


def row_weights(forget: jax.Array, which: str) -> jax.Array:
    """[N] float weights selecting "all", "retain" or "forget" rows from a forget mask."""
    if which == "all":
        return jnp.ones_like(forget)
    return forget if which == "forget" else 1.0 - forget


def _shuffle_rounds(n: int) -> int:
    """The number of sort rounds ``jax.random.permutation`` makes for ``n`` elements."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


def _round_thresholds(size: int) -> list[int]:
    """For each sort round r that a permutation of ``size`` elements makes: the largest
    count that makes at most r rounds (a count above it makes round r)."""
    out = []
    for r in range(_shuffle_rounds(size)):
        lo, hi = 0, size
        while lo < hi:  # the round count grows with n: bisect for the last n with <= r rounds
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if _shuffle_rounds(mid) <= r else (lo, mid - 1)
        out.append(lo)
    return out


def prefix_permutation(key: jax.Array, size: int, count: jax.Array) -> jax.Array:
    """int32 [size]: its first ``count`` entries are ``jax.random.permutation(key, count)``
    bit for bit, the rest are ``count .. size-1`` in some order. ``count`` may be traced
    (0 <= count <= size), so one program serves every count.

    The same sort rounds as ``jax.random.permutation``: each sorts by fresh random bits,
    which threefry draws position by position (element i's bits do not depend on the
    length), with the padding positions sorted last by a first key; a round runs only for
    the counts whose permutation makes it.
    """
    if not getattr(jax.config, "jax_threefry_partitionable"):  # noqa: B009 (jax types no such attribute)
        raise RuntimeError(
            "prefix_permutation needs jax_threefry_partitionable (JAX's default): without it a "
            "position's random bits depend on the array's length"
        )
    x = jnp.arange(size, dtype=jnp.int32)
    padding = (x >= count).astype(jnp.int32)
    for threshold in _round_thresholds(size):
        key, subkey = jax.random.split(key)
        bits = jax.random.bits(subkey, (size,), jnp.uint32)
        _, _, shuffled = jax.lax.sort((padding, bits, x), num_keys=2, is_stable=True)
        x = jnp.where(count > threshold, shuffled, x)
    return x


def epoch_batches(
    key: jax.Array, rows: jax.Array, batch_size: int, count: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Shuffles ``rows`` [M] into an index matrix [ceil(M/B), B] and weights [ceil(M/B), B].

    The last batch is padded with row ``rows[0]`` at weight 0. With ``count`` (a traced
    int32 scalar), only ``rows[:count]`` are the epoch's rows: they are shuffled as
    ``count`` rows alone would be (bit for bit), and every position from ``count`` on is
    padding (``rows[0]`` at weight 0), so the first ``ceil(count/B)`` batches are those of
    ``rows[:count]``.
    """
    rows = jnp.asarray(rows)
    m = rows.shape[0]
    nb = -(-m // batch_size)
    pad = nb * batch_size - m
    if count is None:
        perm = rows[jax.random.permutation(key, m)]
        real = jnp.ones((m,), jnp.float32)
    else:
        real = (jnp.arange(m) < count).astype(jnp.float32)
        perm = jnp.where(real > 0, rows[prefix_permutation(key, m, count)], rows[0])
    idx = jnp.concatenate([perm, jnp.full((pad,), rows[0], rows.dtype)]).reshape(nb, batch_size)
    w = jnp.concatenate([real, jnp.zeros((pad,), jnp.float32)]).reshape(nb, batch_size)
    return idx, w


def row_set(split: Split, which: str, count: int, plan: LoopPlan) -> tuple[jax.Array, jax.Array | None]:
    """A phase's rows of ``split`` under ``plan`` (traced): ``which`` ("all", "retain",
    "forget") of size ``count`` on the host. Counts in the program: (int32 [count], None);
    rows as data: int32 [used] whose first entries are the rows, and their number (int32
    scalar; None for "all"), for ``epoch_batches`` and ``scan_batches``."""
    if plan.counts_in_program:
        return split.indices(which, count), None
    return split.padded_indices(which)


def scan_batches(
    step: Callable[[Any, Any], tuple[Any, Any]],
    start: Any,
    batches: Any,
    count: jax.Array | None,
    batch_size: int,
    plan: LoopPlan,
    outputs: Any = None,
) -> tuple[Any, Any]:
    """``lax.scan(step, start, batches)`` over ``epoch_batches``' batches (leaves [nb, ...]).

    With ``count`` (rows as data) only the first ``ceil(count / batch_size)`` batches run, in
    a loop whose trip count is data; ``outputs`` (zeros [nb, ...] shaped like the stacked
    outputs of ``step``, or None when it outputs None) holds theirs, the rest stay zero.
    Returns (final carry, stacked outputs).
    """
    if count is None:
        nb = jax.tree_util.tree_leaves(batches)[0].shape[0]
        return jax.lax.scan(step, start, batches, unroll=nb if plan.unroll is True else plan.unroll)

    def numbered_step(i, carry_and_outputs):
        carry, stacked = carry_and_outputs
        carry, out = step(carry, jax.tree_util.tree_map(lambda a: a[i], batches))
        return carry, jax.tree_util.tree_map(lambda buffer, value: buffer.at[i].set(value), stacked, out)

    steps = (count + batch_size - 1) // batch_size
    return jax.lax.fori_loop(0, steps, numbered_step, (start, outputs))


def augment_images(key: jax.Array, x: jax.Array, pad: int) -> jax.Array:
    """Random crop after zero padding by ``pad`` pixels, plus random horizontal flip.

    x: [B, H, W, C] -> [B, H, W, C]; one crop offset and flip per row.
    """
    if x.ndim != 4:
        raise ValueError(f"image augmentation needs inputs [B, H, W, C], got {x.shape}")
    b, h, w, c = x.shape
    k_off, k_flip = jax.random.split(key)
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(k_off, (b, 2), 0, 2 * pad + 1)
    crop = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(padded, offsets)
    flip = jax.random.bernoulli(k_flip, 0.5, (b,))
    return jnp.where(flip[:, None, None, None], crop[:, :, ::-1, :], crop)


def all_finite(tree: Any) -> jax.Array:
    """Scalar bool: every element of every floating leaf of ``tree`` is finite."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def guard_divergence(old: TrainState, new: TrainState, loss: jax.Array, diverged_at: jax.Array):
    """Keeps ``old`` once a step's loss or new parameters are not finite.

    Args:
        old, new: the state before and after one step; loss: that step's scalar loss.
        diverged_at: int32 scalar, -1 until the first non-finite step, then its number.

    Returns:
        ((state to continue from, updated diverged_at), loss).
    """
    bad = ~(jnp.isfinite(loss) & all_finite((new.params, new.batch_stats)))
    diverged_at = jnp.where((diverged_at < 0) & bad, old.step, diverged_at)
    frozen = diverged_at >= 0
    state = jax.tree_util.tree_map(lambda n, o: jnp.where(frozen, o, n), new, old)
    return (state, diverged_at), loss


def map_chunks(fn: Callable[[jax.Array], Any], x: jax.Array, plan: LoopPlan) -> Any:
    """``fn`` over ``x`` [N, ...] in chunks of ``plan.eval_chunk`` rows (the last one
    zero-padded); ``fn`` maps [C, ...] to a pytree of [C, ...] arrays. Returns that pytree
    with N rows."""
    n = x.shape[0]
    chunk = min(plan.eval_chunk, n)
    nc = -(-n // chunk)
    xp = jnp.concatenate([x, jnp.zeros((nc * chunk - n, *x.shape[1:]), x.dtype)]).reshape(nc, chunk, *x.shape[1:])
    _, out = jax.lax.scan(lambda _, xc: (None, fn(xc)), None, xp, unroll=nc if plan.unroll is True else 1)
    return jax.tree_util.tree_map(lambda a: a.reshape(nc * chunk, *a.shape[2:])[:n], out)


def predict(model: ModelFns, params: Any, batch_stats: Any, x: jax.Array, plan: LoopPlan) -> jax.Array:
    """Inference-mode predictions for a whole split, ``plan.eval_chunk`` rows at a time.

    x: [N, ...] -> [N, 1] float32.
    """
    return map_chunks(lambda xc: model.apply_eval(params, batch_stats, xc)[0], x, plan)


def supervised_loss(model: ModelFns, loss_name: str) -> BatchLoss:
    """The plain training objective: masked mean of the elementwise loss on the batch."""
    loss_fn = get_loss(loss_name)

    def batch_loss(params, batch_stats, batch, key, hp, aux):
        del hp, aux
        pred, _, new_stats = model.apply_train(params, batch_stats, batch["x"], batch["w"] > 0, model_key(key))
        return masked_mean(loss_fn(pred, batch["y"]), batch["w"]), new_stats

    return batch_loss


class Fit:
    """One training phase for one task; all methods are pure single-seed functions.

    Args:
        model: the model's pure functions.
        cfg: static settings.
        batch_loss: the objective of one step (see ``BatchLoss``).
        task: the task whose training rows ``cfg.rows`` selects (their count is static).
        plan: execution plan (scan unrolling, evaluation chunk).

    ``aux`` (per-seed extras) may hold "y" [N, 1] to replace the training targets (the
    Gaussian relabelling) and anything the batch loss needs (e.g. a proxy model).
    """

    # run_epochs returns its carry in the same structure, so the runner donates it (one copy
    # of the model and its Adam moments per call, not two)
    donates_carry = True

    def __init__(self, model: ModelFns, cfg: FitConfig, batch_loss: BatchLoss, task: Task, plan: LoopPlan):
        self.model, self.cfg, self.batch_loss, self.plan = model, cfg, batch_loss, plan
        self.row_count = self.check_rows(task)  # which rows, and with ``rows_as_data`` how many, is read at run time
        # The static length of the phase's row list: its count compiled in, or room for every used row.
        self.counts_in_program = plan.counts_in_program or cfg.rows == "all"
        self.row_slots = self.row_count if self.counts_in_program else task.train.used
        self.num_batches = -(-self.row_slots // cfg.batch_size)  # the index matrix's batches
        self.steps_per_epoch = -(-self.row_count // cfg.batch_size)  # the steps an epoch of ``task`` runs
        self.optimizer = make_optimizer()
        # PyTorch's ReduceLROnPlateau(patience=10) cuts after the 11th bad epoch; optax's after the patience-th.
        self.plateau = optax.contrib.reduce_on_plateau(patience=11)
        self.eval_loss = get_loss(cfg.loss)

    def check_rows(self, task: Task) -> int:
        """The number of ``task``'s training rows this phase visits; raises ValueError when
        there are none or fewer than a batch."""
        count = int(task.train.host_indices(self.cfg.rows).size)
        if count == 0:
            raise ValueError(f"the training {self.cfg.rows!r} rows are empty")
        if self.cfg.batch_size > count:
            # The set is every row for the original (the retain rows of a task without forget rows).
            which = "" if count == task.train.used else f" {self.cfg.rows!r}"
            raise ValueError(
                f"batch_size {self.cfg.batch_size} is larger than the {count} training{which} rows; "
                f"use batch_size <= {count}"
            )
        return count

    def row_indices(self, task: Task) -> tuple[jax.Array, jax.Array | None]:
        """The phase's training rows of ``task`` (traced): int32 [row_slots], and how many of
        them are the rows (an int32 scalar; None when all are)."""
        return row_set(task.train, self.cfg.rows, self.row_count, self.plan)

    def init_carry(self, key: jax.Array, state: TrainState, hp: dict) -> FitCarry:
        """Starts the phase from ``state`` at learning rate hp[lr_key]."""
        state = state.replace(opt_state=set_learning_rate(state.opt_state, hp[self.cfg.lr_key]))
        plateau = self.plateau.init(jnp.zeros((), jnp.float32))
        return FitCarry(
            state,
            state.params,
            state.batch_stats,
            jnp.asarray(jnp.inf, jnp.float32),
            plateau,
            key,
            jnp.asarray(-1, jnp.int32),
        )

    def validation_loss(self, state: TrainState, task: Task) -> jax.Array:
        assert self.cfg.validate_on is not None, "validation_loss needs FitConfig.validate_on"
        pred = predict(self.model, state.params, state.batch_stats, task.val.x, self.plan)
        return masked_mean(self.eval_loss(pred, task.val.y), row_weights(task.val.forget, self.cfg.validate_on))

    @staticmethod
    def gather(task: Task, aux: Any, idx: jax.Array, w: jax.Array) -> dict:
        """The batch of training rows ``idx`` [B] with weights ``w`` [B]: x, y [B, 1], w, forget [B]."""
        targets = aux["y"] if isinstance(aux, dict) and "y" in aux else task.train.y
        return {"idx": idx, "x": task.train.x[idx], "y": targets[idx], "w": w, "forget": task.train.forget[idx]}

    def step(self, state: TrainState, batch: dict, key: jax.Array, hp: dict, aux: Any):
        """One optimizer step on ``batch``; returns (new state, loss)."""
        k_aug, k_loss = jax.random.split(key)
        if self.cfg.augment_pad > 0:
            batch = dict(batch, x=augment_images(k_aug, batch["x"], self.cfg.augment_pad))
        grad_fn = jax.value_and_grad(self.batch_loss, has_aux=True)
        (loss, new_stats), grads = grad_fn(state.params, state.batch_stats, batch, k_loss, hp, aux)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, new_stats, opt_state), loss

    def _epoch(self, carry: FitCarry, epoch: jax.Array, task: Task, hp: dict, aux: Any):
        cfg = self.cfg
        k_perm, k_steps = jax.random.split(jax.random.fold_in(carry.key, epoch))
        rows, count = self.row_indices(task)
        idx, w = epoch_batches(k_perm, rows, cfg.batch_size, count)
        if task.train.rows is not None:  # holes (-1) in a model's row list train at weight 0
            w, idx = jnp.where(idx >= 0, w, 0.0), jnp.maximum(idx, 0)

        def step(state_and_flag, inputs):
            state, diverged_at = state_and_flag
            idx_b, w_b, key = inputs
            new_state, loss = self.step(state, self.gather(task, aux, idx_b, w_b), key, hp, aux)
            return guard_divergence(state, new_state, loss, diverged_at)

        keys = jax.random.split(k_steps, self.num_batches)  # a prefix of the keys of fewer batches
        (state, diverged_at), losses = scan_batches(
            step,
            (carry.state, carry.diverged_at),
            (idx, w, keys),
            count,
            cfg.batch_size,
            self.plan,
            outputs=jnp.zeros((self.num_batches,), jnp.float32),
        )
        # With rows as data this mean may differ in its last bit (a longer sum, fused otherwise).
        train_loss = jnp.sum(losses * w.sum(axis=1)) / w.sum()
        carry = carry.replace(state=state, diverged_at=diverged_at)
        val = jnp.asarray(jnp.nan, jnp.float32)
        if cfg.validate_on is not None:
            val = self.validation_loss(state, task)
            if cfg.keep_best:
                better = val < carry.best_val

                def pick(new, old):
                    return jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), new, old)

                carry = carry.replace(
                    best_params=pick(state.params, carry.best_params),
                    best_batch_stats=pick(state.batch_stats, carry.best_batch_stats),
                    best_val=jnp.minimum(val, carry.best_val),
                )
            if cfg.plateau:
                _, plateau = self.plateau.update({}, carry.plateau, value=val)
                lr = hp[cfg.lr_key] * plateau.scale
                state = state.replace(opt_state=set_learning_rate(state.opt_state, lr))
                carry = carry.replace(state=state, plateau=plateau)
        history = {
            "train_loss": train_loss,
            "val_loss": val,
            "lr": get_learning_rate(carry.state.opt_state),
            "diverged_at": carry.diverged_at,
        }
        return carry, history

    def run_epochs(self, carry: FitCarry, epochs: jax.Array, task: Task, hp: dict, aux: Any):
        """Runs the epochs numbered ``epochs`` [k]; returns (carry, history of [k] arrays)."""
        if epochs.shape[0] == 1:  # no loop at all: XLA:CPU runs conv steps 10x slower inside loops
            carry, hist = self._epoch(carry, epochs[0], task, hp, aux)
            return carry, jax.tree_util.tree_map(lambda a: a[None], hist)
        return jax.lax.scan(lambda c, e: self._epoch(c, e, task, hp, aux), carry, epochs)

    def finish(self, carry: FitCarry) -> TrainState:
        """The phase's result: best-validation weights if ``keep_best``, else the last."""
        if self.cfg.keep_best:
            return carry.state.replace(params=carry.best_params, batch_stats=carry.best_batch_stats)
        return carry.state

    def run(self, key: jax.Array, state: TrainState, task: Task, hp: dict, aux: Any = None):
        """The whole phase in one trace (single seed): returns (state, history [epochs])."""
        carry = self.init_carry(key, state, hp)
        carry, history = self.run_epochs(carry, jnp.arange(self.cfg.epochs), task, hp, aux)
        return self.finish(carry), history
