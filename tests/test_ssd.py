"""SSD (Selective Synaptic Dampening, retraining-free, beyond the paper) and its label-free
form LFSSD: the importances against a plain Python loop of per-batch gradients, the
dampening rule against NumPy, the limits, that both forget on a tiny task, and that LFSSD
never reads a label. The registry-wide contract (jit, shapes,
seeds, determinism, declared hyperparameters) is in test_unlearner_conformance.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.data.forget_rules import Mask
from jaxunlearn.data.sources import RawData, build_task
from jaxunlearn.runner import PipelineRunner
from jaxunlearn.seeds import LoopPlan, tree_index
from jaxunlearn.study import last_phase_stats, seed_keys
from jaxunlearn.train.loop import epoch_batches, predict
from jaxunlearn.train.losses import get_loss
from jaxunlearn.unlearn import make_lfssd, make_ssd
from jaxunlearn.unlearn.ssd import Importances, batch_importance, dampen, output_norm
from tests.helpers import (
    TINY,
    one_seed_setup,
    tiny_model,
    tiny_task,
    train_original,
    with_,
)

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("ssd")

PLAN = LoopPlan(seed_strategy="map", epochs_per_call=None)


@pytest.fixture(scope="module")
def setup():
    return one_seed_setup(PLAN)


# Each objective and, for the loop below, the same per-batch scalar written out by hand.
OBJECTIVES = {
    "mse loss (SSD)": (get_loss("mse"), lambda pred, y: jnp.mean(jnp.square(pred - y))),
    "output norm (LFSSD)": (output_norm, lambda pred, y: jnp.mean(jnp.square(pred))),
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_batch_importance_matches_a_python_loop_of_batch_gradients(setup, objective):
    task, model, original = setup
    per_row, by_hand = OBJECTIVES[objective]
    state = tree_index(original, 0)
    rows = np.asarray(task.train.host_indices("forget"), np.int32)
    key, batch_size = jax.random.key(3), 7  # the last batch is padded: its padding must not count
    assert rows.size % batch_size
    got, got_loss = jax.jit(
        lambda k: batch_importance(model, per_row, state.params, state.batch_stats, task, rows, batch_size, k, PLAN)
    )(key)
    idx, w = epoch_batches(key, jnp.asarray(rows), batch_size)
    total, losses = jax.tree_util.tree_map(np.zeros_like, state.params), []
    for b in range(idx.shape[0]):
        keep = np.asarray(w[b]) > 0
        x, y = task.train.x[np.asarray(idx[b])[keep]], task.train.y[np.asarray(idx[b])[keep]]

        def loss(p, x=x, y=y):
            return by_hand(model.apply_eval(p, state.batch_stats, x)[0], y)

        value, grads = jax.value_and_grad(loss)(state.params)
        total = jax.tree_util.tree_map(lambda t, g: t + np.asarray(g) ** 2, total, grads)
        losses.append(float(value))
    want = jax.tree_util.tree_map(lambda t: t / idx.shape[0], total)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(float(got_loss), np.mean(losses), rtol=1e-5)


def test_batch_importance_with_the_count_as_data_is_bit_for_bit_the_compiled_counts(setup):
    """Rows as data: the forget rows padded to every training row, their count traced (one
    program for any count); the importances and the mean loss are those of the exact rows."""
    task, model, original = setup
    state = tree_index(original, 0)
    rows = np.asarray(task.train.host_indices("forget"), np.int32)
    padded, count = task.train.padded_indices("forget")
    # A batch count that is not a power of two (such a mean divides exactly either way) and
    # a last batch that is padded.
    batch_size = next(b for b in range(5, 40) if rows.size % b and (-(-rows.size // b)) & (-(-rows.size // b) - 1))
    key, objective = jax.random.key(3), get_loss("mse")
    exact = jax.jit(
        lambda k: batch_importance(model, objective, state.params, state.batch_stats, task, rows, batch_size, k, PLAN)
    )(key)
    traces = []

    def as_data(k, r, c):
        traces.append(None)
        return batch_importance(model, objective, state.params, state.batch_stats, task, r, batch_size, k, PLAN, c)

    run = jax.jit(as_data)
    got = run(key, padded, count)
    for a, b in zip(jax.tree_util.tree_leaves(exact), jax.tree_util.tree_leaves(got), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fewer = run(key, padded, count - 3)  # another count, the same program
    assert len(traces) == 1 and not np.array_equal(np.asarray(fewer[1]), np.asarray(got[1]))


def test_dampen_matches_numpy():
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    full = {k: rng.exponential(size=v.shape).astype(np.float32) for k, v in params.items()}
    forget = {k: (v * rng.exponential(8.0, size=v.shape)).astype(np.float32) for k, v in full.items()}
    full["b"][0], forget["b"][0] = 0.0, 0.0  # unimportant to both: never selected
    alpha, lam = 4.0, 2.0
    new, fraction = dampen(params, Importances(full, forget), jnp.asarray(alpha), jnp.asarray(lam))
    chosen_count = 0
    for k, p in params.items():
        chosen = forget[k] > alpha * full[k]
        chosen_count += chosen.sum()
        want = np.where(chosen, np.minimum(lam * full[k] / np.where(chosen, forget[k], 1.0), 1.0) * p, p)
        np.testing.assert_allclose(np.asarray(new[k]), want, rtol=1e-6)
    assert 0 < chosen_count < 19, "the draw must select some parameters, not all"
    np.testing.assert_allclose(float(fraction), chosen_count / 19)


def forget_feature_task(n: int = 400, p: float = 0.15, seed: int = 0):
    """x [N, 5]: four N(0, 1) features, and a fifth that is +-1 on the forget rows (about
    ``p``) and 0 on the retain rows; y = sin(x0) + 0.5 x1 + 2 x4. The first-layer weights
    of x4 serve only the forget rows: the parameters SSD is meant to find."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    forget = rng.random(n) < p
    x[:, 4] = np.where(forget, np.where(np.cumsum(forget) % 2 == 0, 1.0, -1.0), 0.0)
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] + 2.0 * x[:, 4]
    bounds = {"train": (0, n // 2), "val": (n // 2, 3 * n // 4), "test": (3 * n // 4, n)}
    splits = {k: (x[a:b], y[a:b]) for k, (a, b) in bounds.items()}
    return build_task(RawData(splits, Mask({k: forget[a:b] for k, (a, b) in bounds.items()}), "forget feature"))


def _errors(model, task, state) -> tuple[float, float]:
    """Mean |prediction - label| on the training forget rows and retain rows."""
    pred = np.asarray(predict(model, state.params, state.batch_stats, task.train.x, PLAN))[:, 0]
    err = np.abs(pred - np.asarray(task.train.y)[:, 0])
    forget = np.asarray(task.train.forget) > 0.5
    return float(err[forget].mean()), float(err[~forget].mean())


def test_ssd_dampens_what_serves_the_forget_rows_and_its_limits():
    task = forget_feature_task()
    model = tiny_model(task)
    cfg = with_(TINY, seeds=1, train_epochs=40)
    original = train_original(model, task, PLAN, cfg).state
    pipeline = make_ssd(model, task, cfg, PLAN)
    runner = PipelineRunner(pipeline, PLAN)
    keys = seed_keys(0, 1, "ssd")

    def run(**hp):
        return runner(keys, original, task, hp=pipeline.hp(**hp), progress=False)

    before, out = tree_index(original, 0), run()
    after = tree_index(out.state, 0)

    # The forget-only input's weights keep less of their size than the other inputs' weights.
    def kept(rows):
        kernel_after, kernel_before = after.params["dense_0"]["kernel"], before.params["dense_0"]["kernel"]
        return float(np.abs(kernel_after[rows]).sum() / np.abs(kernel_before[rows]).sum())

    assert kept(slice(4, 5)) < 0.7 * kept(slice(0, 4))
    # Forgetting: the forget error rises more than twice as much as the retain error
    # (measured 0.08 -> 1.46 and 0.05 -> 0.46).
    (forget_0, retain_0), (forget_1, retain_1) = _errors(model, task, before), _errors(model, task, after)
    assert forget_1 - forget_0 > 2 * (retain_1 - retain_0) > 0
    fraction = float(out.history["dampened_fraction"][0, 0])
    assert 0 < fraction < 0.5
    assert last_phase_stats(out) == {"dampened_fraction": [fraction]}  # what a study logs and saves

    # BatchNorm statistics and the step count are the original's.
    def same(a, b):
        return jax.tree_util.tree_all(jax.tree_util.tree_map(lambda u, v: bool(jnp.all(u == v)), a, b))

    assert same((after.batch_stats, after.step), (before.batch_stats, before.step))
    # A selection weight nothing passes leaves the model exactly as it was.
    untouched = run(selection_weight=1e12)
    assert float(untouched.history["dampened_fraction"][0, 0]) == 0.0
    assert same(untouched.state.params, original.params)
    # Dampening 0 zeroes exactly the selected parameters.
    zeroed = tree_index(run(dampening=0.0).state, 0)
    zeros = sum(int(jnp.sum(p == 0)) for p in jax.tree_util.tree_leaves(zeroed.params))
    size = sum(p.size for p in jax.tree_util.tree_leaves(zeroed.params))
    assert zeros == round(fraction * size)


def test_lfssd_reads_no_label_and_dampens_what_serves_the_forget_rows():
    task = forget_feature_task()
    model = tiny_model(task)
    cfg = with_(TINY, seeds=1, train_epochs=40)
    original = train_original(model, task, PLAN, cfg).state
    # The same task with every training label replaced: LFSSD's result must not change; SSD's
    # does (the check can fail).
    rng = np.random.default_rng(1)
    relabelled = task.replace(
        train=task.train.replace(y=jnp.asarray(rng.standard_normal(task.train.y.shape), jnp.float32))
    )
    keys = seed_keys(0, 1, "lfssd")

    def params_after(make, which_task):
        pipeline = make(model, which_task, cfg, PLAN)
        return PipelineRunner(pipeline, PLAN)(keys, original, which_task, progress=False).state.params

    def leaves(tree):
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]

    for a, b in zip(leaves(params_after(make_lfssd, task)), leaves(params_after(make_lfssd, relabelled)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(leaves(params_after(make_ssd, task)), leaves(params_after(make_ssd, relabelled)), strict=True)
    )
    # Like SSD: the forget-only input's first-layer weights keep less of their size than the
    # other inputs' weights, and the forget error rises more than the retain error.
    before, after = (
        tree_index(original, 0),
        tree_index(
            PipelineRunner(make_lfssd(model, task, cfg, PLAN), PLAN)(keys, original, task, progress=False).state, 0
        ),
    )

    def kept(rows):
        kernel_after, kernel_before = after.params["dense_0"]["kernel"], before.params["dense_0"]["kernel"]
        return float(np.abs(kernel_after[rows]).sum() / np.abs(kernel_before[rows]).sum())

    assert kept(slice(4, 5)) < 0.7 * kept(slice(0, 4))
    (forget_0, retain_0), (forget_1, retain_1) = _errors(model, task, before), _errors(model, task, after)
    assert forget_1 - forget_0 > retain_1 - retain_0


def test_ssd_rejects_an_empty_forget_set():
    task = tiny_task()
    empty = task.replace(train=task.train.replace(forget=jnp.zeros_like(task.train.forget)))
    with pytest.raises(ValueError, match="SSD needs forget rows"):
        make_ssd(tiny_model(task), empty, TINY, PLAN)


def test_importances_that_are_not_finite_keep_the_original_and_are_reported(setup):
    task, model, original = setup
    state = tree_index(original, 0)
    dampen_phase = make_ssd(model, task, TINY, PLAN).phases[1]
    bad = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, jnp.inf, jnp.float32), state.params)
    good = jax.tree_util.tree_map(lambda p: jnp.ones(p.shape, jnp.float32), state.params)
    importances = Importances(full=good, forget=bad)  # would zero every weight
    out, history = dampen_phase.fit.run(
        jax.random.key(0), state, task, make_ssd(model, task, TINY, PLAN).hp(), importances
    )
    assert int(history["diverged_at"][0]) == 0 and float(history["dampened_fraction"][0]) == 0.0
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), out.params, state.params))
