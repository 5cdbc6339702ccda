"""Tests for jaxunlearn.data.forget_rules: rule strings, rule objects and apply_rule."""

from __future__ import annotations

import numpy as np
import pytest

from jaxunlearn.data.forget_rules import (
    Indices,
    LabelQuantile,
    LabelRange,
    Mask,
    RandomFraction,
    apply_rule,
    parse_rule,
)

_RNG = np.random.default_rng(0)
# Integer-valued targets so the boundary values (5, 10, 20, 30) occur exactly.
TARGETS = {
    "train": np.concatenate([[5.0, 10.0, 20.0, 30.0], _RNG.integers(0, 61, 96).astype(np.float64)]),
    "val": np.concatenate([[30.0, 5.0], _RNG.integers(0, 61, 33).astype(np.float64)]),
    "test": np.concatenate([[20.0, 10.0], _RNG.integers(0, 61, 45).astype(np.float64)]),
}
SIZES = {k: v.size for k, v in TARGETS.items()}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("label<=30", lambda y: y <= 30),
        ("label<30", lambda y: y < 30),
        ("label>=5", lambda y: y >= 5),
        ("label>5", lambda y: y > 5),
        ("label:10:20", lambda y: (y >= 10) & (y <= 20)),
        ("label <= 30", lambda y: y <= 30),
        ("  label > 5 ", lambda y: y > 5),
        ("label : 10 : 20", lambda y: (y >= 10) & (y <= 20)),
        ("label>-2.5", lambda y: y > -2.5),
        ("label<2.5e1", lambda y: y < 25),
        ("label:.5:30.", lambda y: (y >= 0.5) & (y <= 30)),
    ],
)
def test_parse_label_rules_match_numpy(spec, expected):
    rule = parse_rule(spec)
    assert isinstance(rule, LabelRange)
    masks = rule.masks(TARGETS)
    assert set(masks) == set(TARGETS)
    for name, y in TARGETS.items():
        assert masks[name].dtype == bool and masks[name].shape == y.shape
        np.testing.assert_array_equal(masks[name], expected(y), err_msg=f"{spec} on {name}")


def test_label_rules_accept_column_targets():
    col = {k: v[:, None] for k, v in TARGETS.items()}
    masks = parse_rule("label<=30").masks(col)
    for name, y in TARGETS.items():
        np.testing.assert_array_equal(masks[name], y <= 30)


@pytest.mark.parametrize(
    "spec, op, q",
    [
        ("quantile>=0.8", np.greater_equal, 0.8),
        ("quantile > 0.8", np.greater, 0.8),
        ("quantile<0.25", np.less, 0.25),
        ("quantile <= 0.5", np.less_equal, 0.5),
    ],
)
def test_quantile_rule_uses_train_quantile_for_every_split(spec, op, q):
    rng = np.random.default_rng(1)
    # val / test are shifted so their own quantiles differ from the train quantile.
    targets = {
        "train": rng.normal(0.0, 1.0, 200),
        "val": rng.normal(0.7, 1.0, 50),
        "test": rng.normal(-0.7, 1.0, 60),
    }
    rule = parse_rule(spec)
    assert isinstance(rule, LabelQuantile)
    masks = rule.masks(targets)
    srt = np.sort(targets["train"])  # linear-interpolation quantile, computed by hand
    pos = q * (srt.size - 1)
    lo = int(np.floor(pos))
    thr = srt[lo] + (pos - lo) * (srt[min(lo + 1, srt.size - 1)] - srt[lo])
    assert rule.q == pytest.approx(q)
    for name, y in targets.items():
        np.testing.assert_array_equal(masks[name], op(y, thr), err_msg=name)
    # the split-own quantile would give a different val mask: the rule really used train's.
    own = op(targets["val"], np.quantile(targets["val"], q))
    assert not np.array_equal(masks["val"], own)


def test_random_rule_fixed_size_and_deterministic():
    rule = parse_rule(" random : 0.1 ")
    assert isinstance(rule, RandomFraction) and rule.fraction == pytest.approx(0.1)
    a = rule.masks(TARGETS)
    b = parse_rule("random:0.1").masks(TARGETS)
    for name, n in SIZES.items():
        assert a[name].dtype == bool and a[name].shape == (n,)
        assert int(a[name].sum()) == round(0.1 * n), name
        np.testing.assert_array_equal(a[name], b[name])
    # independent of the target values
    shifted = RandomFraction(0.1).masks({k: v + 1000.0 for k, v in TARGETS.items()})
    for name in TARGETS:
        np.testing.assert_array_equal(a[name], shifted[name])
    # a different seed draws different rows
    other = RandomFraction(0.1, seed=1).masks(TARGETS)
    assert any(not np.array_equal(a[k], other[k]) for k in TARGETS)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_random_fraction_out_of_range_raises(fraction):
    with pytest.raises(ValueError, match="fraction"):
        RandomFraction(fraction)


