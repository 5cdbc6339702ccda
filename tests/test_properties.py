"""Property-based tests (hypothesis): forget-rule invariants and the masked losses."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from jaxunlearn.data.forget_rules import SPLITS, Indices, LabelQuantile, LabelRange, RandomFraction, apply_rule
from jaxunlearn.train.losses import l1_loss, masked_mean, mse_loss, quantile_loss

SETTINGS = settings(max_examples=60, deadline=None)
finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def split_targets(draw):
    """{train, val, test}: raw targets of 2..40 rows each."""
    return {s: draw(arrays(np.float64, st.integers(2, 40), elements=finite)) for s in SPLITS}


@st.composite
def rules(draw, targets):
    kind = draw(st.sampled_from(["range", "quantile", "random", "indices"]))
    if kind == "range":
        a, b = sorted((draw(finite), draw(finite)))
        return LabelRange(low=a, high=b, low_inclusive=draw(st.booleans()), high_inclusive=draw(st.booleans()))
    if kind == "quantile":
        return LabelQuantile(op=draw(st.sampled_from(["<=", "<", ">=", ">"])), q=draw(st.floats(0.05, 0.95)))
    if kind == "random":
        return RandomFraction(fraction=draw(st.floats(0.05, 0.95)), seed=draw(st.integers(0, 1000)))
    return Indices({s: draw(st.lists(st.integers(0, len(y) - 1), unique=True)) for s, y in targets.items()})


def _expected_size(rule, y: np.ndarray, train: np.ndarray) -> int:
    """The forget-set size each rule promises, computed independently of its implementation."""
    if isinstance(rule, LabelRange):
        return sum(
            (v > rule.low or (rule.low_inclusive and v == rule.low))
            and (v < rule.high or (rule.high_inclusive and v == rule.high))
            for v in y
        )
    if isinstance(rule, LabelQuantile):
        t = np.quantile(train, rule.q)
        return sum({"<=": v <= t, "<": v < t, ">=": v >= t, ">": v > t}[rule.op] for v in y)
    if isinstance(rule, RandomFraction):
        return max(1, round(rule.fraction * y.size))  # at least one row of each split
    return None


@SETTINGS
@given(st.data())
def test_forget_masks_partition_every_split_with_the_promised_size(data):
    targets = data.draw(split_targets())
    rule = data.draw(rules(targets))
    masks = rule.masks(targets)
    assert set(masks) == set(SPLITS)
    for name, y in targets.items():
        mask = masks[name]
        assert mask.dtype == bool and mask.shape == y.shape
        forget, retain = np.flatnonzero(mask), np.flatnonzero(~mask)
        assert np.intersect1d(forget, retain).size == 0, "disjoint"
        assert np.union1d(forget, retain).tolist() == list(range(y.size)), "covering"
        expected = _expected_size(rule, y, targets["train"])
        if expected is None:  # Indices: exactly the rows given
            expected = len(rule.rows[name])
            assert set(forget.tolist()) == set(rule.rows[name])
        assert forget.size == expected, "fixed size"
    again = rule.masks({k: v.copy() for k, v in targets.items()})
    assert all(np.array_equal(again[k], masks[k]) for k in SPLITS), "deterministic"


@SETTINGS
@given(split_targets(), st.floats(0.05, 0.95))
def test_quantile_rule_separates_labels(targets, q):
    masks = LabelQuantile(">=", q).masks(targets)
    for name, y in targets.items():
        if masks[name].any() and (~masks[name]).any():
            assert y[masks[name]].min() > y[~masks[name]].max(), "every forgotten label is above every kept one"


@SETTINGS
@given(split_targets(), st.data())
def test_apply_rule_accepts_exactly_the_proper_nonempty_splits(targets, data):
    rule = data.draw(rules(targets))
    n_forget = int(rule.masks(targets)["train"].sum())
    try:
        apply_rule(rule, targets)
        assert 0 < n_forget < targets["train"].size
    except ValueError as err:
        assert n_forget in (0, targets["train"].size), err


@st.composite
def loss_batch(draw):
    b = draw(st.integers(1, 16))
    pred = draw(arrays(np.float32, (b, 1), elements=st.floats(-100, 100, width=32)))
    target = draw(arrays(np.float32, (b, 1), elements=st.floats(-100, 100, width=32)))
    weights = draw(arrays(np.float32, (b,), elements=st.sampled_from([0.0, 1.0])))
    return pred, target, weights


@SETTINGS
@given(loss_batch())
def test_masked_losses_match_numpy_on_the_selected_rows(batch):
    pred, target, weights = batch
    sel = weights > 0
    err = target - pred
    for fn, ref in ((l1_loss, np.abs(err)), (mse_loss, err**2), (quantile_loss, np.maximum(0.5 * err, -0.5 * err))):
        values = np.asarray(fn(jnp.asarray(pred), jnp.asarray(target)))
        assert values.shape == pred.shape and (values >= 0).all()
        np.testing.assert_allclose(values, ref, rtol=1e-5, atol=1e-4)
        got = float(masked_mean(jnp.asarray(values), jnp.asarray(weights)))
        want = float(ref[sel].mean()) if sel.any() else 0.0
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@SETTINGS
@given(loss_batch(), st.integers(1, 8), st.floats(-1e3, 1e3, width=32))
def test_zero_weight_padding_never_changes_a_masked_mean(batch, pad, fill):
    pred, target, weights = batch
    values = np.asarray(l1_loss(jnp.asarray(pred), jnp.asarray(target)))
    padded = np.concatenate([values, np.full((pad, 1), fill, np.float32)])
    padded_w = np.concatenate([weights, np.zeros(pad, np.float32)])
    a = float(masked_mean(jnp.asarray(values), jnp.asarray(weights)))
    b = float(masked_mean(jnp.asarray(padded), jnp.asarray(padded_w)))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@SETTINGS
@given(loss_batch())
def test_quantile_at_one_half_is_half_the_l1_loss(batch):
    pred, target, _ = batch
    np.testing.assert_allclose(
        np.asarray(quantile_loss(jnp.asarray(pred), jnp.asarray(target), 0.5)),
        0.5 * np.asarray(l1_loss(jnp.asarray(pred), jnp.asarray(target))),
        rtol=1e-6,
        atol=1e-6,
    )
