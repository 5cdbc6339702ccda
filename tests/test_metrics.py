"""Tests for jaxunlearn.metrics.errors and the anamnesis index of jaxunlearn.metrics.relearn."""

from __future__ import annotations

import numpy as np
import pytest

from jaxunlearn.metrics.errors import masked_errors, wasserstein_to_reference
from jaxunlearn.metrics.relearn import anamnesis_index

S, N = 3, 9
_RNG = np.random.default_rng(0)
PRED = _RNG.normal(size=(S, N))
Y = _RNG.normal(size=N)
MASK = np.array([1, 0, 1, 1, 0, 0, 1, 1, 0], bool)


def _loop_errors(pred, y, mask, y_std):
    mae, mse = [], []
    for s in range(pred.shape[0]):
        errs = [(pred[s, i] - y[i]) * y_std for i in range(y.size) if mask[i]]
        mae.append(sum(abs(e) for e in errs) / len(errs))
        mse.append(sum(e * e for e in errs) / len(errs))
    return np.array(mae), np.array(mse)


@pytest.mark.parametrize("y_std", [1.0, 2.5, 0.3])
@pytest.mark.parametrize("column", [False, True])
def test_masked_errors_match_numpy(y_std, column):
    y = Y[:, None] if column else Y
    out = masked_errors(PRED, y, MASK, y_std)
    mae, mse = _loop_errors(PRED, Y, MASK, y_std)
    assert out["mae"].shape == (S,) and out["mse"].shape == (S,)
    np.testing.assert_allclose(out["mae"], mae, rtol=1e-12)
    np.testing.assert_allclose(out["mse"], mse, rtol=1e-12)


def test_masked_errors_scale_with_y_std():
    one = masked_errors(PRED, Y, MASK, 1.0)
    two = masked_errors(PRED, Y, MASK, 4.0)
    np.testing.assert_allclose(two["mae"], 4.0 * one["mae"], rtol=1e-12)
    np.testing.assert_allclose(two["mse"], 16.0 * one["mse"], rtol=1e-12)


def test_masked_errors_mask_selects_rows():
    # corrupt the unmasked rows: no effect
    pred = PRED.copy()
    pred[:, ~MASK] += 1e3
    a, b = masked_errors(PRED, Y, MASK, 1.0), masked_errors(pred, Y, MASK, 1.0)
    np.testing.assert_array_equal(a["mae"], b["mae"])
    c = masked_errors(pred, Y, np.ones(N, bool), 1.0)
    assert np.all(c["mae"] > 100)


def test_masked_errors_empty_mask_is_nan():
    out = masked_errors(PRED, Y, np.zeros(N, bool), 2.0)
    for k in ("mae", "mse"):
        assert out[k].shape == (S,) and np.all(np.isnan(out[k]))


@pytest.mark.parametrize(
    "pred, y, mask",
    [
        (PRED[0], Y, MASK),  # pred [N]
        (PRED[:, :-1], Y, MASK),  # N mismatch
        (PRED, Y, MASK[:-1]),  # mask length
        (PRED, Y, MASK[:, None]),  # mask rank
        (PRED[None], Y, MASK),  # pred rank 3
    ],
)
def test_masked_errors_bad_shapes_raise(pred, y, mask):
    with pytest.raises(ValueError):
        masked_errors(pred, y, mask, 1.0)


def _np_w1_equal_size(a, b):
    return np.mean(np.abs(np.sort(a) - np.sort(b)))


@pytest.mark.parametrize("y_std", [1.0, 3.0])
def test_wasserstein_matches_sorted_formula(y_std):
    ref = _RNG.normal(0.5, 2.0, size=(S, N))
    out = wasserstein_to_reference(PRED, ref, MASK, y_std)
    expected = [_np_w1_equal_size(PRED[s][MASK], ref[s][MASK]) * y_std for s in range(S)]
    assert out.shape == (S,)
    np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_wasserstein_identical_is_zero_and_shift_is_shift():
    np.testing.assert_allclose(wasserstein_to_reference(PRED, PRED, MASK, 2.0), 0.0, atol=1e-12)
    # a permutation of the same values is the same distribution
    perm = PRED[:, ::-1].copy()
    full = np.ones(N, bool)
    np.testing.assert_allclose(wasserstein_to_reference(PRED, perm, full, 2.0), 0.0, atol=1e-12)
    np.testing.assert_allclose(wasserstein_to_reference(PRED, PRED + 0.7, MASK, 2.0), 1.4, rtol=1e-10)