def test_indices_rule():
    rule = Indices({"train": (0, 3, 99), "test": [1]})
    masks = rule.masks(TARGETS)
    expected_train = np.zeros(SIZES["train"], bool)
    expected_train[[0, 3, 99]] = True
    np.testing.assert_array_equal(masks["train"], expected_train)
    np.testing.assert_array_equal(masks["val"], np.zeros(SIZES["val"], bool))
    np.testing.assert_array_equal(np.flatnonzero(masks["test"]), [1])


@pytest.mark.parametrize("rows", [(0, SIZES["train"]), (-1, 2), (500,)])
def test_indices_out_of_range_raises(rows):
    with pytest.raises(ValueError, match="train"):
        Indices({"train": rows}).masks(TARGETS)


def test_indices_duplicates_raise():
    with pytest.raises(ValueError, match="duplicates"):
        Indices({"train": (1, 2, 2)}).masks(TARGETS)


def test_mask_rule_passes_masks_through():
    per_split = {k: (np.arange(n) % 3 == 0) for k, n in SIZES.items()}
    masks = Mask(per_split).masks(TARGETS)
    for name in TARGETS:
        np.testing.assert_array_equal(masks[name], per_split[name])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(SIZES["val"] + 1, bool),  # wrong length
        np.zeros((SIZES["val"], 1), bool),  # wrong rank
        np.zeros(SIZES["val"], np.int64),  # 0/1 ints, not bool
        np.zeros(SIZES["val"], np.float32),
    ],
)
def test_mask_rule_wrong_shape_or_dtype_raises(bad):
    per_split = {k: np.zeros(n, bool) for k, n in SIZES.items()}
    per_split["val"] = bad
    with pytest.raises(ValueError, match="val"):
        Mask(per_split).masks(TARGETS)


def test_mask_rule_missing_split_raises():
    with pytest.raises(ValueError, match="test"):
        Mask({"train": np.zeros(SIZES["train"], bool), "val": np.zeros(SIZES["val"], bool)}).masks(TARGETS)


def test_apply_rule_returns_masks():
    masks = apply_rule(parse_rule("label<=30"), TARGETS)
    for name, y in TARGETS.items():
        np.testing.assert_array_equal(masks[name], y <= 30)


def test_apply_rule_empty_forget_set_raises():
    with pytest.raises(ValueError, match="empty"):
        apply_rule(parse_rule("label<-1"), TARGETS)


def test_apply_rule_whole_train_set_raises():
    with pytest.raises(ValueError, match="all"):
        apply_rule(parse_rule("label>=0"), TARGETS)


def test_apply_rule_only_train_must_be_nonempty():
    # no val/test row above 1000, one train row forced there: allowed.
    targets = dict(TARGETS, train=np.concatenate([TARGETS["train"], [5000.0]]))
    masks = apply_rule(parse_rule("label>1000"), targets)
    assert masks["train"].sum() == 1 and masks["val"].sum() == 0


@pytest.mark.parametrize(
    "spec", ["age<=30", "label=30", "label==30", "random:abc", "quantile>=", "", "label:10", "label<=30;"]
)
def test_unknown_rule_raises_with_accepted_forms(spec):
    with pytest.raises(ValueError) as info:
        parse_rule(spec)
    msg = str(info.value)
    for form in ("label<=30", "label:10:20", "quantile>=0.8", "random:0.1"):
        assert form in msg, (form, msg)


def test_label_range_low_above_high_raises():
    with pytest.raises(ValueError, match="above"):
        LabelRange(low=20.0, high=10.0)
    with pytest.raises(ValueError, match="above"):
        parse_rule("label:20:10")
    LabelRange(low=10.0, high=10.0)  # a single value is fine


def test_label_range_needs_a_bound():
    with pytest.raises(ValueError):
        LabelRange()


def test_label_range_exclusive_bounds():
    rule = LabelRange(low=10.0, high=20.0, low_inclusive=False, high_inclusive=False)
    y = TARGETS["train"]
    np.testing.assert_array_equal(rule.masks({"train": y})["train"], (y > 10) & (y < 20))


@pytest.mark.parametrize("op, q", [("==", 0.5), (">=", 0.0), (">=", 1.0), ("<", 1.2)])
def test_label_quantile_invalid_raises(op, q):
    with pytest.raises(ValueError):
        LabelQuantile(op=op, q=q)
