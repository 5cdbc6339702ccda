"""Per-model training rows (``Split.rows``): every model of one call trains on its own rows
of one shared task (U-LiRA's shadows, SISA's shards), and each must equal a model trained
alone on a task that holds just those rows, in that order (the simple reference)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxunlearn.data.arrays import Split, check_train_rows
from jaxunlearn.runner import PipelineRunner
from jaxunlearn.seeds import LoopPlan, take_seeds
from jaxunlearn.study import seed_keys
from tests.helpers import TINY, build, tiny_model, tiny_task, with_

PLAN = LoopPlan(seed_strategy="map", epochs_per_call=None)
CFG = with_(TINY, seeds=2)


def gathered(task, rows: np.ndarray):
    """The reference: ``task`` whose training split holds only ``rows``, in that order."""
    train = task.train
    idx = np.asarray(rows)
    return task.replace(train=Split(x=train.x[idx], y=train.y[idx], forget=train.forget[idx]))


@pytest.fixture(scope="module")
def setup():
    """The tiny task and two models' rows: every retain row and one half of the forget
    rows each (complementary halves, like U-LiRA's pairs), in a shuffled order."""
    task = tiny_task()
    forget = np.asarray(task.train.forget) > 0.5
    retain, candidates = np.flatnonzero(~forget), np.flatnonzero(forget)
    rng = np.random.default_rng(0)
    even = candidates[: 2 * (candidates.size // 2)]
    first = even[rng.permutation(even.size)[: even.size // 2]]
    halves = [first, np.setdiff1d(even, first)]
    rows = np.stack([rng.permutation(np.concatenate([retain, h])) for h in halves]).astype(np.int32)
    model = tiny_model(task)
    keys = seed_keys(CFG.seed, 2, "original")
    original = PipelineRunner(build("original", model, task.with_train_rows(rows[0]), CFG, PLAN), PLAN)(
        keys, None, task, progress=False, rows=rows
    )
    return task, model, rows, original


def run_each_alone(stage, task, model, rows, original):
    """Seed s of ``stage`` on ``gathered(task, rows[s])``, one call per seed."""
    keys = seed_keys(CFG.seed, rows.shape[0], stage)
    out = []
    for s in range(rows.shape[0]):
        alone = gathered(task, rows[s])
        runner = PipelineRunner(build(stage, model, alone, CFG, PLAN), PLAN)
        start = None if original is None else take_seeds(original.state, np.array([s]))
        out.append(runner(keys[s : s + 1], start, alone, progress=False).state.params)
    return out


@pytest.mark.parametrize("stage", ["original", "retrain", "gaussian", "blindspot", "ssd"])
def test_each_model_trains_as_on_a_task_of_just_its_rows(setup, stage):
    task, model, rows, original = setup
    start = None if stage in ("original", "retrain") else original
    if stage == "original":
        together = original
    else:
        runner = PipelineRunner(build(stage, model, task.with_train_rows(rows[0]), CFG, PLAN), PLAN)
        together = runner(
            seed_keys(CFG.seed, 2, stage), None if start is None else start.state, task, progress=False, rows=rows
        )
    alone = run_each_alone(stage, task, model, rows, start)
    for s in range(2):
        mine = jax.tree_util.tree_map(lambda a, s=s: a[s], together.state.params)
        for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(alone[s]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[0], rtol=1e-5, atol=1e-6)
    # the two models saw different rows (and keys): they differ, so the check above is not trivial
    first, second = (jax.tree_util.tree_leaves(together.state.params)[0][s] for s in (0, 1))
    assert np.max(np.abs(np.asarray(first) - np.asarray(second))) > 1e-3


def test_a_row_set_reads_its_forget_and_retain_rows_in_order(setup):
    task, _, rows, _ = setup
    split = task.train.with_rows(rows[0])
    marked = np.asarray(task.train.forget)[rows[0]] > 0.5
    assert np.array_equal(split.host_indices("all"), rows[0])
    assert np.array_equal(split.host_indices("forget"), rows[0][marked])
    assert np.array_equal(split.host_indices("retain"), rows[0][~marked])
    for which in ("all", "forget", "retain"):
        expected = split.host_indices(which)
        assert np.array_equal(np.asarray(jax.jit(split.indices, static_argnums=(0, 1))(which, expected.size)), expected)
    assert task.with_train_rows(rows[0]).layout() != task.layout()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r[0], r"shape \[models, rows\]"),
        (lambda r: r.astype(np.float32), "integer indices"),
        (lambda r: np.where(r == r.max(), 10_000, r), r"lie in \[0, "),
        (lambda r: np.concatenate([r, r[:, :1]], axis=1), "repeat an index"),
        (lambda r: np.stack([r[0], np.sort(r[1])[::-1]]), None),  # another order is fine
    ],
)
def test_bad_training_rows_are_refused_before_anything_runs(setup, change, message):
    task, _, rows, _ = setup
    if message is None:
        check_train_rows(task, change(rows))
        return
    with pytest.raises(ValueError, match=message):
        check_train_rows(task, change(rows))


def test_rows_with_other_forget_counts_or_seed_counts_are_refused(setup):
    task, model, rows, _ = setup
    runner = PipelineRunner(build("retrain", model, task.with_train_rows(rows[0]), CFG, PLAN), PLAN)
    forget = np.flatnonzero(np.asarray(task.train.forget) > 0.5)
    unequal = rows.copy()  # model 1 trades a retain row for a forget row it did not hold
    unequal[1, np.flatnonzero(~np.isin(rows[1], forget))[0]] = np.setdiff1d(forget, rows[1])[0]
    with pytest.raises(ValueError, match="same number of forget rows"):
        runner(seed_keys(0, 2, "original"), None, task, progress=False, rows=unequal)
    with pytest.raises(ValueError, match="given for 2 models, the call runs 3 seeds"):
        runner(seed_keys(0, 3, "original"), None, task, progress=False, rows=rows)
    with pytest.raises(ValueError, match="built for a task with layout"):
        runner(seed_keys(0, 2, "original"), None, task, progress=False, rows=rows[:, :-1])