def test_wasserstein_shape_mismatch_raises():
    with pytest.raises(ValueError):
        wasserstein_to_reference(PRED, PRED[:2], MASK, 1.0)


def test_anamnesis_index():
    out = anamnesis_index(np.array([2, 3, 0, 7]), np.array([4, 0, 5, 7]))
    assert out.dtype == np.float64 and out.shape == (4,)
    np.testing.assert_allclose(out[[0, 2, 3]], [0.5, 0.0, 1.0])
    assert np.isnan(out[1])
    assert not np.any(np.isnan(out[[0, 2, 3]]))
    np.testing.assert_allclose(anamnesis_index([30], [4]), [7.5])
    assert np.isnan(anamnesis_index([0], [0])[0])


def test_wasserstein_equals_scipy_without_its_blas_dot():
    """Our W1 is SciPy's integral with the last dot product summed exactly (math.fsum), so the
    value does not depend on the BLAS kernel the CPU selects: equal to SciPy's to rounding,
    on unequal sizes and ties, and exactly invariant to the order of the rows."""
    from scipy.stats import wasserstein_distance

    from jaxunlearn.metrics.errors import _wasserstein

    rng = np.random.default_rng(5)
    for n, m in ((1, 1), (7, 300), (250, 3), (400, 400)):
        u, v = np.round(rng.normal(0, 3, n), 1), rng.normal(1, 1, m)
        assert _wasserstein(u, v) == pytest.approx(wasserstein_distance(u, v), rel=1e-12, abs=1e-15)
        assert _wasserstein(rng.permutation(u), rng.permutation(v)) == _wasserstein(u, v)
    with pytest.raises(ValueError, match="non-empty"):
        _wasserstein(np.array([]), np.array([1.0]))


def test_the_attack_cap_attacks_the_first_models_only_and_the_table_says_so():
    from jaxunlearn.cli import build_parser, config_from_args
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.metrics.suite import prediction_metrics
    from jaxunlearn.study import study_columns

    rng = np.random.default_rng(0)
    n_train, n_test, seeds = 120, 60, 3
    targets = {"train": rng.normal(size=n_train), "test": rng.normal(size=n_test)}
    forget = {"train": np.arange(n_train) < 30, "test": np.arange(n_test) < 15}
    preds = {s: targets[s][None] + rng.normal(0, 0.3, (seeds, t.size)) for s, t in targets.items()}
    full = prediction_metrics(preds, preds, targets, forget, 1.0, 50, 0)
    capped = prediction_metrics(preds, preds, targets, forget, 1.0, 50, 0, mia_models=2)
    np.testing.assert_array_equal(capped["mia"][:2], full["mia"][:2])
    assert np.isnan(capped["mia"][2]) and np.all(np.isfinite(full["mia"]))
    for key in full.keys() - {"mia"}:
        np.testing.assert_array_equal(capped[key], full[key])

    headers = dict(study_columns(StudyConfig(seeds=8, mia_models=2)))
    assert headers["mia"] == "MIA forget [nearest retrain; 2 of 8 models]"
    assert dict(study_columns(StudyConfig(seeds=8, mia_models=8)))["mia"] == "MIA forget [nearest retrain]"
    assert config_from_args(build_parser().parse_args(["run", "--attack-models", "4"])).mia_models == 4
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="mia_models"):
            StudyConfig(mia_models=bad)


def test_given_attack_rates_must_match_the_attacked_models():
    from jaxunlearn.metrics.suite import prediction_metrics

    rng = np.random.default_rng(1)
    targets = {"train": rng.normal(size=40), "test": rng.normal(size=20)}
    forget = {"train": np.arange(40) < 10, "test": np.arange(20) < 5}
    preds = {s: targets[s][None] + rng.normal(0, 0.3, (3, t.size)) for s, t in targets.items()}
    given = prediction_metrics(preds, preds, targets, forget, 1.0, 15, 0, mia_models=2, mia=np.array([0.25, 0.5]))
    np.testing.assert_array_equal(given["mia"], [0.25, 0.5, np.nan])
    with pytest.raises(ValueError, match="2 attacked models"):
        prediction_metrics(preds, preds, targets, forget, 1.0, 15, 0, mia_models=2, mia=np.zeros(3))
