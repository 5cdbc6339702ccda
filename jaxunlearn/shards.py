"""Running a sharded stage (the SISA unlearner) over S seeds.

Every seed's ensemble has ``count`` shard models; all of them, for all seeds, are one
batched axis of K * S models (slot k * S + s: seed k's shard s), each with its own
training rows (``Split.rows``) over the one task, so the slice stages compile once for
all shards and seeds. Unlearning turns the forget rows into holes and retrains, from the
state before the first slice that held a forget row, only the shards that held one;
every other shard keeps its model. The stage's cost (``StageResult.run``) is that
retraining only; training the ensemble in the first place is the SISA original's, as
the plain original's training is not charged to the other unlearners.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxunlearn.data.arrays import Task, marked_rows
from jaxunlearn.data.sharding import shard_rows, shard_task
from jaxunlearn.runner import StageResult
from jaxunlearn.seeds import LoopPlan, place_seeds, take_seeds
from jaxunlearn.unlearn.base import Pipeline, Shards

# run(pipeline, keys [T], original states [T] or None, task, rows [T, M], part name) -> StageResult
RunCalls = Callable[[Pipeline, jax.Array, Any, Task, np.ndarray, str], StageResult]


def fold(keys: jax.Array, tag: int) -> jax.Array:
    """Each key folded with ``tag``: one key stream per slice stage and purpose."""
    return jax.vmap(lambda k: jax.random.fold_in(k, tag))(keys)


def assignment(spec: Shards, train_rows: int, seeds: int, seed: int, first: int = 0) -> np.ndarray:
    """int32 [K * S, R * L]: every slot's shard rows, slot k * S + s holding seed
    ``first`` + k's shard s (that seed's assignment is drawn from (``seed``, its index))."""
    return np.concatenate(
        [shard_rows(train_rows, spec.count, spec.slices, seed, k) for k in range(first, first + seeds)]
    )


def own_shards(spec: Shards, rows: np.ndarray, seed: int, first: int = 0) -> np.ndarray:
    """int32 [K * S, R * L]: ``assignment`` of each seed's own rows ``rows`` [K, M]: the
    shards partition seed k's M rows (positions drawn as ``assignment`` draws rows)."""
    positions = assignment(spec, rows.shape[1], rows.shape[0], seed, first)
    owner = np.repeat(np.asarray(rows), spec.count, axis=0)
    picked = np.take_along_axis(owner, np.maximum(positions, 0), axis=1)
    return np.where(positions >= 0, picked, -1).astype(np.int32)


def first_forget_slice(rows: np.ndarray, forget: np.ndarray, spec: Shards) -> np.ndarray:
    """int [T]: per slot, the first slice (1-based) holding a forget row, 0 for none."""
    per_slice = np.any(marked_rows(forget, rows).reshape(rows.shape[0], spec.slices, spec.slice_length), axis=2)
    return np.where(np.any(per_slice, axis=1), np.argmax(per_slice, axis=1) + 1, 0)


