"""Tests for the pure helpers of jaxunlearn.train.loop and the plateau / keep-best logic of Fit.

Keys come from the cheap ``unsafe_rbg`` PRNG (threefry compiles slowly on a small CPU).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.data.sources import build_task, make_synthetic
from jaxunlearn.models import make_model
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.train.loop import (
    Fit,
    FitConfig,
    augment_images,
    epoch_batches,
    predict,
    prefix_permutation,
    row_weights,
    supervised_loss,
)
from jaxunlearn.train.state import ModelFns


def _key(seed):
    return jax.random.key(seed, impl="unsafe_rbg")


# --------------------------------------------------------------------------- epoch_batches

ROWS = np.array([3, 5, 8, 11, 12, 20, 21, 30, 31, 40], np.int32)  # M = 10, not contiguous


@pytest.mark.parametrize("batch_size", [4, 5, 10, 16])
def test_epoch_batches_cover_rows_once(batch_size):
    idx, w = (np.asarray(a) for a in epoch_batches(_key(0), jnp.asarray(ROWS), batch_size))
    m = ROWS.size
    nb = -(-m // batch_size)
    assert idx.shape == (nb, batch_size) and w.shape == (nb, batch_size)
    assert w.dtype == np.float32
    assert set(np.unique(w)) <= {0.0, 1.0}
    real = idx[w == 1.0]
    assert real.size == m
    np.testing.assert_array_equal(np.sort(real), np.sort(ROWS))  # each row exactly once
    # padding: the trailing nb * B - M slots, weight 0
    flat_w = w.reshape(-1)
    np.testing.assert_array_equal(flat_w, np.r_[np.ones(m), np.zeros(nb * batch_size - m)])
    assert np.all(np.isin(idx[w == 0.0], ROWS))


def test_epoch_batches_order_depends_on_key_only():
    rows = jnp.asarray(ROWS)
    a = np.asarray(epoch_batches(_key(0), rows, 4)[0])
    a2 = np.asarray(epoch_batches(_key(0), rows, 4)[0])
    b = np.asarray(epoch_batches(_key(1), rows, 4)[0])
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a, b)
    # and the order is actually shuffled for at least one of the keys
    assert not (np.array_equal(a.reshape(-1)[:10], ROWS) and np.array_equal(b.reshape(-1)[:10], ROWS))


@pytest.mark.parametrize("key", [jax.random.key(3), jax.random.PRNGKey(8)], ids=["typed", "raw"])
def test_prefix_permutation_is_the_permutation_of_its_count(key):
    """One program over 1,700 slots gives, for every count, jax.random.permutation(key, count)
    bit for bit, across the size (1,625 -> 1,626) where the permutation adds a sort round."""
    traces = []
    run = jax.jit(lambda k, c: traces.append(None) or prefix_permutation(k, 1700, c))
    for count in (1, 2, 3, 777, 1625, 1626, 1699, 1700):
        got = np.asarray(run(key, jnp.int32(count)))
        np.testing.assert_array_equal(got[:count], np.asarray(jax.random.permutation(key, count)))
        np.testing.assert_array_equal(np.sort(got[count:]), np.arange(count, 1700))
    assert len(traces) == 1


@pytest.mark.parametrize("batch_size", [4, 5, 16])
def test_epoch_batches_with_a_count_are_the_batches_of_the_first_count_rows(batch_size):
    rows = jnp.asarray(np.r_[ROWS, [50, 51, 52]])  # three more slots than the 10 rows
    idx, w = epoch_batches(_key(0), rows, batch_size, jnp.int32(10))
    ref_idx, ref_w = epoch_batches(_key(0), jnp.asarray(ROWS), batch_size)
    nb = ref_idx.shape[0]
    np.testing.assert_array_equal(np.asarray(idx)[:nb], np.asarray(ref_idx))
    np.testing.assert_array_equal(np.asarray(w)[:nb], np.asarray(ref_w))
    assert not np.asarray(w)[nb:].any()


def test_rows_as_data_trains_bit_for_bit_as_a_count_in_the_program():
    """The retain and forget phases, batch sizes that do not divide the sets: the same
    weights, validation curve and divergence flags with the count as data as with the count
    compiled in (the epoch's train loss only to its last bits: a longer sum of zeros)."""
    task = build_task(make_synthetic(n=200))
    fns = ModelFns(make_model("mlp", hidden=(8,)), task.input_shape)
    state = fns.fresh_state(jax.random.key(0), 1e-3)
    for rows, batch_size in (("retain", 16), ("forget", 7)):
        out = []
        for plan in (LoopPlan(rows_as_data=False), LoopPlan()):
            cfg = FitConfig(epochs=3, batch_size=batch_size, rows=rows, validate_on="all")
            fit = Fit(fns, cfg, supervised_loss(fns, "l1"), task, plan)
            out.append(jax.jit(fit.run)(jax.random.key(1), state, task, {"lr": jnp.float32(1e-3)}))
        (static, static_hist), (data, data_hist) = out
        for a, b in zip(jax.tree_util.tree_leaves(static.params), jax.tree_util.tree_leaves(data.params), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for name in ("val_loss", "diverged_at", "lr"):
            np.testing.assert_array_equal(np.asarray(static_hist[name]), np.asarray(data_hist[name]))
        np.testing.assert_allclose(static_hist["train_loss"], data_hist["train_loss"], rtol=1e-6)


def test_row_weights():
    f = jnp.asarray([0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(row_weights(f, "all")), [1, 1, 1, 1])
    np.testing.assert_array_equal(np.asarray(row_weights(f, "forget")), [0, 1, 1, 0])
    np.testing.assert_array_equal(np.asarray(row_weights(f, "retain")), [1, 0, 0, 1])


# --------------------------------------------------------------------------- augment_images

IMG = np.random.default_rng(0).uniform(1.0, 2.0, size=(16, 4, 4, 2)).astype(np.float32)  # no zeros


def test_augment_pad_zero_is_identity_or_flip():
    out = np.asarray(augment_images(_key(3), jnp.asarray(IMG), 0))
    assert out.shape == IMG.shape
    flipped = []
    for b in range(IMG.shape[0]):
        same = np.array_equal(out[b], IMG[b])
        flip = np.array_equal(out[b], IMG[b, :, ::-1, :])
        assert same or flip, b
        flipped.append(flip and not same)
    assert 0 < sum(flipped) < IMG.shape[0]  # both cases occur for this key


def _crops(img, pad):
    h, w = img.shape[:2]
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    for i in range(2 * pad + 1):
        for j in range(2 * pad + 1):
            c = padded[i : i + h, j : j + w]
            yield (i, j, False), c
            yield (i, j, True), c[:, ::-1]


@pytest.mark.parametrize("pad", [1, 2])
def test_augment_rows_are_crops_of_padded_input(pad):
    out = np.asarray(augment_images(_key(4), jnp.asarray(IMG), pad))
    assert out.shape == IMG.shape and out.dtype == np.float32
    found = []
    for b in range(IMG.shape[0]):
        matches = [tag for tag, c in _crops(IMG[b], pad) if np.array_equal(out[b], c)]
        assert matches, f"row {b} is not a (flipped) crop of the zero-padded input"
        found.append(matches[0])
    offsets = {(i, j) for i, j, _ in found}
    assert len(offsets) > 1  # crops actually vary across rows
    assert any(tag[:2] != (pad, pad) for tag in found)  # some row is shifted


def test_augment_needs_4d():
    with pytest.raises(ValueError, match="B, H, W, C"):
        augment_images(_key(0), jnp.asarray(IMG[..., 0]), 1)


# --------------------------------------------------------------------------- predict


@functools.cache
def _mlp():
    fns = ModelFns(make_model("mlp", hidden=(8,)), (3,))
    params, stats = fns.init(_key(0))
    return fns, params, stats


X10 = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "plan",
    [LoopPlan(eval_chunk=4), LoopPlan(eval_chunk=4, unroll=True), LoopPlan(eval_chunk=10), LoopPlan()],
    ids=["chunk4", "chunk4-unrolled", "chunk10", "chunk1024"],
)
def test_predict_chunked_equals_one_pass(plan):
    fns, params, stats = _mlp()
    out = np.asarray(predict(fns, params, stats, jnp.asarray(X10), plan))
    ref = np.asarray(fns.apply_eval(params, stats, jnp.asarray(X10))[0])
    assert out.shape == (10, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    # independent numpy forward pass of Dense -> ReLU -> Dense
    p = jax.tree_util.tree_map(np.asarray, params)
    h = np.maximum(X10 @ p["dense_0"]["kernel"] + p["dense_0"]["bias"], 0.0)
    np.testing.assert_allclose(out, h @ p["head"]["kernel"] + p["head"]["bias"], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- FitConfig


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs"),
        (dict(epochs=-1), "epochs"),
        (dict(epochs=1, batch_size=0), "batch_size"),
        (dict(epochs=1, rows="train"), "rows"),
        (dict(epochs=1, validate_on="test"), "validate_on"),
        (dict(epochs=1, plateau=True), "validate_on"),
        (dict(epochs=1, keep_best=True), "validate_on"),
        (dict(epochs=1, loss="huber"), "huber"),
    ],
)
def test_fit_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FitConfig(**kwargs)


def test_fit_config_valid():
    cfg = FitConfig(epochs=2, batch_size=8, rows="retain", validate_on="forget", plateau=True, keep_best=True)
    assert cfg.rows == "retain" and cfg.plateau


# --------------------------------------------------------------------------- Fit: plateau + keep_best


@functools.cache
def _fit():
    task = build_task(make_synthetic(n=200))
    fns = ModelFns(make_model("mlp", hidden=(8,)), task.input_shape)
    cfg = FitConfig(epochs=13, batch_size=32, rows="all", validate_on="all", plateau=True, keep_best=True)
    fit = Fit(fns, cfg, supervised_loss(fns, "l1"), task, LoopPlan())
    state = fns.fresh_state(_key(0), 0.0)
    return task, fns, fit, state, jax.jit(fit.run)


def _run(lr):
    task, _, _, state, run = _fit()
    final, hist = run(_key(0), state, task, {"lr": jnp.float32(lr)})
    return final, jax.tree_util.tree_map(np.asarray, hist)


def test_fit_rejects_bad_row_sets():
    task, fns, _, _, _ = _fit()
    n = task.train.size
    with pytest.raises(ValueError, match="batch_size"):
        Fit(fns, FitConfig(epochs=1, batch_size=n + 1), supervised_loss(fns, "l1"), task, LoopPlan())
    n_forget = int(np.asarray(task.train.forget).sum())
    forget_rows = np.flatnonzero(np.asarray(task.train.forget) > 0.5)
    cfg = FitConfig(epochs=1, batch_size=n_forget, rows="forget")
    fit = Fit(fns, cfg, supervised_loss(fns, "l1"), task, LoopPlan(rows_as_data=False))
    rows, count = fit.row_indices(task)
    np.testing.assert_array_equal(rows, forget_rows)
    assert count is None and fit.row_count == n_forget and fit.num_batches == 1
    fit = Fit(fns, cfg, supervised_loss(fns, "l1"), task, LoopPlan())  # the count is data: room for every row
    rows, count = fit.row_indices(task)
    np.testing.assert_array_equal(np.asarray(rows)[:n_forget], forget_rows)
    assert int(count) == n_forget and rows.shape == (n,) and fit.num_batches == -(-n // n_forget)


def test_row_sets_are_read_at_run_time_so_equal_sizes_share_one_program():
    """Row sets are data: one jitted epoch serves two forget sets of the same size, and each
    call's batches hold exactly its own set's rows (traced indices == host indices)."""
    task, fns, _, _, _ = _fit()
    n, n_forget = task.train.size, int(np.asarray(task.train.forget).sum())
    other_mask = np.zeros(n, np.float32)
    other_mask[np.random.default_rng(5).choice(n, n_forget, replace=False)] = 1.0
    other = task.replace(train=task.train.replace(forget=jnp.asarray(other_mask)))
    assert not np.array_equal(other_mask, np.asarray(task.train.forget)) and other.layout() == task.layout()
    for which in ("all", "retain", "forget"):
        for t in (task, other):
            count = t.train.host_indices(which).size
            np.testing.assert_array_equal(
                jax.jit(lambda t, w=which, c=count: t.train.indices(w, c))(t), t.train.host_indices(which)
            )
    more_mask = np.asarray(task.train.forget).copy()
    more_mask[np.flatnonzero(more_mask < 0.5)[:7]] = 1.0  # seven more forget rows: another count
    more = task.replace(train=task.train.replace(forget=jnp.asarray(more_mask)))
    for plan, tasks in ((LoopPlan(rows_as_data=False), (task, other)), (LoopPlan(), (task, other, more))):
        fit = Fit(fns, FitConfig(epochs=1, batch_size=8, rows="retain"), supervised_loss(fns, "l1"), task, plan)
        seen = []

        def batches(t, fit=fit, seen=seen):
            seen.append(None)  # one entry per trace
            return epoch_batches(jax.random.key(0), *fit.row_indices(t)[:1], 8, fit.row_indices(t)[1])

        run = jax.jit(batches)
        for t in tasks:
            idx, w = run(t)
            real = np.asarray(idx)[np.asarray(w) > 0]
            np.testing.assert_array_equal(np.sort(real), t.train.host_indices("retain"))
        assert len(seen) == 1


def test_a_pipeline_refuses_a_task_of_another_layout():
    from jaxunlearn import unlearn
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.runner import PipelineRunner

    task, fns, _, _, _ = _fit()
    cfg, keys = StudyConfig(batch_size=8, train_epochs=1), jax.random.split(jax.random.key(0), 1)
    forget = np.asarray(task.train.forget).copy()
    forget[np.flatnonzero(forget < 0.5)[0]] = 1.0  # one more forget row: another count
    bigger = task.replace(train=task.train.replace(forget=jnp.asarray(forget)))
    # Counts compiled in: another count is another layout.
    plan = LoopPlan(seed_strategy="map", rows_as_data=False)
    pipeline = unlearn.get("finetune").build(fns, task, cfg, plan)
    assert pipeline.layout == task.layout()
    with pytest.raises(ValueError, match="layout"):
        PipelineRunner(pipeline, plan)(keys, None, bigger, progress=False)
    # Counts as data: a shapes-only stage takes any count, a counting one (Blindspot) does not,
    # one that reads a class of the count (SSD: capped at the batch) takes another count of the
    # class only, and none takes a task of another shape.
    plan = LoopPlan(seed_strategy="map")
    pipeline = unlearn.get("finetune").build(fns, task, cfg, plan)
    assert pipeline.layout == task.layout(counts=False) == bigger.layout(counts=False)
    pipeline.check_task(bigger)
    with pytest.raises(ValueError, match="layout"):
        unlearn.get("blindspot").build(fns, task, cfg, plan).check_task(bigger)
    assert int(task.train.host_indices("forget").size) >= cfg.batch_size
    unlearn.get("ssd").build(fns, task, cfg, plan).check_task(bigger)
    few = np.zeros_like(forget)
    few[np.flatnonzero(forget > 0.5)[: cfg.batch_size - 1]] = 1.0  # under a batch: another class
    with pytest.raises(ValueError, match="layout"):
        unlearn.get("ssd").build(fns, task, cfg, plan).check_task(
            task.replace(train=task.train.replace(forget=jnp.asarray(few)))
        )
    shorter = task.replace(test=task.test.replace(x=task.test.x[:-1], y=task.test.y[:-1], forget=task.test.forget[:-1]))
    with pytest.raises(ValueError, match="layout"):
        pipeline.check_task(shorter)


def test_plateau_reduces_lr_after_eleven_bad_epochs():
    # lr 1e-9: validation never improves (by rtol 1e-4) after epoch 0. PyTorch ReduceLROnPlateau
    # (patience=10) reduces once 11 consecutive epochs (1..11) did not improve; history["lr"][e]
    # is the learning rate after epoch e's scheduler step (the one epoch e + 1 trains with).
    _, hist = _run(1e-9)
    lr, val = hist["lr"], hist["val_loss"]
    assert lr.shape == (13,) and val.shape == (13,) and hist["train_loss"].shape == (13,)
    assert np.all(np.abs(val / val[0] - 1.0) < 1e-5)  # precondition: a flat validation curve
    lr0 = np.float32(1e-9)
    np.testing.assert_array_equal(lr[:11], np.full(11, lr0))
    np.testing.assert_allclose(lr[11:], np.full(2, lr0 * np.float32(0.1)), rtol=1e-6)
    assert lr[11] / lr[10] == pytest.approx(0.1, rel=1e-6)


def test_keep_best_returns_best_validation_weights():
    task, _, fit, _, _ = _fit()
    final, hist = _run(0.05)
    val = hist["val_loss"]
    assert np.all(np.isfinite(val))
    best = int(np.argmin(val))
    assert best < len(val) - 1, "setup: the last epoch must not be the best for this check to bite"
    assert val[-1] > val[best] * (1 + 1e-3)
    got = float(fit.validation_loss(final, task))
    assert got == pytest.approx(float(val[best]), rel=1e-5)
    assert abs(got - float(val[-1])) > 1e-4  # not the last epoch's weights
    np.testing.assert_array_equal(hist["lr"], np.full(13, np.float32(0.05)))  # no plateau yet


def test_the_original_trains_on_every_row_with_the_retrained_models_program():
    """The original is the retrained model's phase on the task without forget rows: bit for
    bit a phase over "all" rows, and under rows as data one program with the retrain's."""
    from jaxunlearn import unlearn
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.unlearn.base import Phase, Pipeline, fresh_start
    from jaxunlearn.unlearn.retrain import recipe_fit

    task, fns, _, _, _ = _fit()
    cfg, plan = StudyConfig(batch_size=16, train_epochs=3), LoopPlan()
    original = unlearn.get("original").build(fns, task, cfg, plan)
    over_all = Pipeline(
        "all-rows",
        (Phase("train", fresh_start(fns), recipe_fit(fns, task, cfg, plan, "all", 3)),),
        needs_original=False,
    )
    hp = original.hp()
    (got, got_hist), (ref, ref_hist) = (jax.jit(p.run)(jax.random.key(2), None, task, hp) for p in (original, over_all))
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in ("val_loss", "diverged_at", "lr"):
        np.testing.assert_array_equal(np.asarray(got_hist[name]), np.asarray(ref_hist[name]))
    np.testing.assert_allclose(got_hist["train_loss"], ref_hist["train_loss"], rtol=1e-6)  # a sum fused otherwise

    retrain = unlearn.get("retrain").build(fns, task, cfg, plan)
    state = fns.fresh_state(jax.random.key(0), 1e-3)

    def program(pipeline):
        fit, seen = pipeline.phases[0].fit, pipeline.task_for(task)
        carry = fit.init_carry(jax.random.key(1), state, hp)
        return jax.jit(fit.run_epochs).lower(carry, jnp.arange(1), seen, hp, None).as_text()

    assert program(original) == program(retrain)
    assert program(original) != program(over_all)  # the check can fail: "all" rows compile apart
