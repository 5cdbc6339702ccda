"""Tests for jaxunlearn.data.sources and jaxunlearn.data.arrays (real and synthetic data)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from jaxunlearn.data.arrays import Task, standardise
from jaxunlearn.data.forget_rules import Mask
from jaxunlearn.data.sources import (
    RawData,
    build_task,
    load_dataset,
    load_taylor,
    make_synthetic,
    validate_raw,
)

SPLITS = ("train", "val", "test")


@functools.cache
def _series():
    from pmdarima.datasets import load_taylor as pm_load

    return np.asarray(pm_load(), np.float64)


@functools.cache
def _taylor(window=96, horizon=48):
    return load_taylor(window=window, horizon=horizon)


def _concat(raw):
    xs, ys = zip(*(raw.splits[s] for s in SPLITS), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


# --------------------------------------------------------------------------- Taylor (real data)


def test_taylor_shapes_and_split_sizes():
    series = _series()
    assert series.shape == (4032,)
    raw = _taylor()
    n = 4032 - 96 - 48 + 1
    x, y = _concat(raw)
    assert x.shape == (n, 96) and y.shape == (n,)
    sizes = [raw.splits[s][1].shape[0] for s in SPLITS]
    assert sizes == [int(0.7 * n), int(0.1 * n), n - int(0.7 * n) - int(0.1 * n)]
    for s in SPLITS:
        assert raw.splits[s][0].shape[0] == raw.splits[s][1].shape[0]
    assert raw.per_feature_inputs is False
    assert raw.target_units == "MW"
    assert raw.default_rule == "quantile>=0.8"


def test_taylor_rows_are_windows_of_the_series_in_chronological_order():
    series = _series()
    raw = _taylor()
    offset = 0
    for s in SPLITS:  # train, then val, then test: consecutive window starts
        x, y = raw.splits[s]
        for i in range(0, x.shape[0], 97):  # a spread of rows, checked against the series directly
            start = offset + i
            np.testing.assert_array_equal(x[i], series[start : start + 96])
            assert y[i] == series[start + 96 + 48 - 1]
        starts = offset + np.arange(x.shape[0])
        np.testing.assert_array_equal(y, series[starts + 143])
        np.testing.assert_array_equal(x[:, 0], series[starts])
        np.testing.assert_array_equal(x[:, -1], series[starts + 95])
        offset += x.shape[0]
    # the offsets ran train -> val -> test over consecutive starts: the whole series is covered,
    # so every train target precedes every val target, which precedes every test target.
    assert offset == 4032 - 96 - 48 + 1


def test_taylor_window_and_horizon_arguments():
    series = _series()
    raw = load_taylor(window=10, horizon=3)
    x, y = _concat(raw)
    n = 4032 - 10 - 3 + 1
    assert x.shape == (n, 10) and y.shape == (n,)
    starts = np.arange(n)
    np.testing.assert_array_equal(x, series[starts[:, None] + np.arange(10)])
    np.testing.assert_array_equal(y, series[starts + 12])


@pytest.mark.parametrize("window, horizon", [(0, 48), (-3, 48), (96, 0), (4000, 48), (2000, 2010)])
def test_taylor_bad_window_raises(window, horizon):
    with pytest.raises(ValueError, match="taylor"):
        load_taylor(window=window, horizon=horizon)


def test_taylor_shortest_allowed_series():
    raw = load_taylor(window=4000, horizon=3)  # 4032 - 4003 + 1 = 30 rows: the minimum
    assert _concat(raw)[1].shape == (30,)


def test_taylor_build_task_scalar_standardisation_and_quantile_rule():
    raw = _taylor()
    task = build_task(raw)
    x_tr = np.asarray(raw.splits["train"][0], np.float64)
    mean, std = x_tr.mean(), x_tr.std()  # one scalar for the whole window
    for s in SPLITS:
        np.testing.assert_allclose(
            np.asarray(getattr(task, s).x), (np.asarray(raw.splits[s][0]) - mean) / std, rtol=1e-4, atol=1e-4
        )
    y_tr = raw.splits["train"][1]
    forget = np.asarray(task.train.forget)
    np.testing.assert_array_equal(forget, (y_tr >= np.quantile(y_tr, 0.8)).astype(np.float32))
    assert task.input_shape == (96,)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_forget_rows_follow_shifted_function():
    shift = 3.0
    raw = make_synthetic(n=400, shift=shift)
    raw0 = make_synthetic(n=400, shift=0.0)
    assert [raw.splits[s][0].shape for s in SPLITS] == [(240, 8), (80, 8), (80, 8)]
    x, y = _concat(raw)
    _, y0 = _concat(raw0)
    forget = x[:, 0] > 1.0
    assert 0.05 < forget.mean() < 0.3
    # same draws: only the forget rows move, by exactly `shift`
    np.testing.assert_allclose(y - y0, shift * forget, atol=1e-9)
    # residual against the retain function: ~0 on retain rows, ~shift on forget rows
    xd = x.astype(np.float64)
    base = np.sin(2 * xd[:, 0]) + 0.5 * xd[:, 1] + 0.1 * xd.sum(axis=1)
    resid = y - base
    assert abs(resid[~forget].mean()) < 0.02
    assert abs(resid[forget].mean() - shift) < 0.05
    assert resid.std() < shift  # noise, not a second shift
    # default rule: the x0 > 1 rows
    assert isinstance(raw.default_rule, Mask)
    for s in SPLITS:
        np.testing.assert_array_equal(raw.default_rule.per_split[s], raw.splits[s][0][:, 0] > 1.0)


def test_synthetic_is_deterministic_per_seed():
    a, b, c = make_synthetic(n=100), make_synthetic(n=100), make_synthetic(n=100, seed=1)
    np.testing.assert_array_equal(a.splits["train"][1], b.splits["train"][1])
    assert not np.array_equal(a.splits["train"][1], c.splits["train"][1])


@functools.cache
def _syn_task():
    raw = make_synthetic(n=200)
    return raw, build_task(raw)


def test_build_task_standardises_with_train_statistics():
    raw, task = _syn_task()
    assert isinstance(task, Task)
    y_raw = {s: np.asarray(raw.splits[s][1], np.float64) for s in SPLITS}
    x_raw = {s: np.asarray(raw.splits[s][0], np.float64) for s in SPLITS}
    y_mean, y_std = y_raw["train"].mean(), y_raw["train"].std()
    x_mean, x_std = x_raw["train"].mean(axis=0), x_raw["train"].std(axis=0)
    assert float(task.y_mean) == pytest.approx(y_mean, rel=1e-6)
    assert float(task.y_std) == pytest.approx(y_std, rel=1e-6)
    for s in SPLITS:
        split = getattr(task, s)
        assert split.y.shape == (y_raw[s].size, 1) and split.y.dtype == np.float32
        assert split.x.dtype == np.float32
        np.testing.assert_allclose(np.asarray(split.y)[:, 0], (y_raw[s] - y_mean) / y_std, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(split.x), (x_raw[s] - x_mean) / x_std, rtol=1e-4, atol=1e-4)
    ytr = np.asarray(task.train.y, np.float64)
    assert abs(ytr.mean()) < 1e-5 and abs(ytr.std() - 1.0) < 1e-5
    np.testing.assert_allclose(np.asarray(task.train.x).mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(task.train.x).std(axis=0), 1.0, atol=1e-4)
    # val / test were NOT standardised with their own statistics
    assert abs(np.asarray(task.val.y).mean()) > 1e-3


def test_build_task_forget_masks_and_describe():
    raw, task = _syn_task()
    info = task.describe()
    assert info["input_shape"] == [8]
    for s in SPLITS:
        f = np.asarray(getattr(task, s).forget)
        assert f.dtype == np.float32 and f.shape == (raw.splits[s][1].shape[0],)
        assert set(np.unique(f)) <= {0.0, 1.0}
        expected = raw.splits[s][0][:, 0] > 1.0
        np.testing.assert_array_equal(f, expected.astype(np.float32))
        n = expected.size
        assert info[s] == {"rows": n, "forget": int(expected.sum()), "retain": n - int(expected.sum())}
    assert "synthetic" in info["name"]


def test_build_task_rule_string_applies_to_raw_targets():
    raw, _ = _syn_task()
    task = build_task(raw, "label>=1.0")
    for s in SPLITS:
        np.testing.assert_array_equal(np.asarray(getattr(task, s).forget), (raw.splits[s][1] >= 1.0).astype(np.float32))
    assert "label>=1.0" in task.name


def test_standardise_train_stats_only_and_degenerate_std():
    x_tr = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], np.float32)  # 2nd feature constant
    y_tr = np.array([2.0, 4.0, 6.0])
    x_te = np.array([[7.0, 6.0]], np.float32)
    y_te = np.array([[8.0]])
    (tr, te), y_mean, y_std = standardise(x_tr, y_tr, (x_te, y_te))
    assert y_mean == pytest.approx(4.0) and y_std == pytest.approx(np.sqrt(8.0 / 3.0))
    sx = np.sqrt(8.0 / 3.0)
    np.testing.assert_allclose(te[0], [[(7.0 - 3.0) / sx, 1.0]], rtol=1e-6)  # constant feature: std -> 1
    np.testing.assert_allclose(te[1], [[(8.0 - 4.0) / y_std]], rtol=1e-6)
    assert tr[1].shape == (3, 1) and te[1].shape == (1, 1) and tr[1].dtype == np.float32
    # scalar statistics
    (_tr_s, te_s), _, _ = standardise(x_tr, y_tr, (x_te, y_te), per_feature=False)
    m, s = x_tr.astype(np.float64).mean(), x_tr.astype(np.float64).std()
    np.testing.assert_allclose(te_s[0], (x_te - m) / s, rtol=1e-5)
    # constant targets: std treated as 1
    _, m0, s0 = standardise(x_tr, np.full(3, 7.0))
    assert (m0, s0) == (7.0, 1.0)


# --------------------------------------------------------------------------- validate_raw


def _good_splits():
    rng = np.random.default_rng(0)
    return {s: (rng.normal(size=(n, 3)), rng.normal(size=n)) for s, n in zip(SPLITS, (10, 5, 6), strict=True)}


def _raw(splits):
    return RawData(splits=splits, default_rule="label>0", description="t")


def test_validate_raw_accepts_good_data():
    validate_raw(_raw(_good_splits()))
    s = _good_splits()
    s["val"] = (s["val"][0], s["val"][1][:, None])  # [N, 1] targets are fine
    validate_raw(_raw(s))


def _with(split, x=None, y=None):
    s = _good_splits()
    ox, oy = s[split]
    s[split] = (ox if x is None else x, oy if y is None else y)
    return s


def _nan_x():
    s = _good_splits()
    x = s["val"][0].copy()
    x[3, 1] = np.nan
    return _with("val", x=x)


def _inf_y():
    s = _good_splits()
    y = s["test"][1].copy()
    y[2] = np.inf
    return _with("test", y=y)


@pytest.mark.parametrize(
    "make, match",
    [
        (_nan_x, r"val\.x .*NaN/inf.*row 3"),
        (_inf_y, r"test\.y .*NaN/inf.*row 2"),
        (lambda: _with("train", y=np.zeros(9)), r"train\.x"),
        (lambda: _with("val", x=np.zeros((5, 4))), r"val\.x has feature shape"),
        (lambda: _with("test", x=np.zeros((6, 3, 1))), r"test\.x has feature shape"),
        (lambda: _with("val", x=np.zeros((0, 3)), y=np.zeros(0)), r"val split is empty"),
        (lambda: _with("train", y=np.zeros((10, 2))), r"train\.y"),
        (lambda: _with("train", x=np.zeros(10)), r"train\.x"),
        (lambda: _with("val", y=np.array(["a"] * 5)), r"val: .*numeric"),
        (lambda: {k: v for k, v in _good_splits().items() if k != "test"}, r"missing split.*test"),
    ],
    ids=[
        "nan-x",
        "inf-y",
        "mismatched-N",
        "feature-shape",
        "feature-rank",
        "empty",
        "y-2-cols",
        "x-1d",
        "non-numeric",
        "missing",
    ],
)
def test_validate_raw_rejects(make, match):
    with pytest.raises(ValueError, match=match):
        validate_raw(_raw(make()))


def test_build_task_validates():
    with pytest.raises(ValueError, match=r"val\.x"):
        build_task(_raw(_nan_x()))


def test_load_dataset():
    raw = load_dataset("synthetic", n=100, dim=3)
    assert raw.splits["train"][0].shape == (60, 3)
    with pytest.raises(ValueError, match="known datasets"):
        load_dataset("no-such-dataset")