def run_sharded(
    spec: Shards,
    task: Task,
    seeds: int,
    seed: int,
    keys: jax.Array,
    run: RunCalls,
    plan: LoopPlan,
    log: Any = print,
    first: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[StageResult, StageResult]:
    """Trains the SISA ensembles of ``seeds`` seeds, then unlearns ``task``'s forget rows.

    Args:
        spec: the stage's ``Pipeline.shards``; task: the task (its forget rows are the
            deletion request); seeds: K; seed: the study's root seed (the assignment's);
        keys: [K * S] keys, one per shard model; run: runs one pipeline over some slots
            (the study's chunked, checkpointed runner); plan: how the slots are laid out;
        first: the index of the first seed (an evaluation's block of seeds);
        rows: None (every seed shards the task's training rows), or int [K, M]: seed k
            shards its own rows ``rows[k]`` (``Split.rows``; U-LiRA's shadows).

    Returns:
        (the ensembles after unlearning, as trained): StageResults over K * S slots with
        ``members`` = S. The first's times are the retraining's only; its history holds,
        per seed [K, 1], "shards_retrained", "slices_retrained" (shard-slices trained
        again) and "ensemble_training_s" (the ensembles' training, all seeds, after
        compiling: what SISA paid before any request), and its
        ``diverged_at`` [K, 1] the first step at which any retrained
        shard diverged (-1: none).
    """
    base = shard_task(task)
    rows = (
        assignment(spec, task.train.size, seeds, seed, first) if rows is None else own_shards(spec, rows, seed, first)
    )
    forget = np.asarray(task.train.forget)
    length = spec.slice_length
    # The ensembles as trained: slice stage r on slices 1..r, from stage r - 1's states.
    trained: list[StageResult] = []
    for r, pipeline in enumerate(spec.stages):
        before = trained[-1].state if trained else None
        part = f"shards-slice{r + 1}"
        trained.append(run(pipeline, fold(keys, 2 * r), before, base, rows[:, : (r + 1) * length], part))
    original = _combine(trained, spec)
    # Unlearning: forget rows become holes; a shard whose first such slice is r0 trains
    # stages r0..R again from stage r0 - 1's state (from scratch when r0 = 1).
    first_slice = first_forget_slice(rows, forget, spec)
    holed = np.where(marked_rows(forget, rows), -1, rows).astype(np.int32)
    final = trained[-1].state  # retrained slots replaced below (functionally: nothing is overwritten)
    retrained: list[StageResult] = []
    diverged = np.full(seeds * spec.count, -1, np.int64)
    for r0 in range(1, spec.slices + 1):
        slots = np.flatnonzero(first_slice == r0)
        if slots.size == 0:
            continue
        state = None if r0 == 1 else take_seeds(trained[r0 - 2].state, slots)
        for r in range(r0 - 1, spec.slices):
            part = f"unlearn-from{r0}-slice{r + 1}"
            slot_keys = fold(take_seeds(keys, slots), 2 * r + 1)
            result = run(spec.stages[r], slot_keys, state, base, holed[slots, : (r + 1) * length], part)
            retrained.append(result)
            state = result.state
            hit = (np.asarray(result.diverged_at)[:, 0] >= 0) & (diverged[slots] < 0)
            diverged[slots[hit]] = np.asarray(result.diverged_at)[hit, 0]
        final = _put(final, slots, state)
    per_seed = (first_slice > 0).reshape(seeds, spec.count)
    slices_again = np.where(first_slice > 0, spec.slices - first_slice + 1, 0).reshape(seeds, spec.count)
    seeds_diverged = diverged.reshape(seeds, spec.count)
    worst = np.where(
        (seeds_diverged >= 0).any(axis=1), np.where(seeds_diverged >= 0, seeds_diverged, 2**62).min(axis=1), -1
    )
    log(
        f"{spec.stages[0].name}: {int(per_seed.sum())} of {per_seed.size} shard models retrained "
        f"({per_seed.sum(axis=1).mean():.2f} of {spec.count} per seed)"
    )
    unlearned = StageResult(
        state=place_seeds(final, plan),
        history={
            "shards_retrained": per_seed.sum(axis=1, keepdims=True).astype(np.float64),
            "slices_retrained": slices_again.sum(axis=1, keepdims=True).astype(np.float64),
            "ensemble_training_s": np.full((seeds, 1), original.run),
        },
        wall=sum(r.wall for r in retrained),
        compile=sum(r.compile for r in retrained),
        run=sum(r.run for r in retrained),
        diverged_at=worst[:, None].astype(np.int64),
        phase_names=("retrain shards",),
        members=spec.count,
        aggregate=spec.aggregate,
    )
    return unlearned, original


def _put(tree: Any, slots: np.ndarray, values: Any) -> Any:
    """``tree`` [T, ...] with slots ``slots`` replaced by ``values`` [len(slots), ...]."""
    return jax.tree_util.tree_map(lambda a, v: a.at[slots].set(v), tree, values)


def _combine(trained: list[StageResult], spec: Shards) -> StageResult:
    """The ensembles as trained: the last slice stage's states, every stage's time."""
    last = trained[-1]
    return dataclasses.replace(
        last,
        wall=sum(r.wall for r in trained),
        compile=sum(r.compile for r in trained),
        run=sum(r.run for r in trained),
        members=spec.count,
        aggregate=spec.aggregate,
    )


def aggregate_predictions(preds: np.ndarray, members: int, aggregate: str) -> np.ndarray:
    """[K * S, N] member predictions -> [K, N] ensemble predictions (mean or median over
    each seed's S members); unchanged for ``members`` = 1."""
    if members == 1:
        return preds
    grouped = preds.reshape(preds.shape[0] // members, members, *preds.shape[1:])
    return np.median(grouped, axis=1) if aggregate == "median" else grouped.mean(axis=1)
