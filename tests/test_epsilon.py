"""The challenge's per-example epsilon (jaxunlearn.metrics.epsilon) against a plain loop and known answers."""

import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from jaxunlearn.metrics import epsilon as E
from jaxunlearn.metrics.epsilon import (
    EPS_CAP,
    eps_histogram,
    epsilon_points,
    final_score,
    forgetting_quality,
    per_example_epsilons,
)


# ----------------------------------------------------------------------------------------------
# A plain reference: one example at a time, one attack at a time, straight from the definition.
# ----------------------------------------------------------------------------------------------
def attack_eps(fpr, fnr, delta):
    """eps of one attack; NaN = discarded."""
    if fpr == 0 and fnr == 0:
        return math.inf
    if fpr == 0 or fnr == 0:
        return math.nan
    terms = []
    for rate, other in ((fpr, fnr), (fnr, fpr)):
        keep = 1 - delta - rate
        terms.append(math.log(keep) - math.log(other) if keep > 0 else -math.inf)
    return max(0.0, *terms)


def reference_one(u, r, delta, g):
    """(eps, best threshold-attack eps, best interval-attack eps) of one example."""
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    small, large = sorted([np.ptp(u), np.ptp(r)])
    if large > 0 and small / large < E.RANGE_GUARD:
        return EPS_CAP, math.nan, math.nan

    threshold = []
    lo, hi = min(u.min(), r.min()), max(u.max(), r.max())
    for t in np.linspace(lo, hi, max(math.ceil((hi - lo) * g), 2)):
        threshold.append(attack_eps(np.mean(neg >= t), np.mean(pos < t), delta))

    peaky, other = (neg, pos) if np.ptp(neg) <= np.ptp(pos) else (pos, neg)
    n = math.ceil(4 * g)
    interval = []
    for i in range(n + 1):
        right = (peaky.max() - 2) + i / g
        for j in range(n + 1):
            left = (peaky.min() - 4) + (i + j) / g  # = right - width - 2 + j / g
            fnr = np.mean(~((peaky >= left) & (peaky <= right)))
            fpr = np.mean((other >= left) & (other <= right))
            interval.append(attack_eps(fpr, fnr, delta))

    kept = [e for e in threshold + interval if not math.isnan(e)]
    eps = min(max(kept), EPS_CAP) if kept else 0.0
    return eps, np.nanmax([*threshold, 0.0]), np.nanmax([*interval, 0.0])


def reference_epsilons(unlearned, retrained, delta=E.DELTA, g=E.GRID_PER_UNIT):
    return np.array([reference_one(unlearned[:, f], retrained[:, f], delta, g)[0] for f in range(unlearned.shape[1])])


CASES = [
    # (n_u, n_r, n_examples, scale, grid_per_unit, rounding): continuous, tied, unequal N,
    # coarse and fine grids relative to the spread, empty intervals (spread << 2 units).
    (12, 12, 4, 1.0, 10, None),
    (9, 15, 3, 0.3, 10, None),
    (20, 7, 3, 3.0, 2, None),
    (16, 10, 3, 2.0, 2, 1.0),  # integer data, grid at multiples of 1/2: values sit on grid points
    (11, 13, 3, 0.5, 10, 0.1),  # heavy ties
]


@pytest.mark.parametrize("n_u,n_r,n_ex,scale,g,rounding", CASES)
def test_matches_plain_loop(n_u, n_r, n_ex, scale, g, rounding):
    rng = np.random.default_rng(n_u * 100 + n_r)
    u = rng.normal(size=(n_u, n_ex)) * scale
    # Per example: a shift, a spread change, or a peaky sample in the middle of a wide one.
    shift = np.array([0.0, 0.7, 0.2, -1.0])[:n_ex] * scale
    spread = np.array([1.0, 1.0, 0.3, 1.5])[:n_ex]
    r = rng.normal(size=(n_r, n_ex)) * scale * spread + shift
    if rounding:
        u, r = np.round(u / rounding) * rounding, np.round(r / rounding) * rounding
    got = per_example_epsilons(u, r, grid_per_unit=g)
    want = reference_epsilons(u, r, g=g)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got.shape == (n_ex,) and got.dtype == np.float64


def test_tie_rules_match_plain_loop():
    """Equal medians (the unlearned side is positive) and equal ranges (the negative side is peakier).

    Columns: both tie; medians tie; ranges tie. Each answer changes if its tie went the other way.
    """
    u = np.array([[-1, 0, -1, 0, 0, -1, -1, 1, 0], [3, 8, 0, 4, 0, 3, -1, 1, -2], [-1, -1, 1, 1, 0, -1, 0, -1, 1]]).T
    r = np.array([[0, 0, 2, 0, 0, 0, 1], [1, -1, 4, 5, 4, -3, 0], [0, 0, 1, 1, 2, 0, 1]]).T
    got = per_example_epsilons(u, r, grid_per_unit=2)
    np.testing.assert_allclose(got, reference_epsilons(u.astype(float), r.astype(float), g=2), rtol=1e-12)
    np.testing.assert_allclose(got, [1.1349574, 0.4417878, 0.5389790], rtol=1e-6)


def test_plain_loop_cases_exercise_both_attacks():
    """The interval attack is what detects a peaky sample inside a wide one (so it is tested)."""
    rng = np.random.default_rng(0)
    u, r = rng.normal(size=40), rng.normal(size=40) * 0.2
    eps, best_threshold, best_interval = reference_one(u, r, E.DELTA, 10)
    assert eps == best_interval > best_threshold
    np.testing.assert_allclose(per_example_epsilons(u[:, None], r[:, None], grid_per_unit=10), [eps], rtol=1e-12)


def test_fine_grid_matches_plain_loop():
    """A finer grid whose 4 x grid_per_unit is not an integer (the default's 401 x 401 pairs are too slow here)."""
    rng = np.random.default_rng(3)
    u, r = rng.normal(size=(8, 2)) * 0.2, rng.normal(size=(6, 2)) * 0.15 + 0.1
    np.testing.assert_allclose(
        per_example_epsilons(u, r, grid_per_unit=33.3), reference_epsilons(u, r, g=33.3), rtol=1e-12
    )


# ----------------------------------------------------------------------------------------------
# Known answers
# ----------------------------------------------------------------------------------------------
def test_identical_samples_give_zero_and_full_quality():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 7))
    quality, eps = forgetting_quality(x, x.copy())
    np.testing.assert_array_equal(eps, 0.0)
    assert quality == 1.0
    np.testing.assert_array_equal(epsilon_points(eps, 64), 1.0)


def test_one_sd_shift_matches_the_best_threshold_at_the_sample_size():
    """Two unit normals 1 apart, N = 1000 models a side, 40 independent examples.

    The population eps of "positive above t" is log(Q(t - 1) / Q(t)) (Q = normal upper
    tail), which grows without bound in t: the finite sample is what limits it. A
    threshold needs at least one negative model above it (FPR = 0 discards it), and the
    best such threshold sits just above the second-largest negative value, whose upper
    tail probability is 2 / (N + 1) on average: there FPR = 1/N and eps = log(#positives
    above) ~ log(N Q(q - 1)), q = Q^-1(2 / (N + 1)): 3.41 for N = 1000. Being a maximum
    over noisy tail counts, the observed values scatter around it (about +-0.7 here).
    Any example must also beat the midpoint threshold t = 1/2 (FPR = FNR = Q(1/2),
    eps = log((1 - Q(1/2)) / Q(1/2)) = 0.81), which the sample resolves well.
    """
    n, n_ex = 1000, 40
    rng = np.random.default_rng(2)
    eps = per_example_epsilons(rng.normal(size=(n, n_ex)), rng.normal(size=(n, n_ex)) + 1.0)
    analytic = math.log(n * norm.sf(norm.isf(2 / (n + 1)) - 1.0))
    midpoint = math.log(norm.cdf(0.5) / norm.sf(0.5))
    assert abs(np.median(eps) - analytic) < 0.3
    assert np.all(eps > midpoint)
    assert np.all(np.abs(eps - analytic) < 1.25)
    # The same data without the shift: the noise floor is well below.
    null = per_example_epsilons(rng.normal(size=(n, n_ex)), rng.normal(size=(n, n_ex)))
    assert np.median(null) < analytic - 1.0


def test_full_separation_is_infinite_so_capped_and_worth_nothing():
    rng = np.random.default_rng(4)
    u, r = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) + 10.0
    assert reference_one(u[:, 0], r[:, 0], E.DELTA, 1)[1] == math.inf  # the threshold attack separates
    quality, eps = forgetting_quality(u, r)
    np.testing.assert_array_equal(eps, EPS_CAP)
    assert quality == 0.0


def test_point_mass_trips_the_range_guard():
    rng = np.random.default_rng(5)
    u = np.full((30, 2), 0.3)  # a deterministic unlearner: the same prediction from every model
    r = rng.normal(size=(30, 2)) * 0.1 + 0.3
    np.testing.assert_array_equal(per_example_epsilons(u, r), EPS_CAP)
    # Just below / above the 1% range ratio.
    base = rng.normal(size=(30, 1))
    tiny = base * 0.009
    np.testing.assert_array_equal(per_example_epsilons(tiny, base), EPS_CAP)
    assert per_example_epsilons(base * 0.011, base)[0] < EPS_CAP


def test_both_constant():
    same = np.full((5, 1), 2.0)
    assert per_example_epsilons(same, same.copy())[0] == 0.0
    assert per_example_epsilons(same, same + 0.5)[0] == EPS_CAP


# ----------------------------------------------------------------------------------------------
# Points, quality, score, histogram
# ----------------------------------------------------------------------------------------------
def test_points_bin_edges():
    eps = np.array([0.0, 0.49, 0.5, 6.99, 7.0, np.inf])
    np.testing.assert_array_equal(epsilon_points(eps, 512), [1.0, 1.0, 0.5, 2.0**-13, 0.0, 0.0])
    assert math.ceil(math.log(511)) == 7
    # 100 models: ln 99 = 4.6 -> cut-off 5.
    np.testing.assert_array_equal(epsilon_points([4.99, 5.0], 100), [2.0**-9, 0.0])


def test_points_reject_bad_input():
    with pytest.raises(ValueError, match="n_models"):
        epsilon_points([0.1], 1)
    with pytest.raises(ValueError, match="NaN"):
        epsilon_points([np.nan], 512)
    with pytest.raises(ValueError, match=">= 0"):
        epsilon_points([-0.1], 512)


def test_quality_bins_use_the_smaller_side(monkeypatch):
    """eps 3 earns 2**-6 with 512 models a side but 0 if one side has only 8 (cut-off ceil(ln 7) = 2)."""
    monkeypatch.setattr(E, "per_example_epsilons", lambda u, r, **kw: np.array([3.0, 0.2]))
    quality, _ = E.forgetting_quality(np.zeros((512, 2)), np.zeros((512, 2)))
    assert quality == pytest.approx((2.0**-6 + 1.0) / 2)
    quality, _ = E.forgetting_quality(np.zeros((512, 2)), np.zeros((8, 2)))
    assert quality == pytest.approx(0.5)


def test_quality_passes_options_through():
    rng = np.random.default_rng(6)
    u, r = rng.normal(size=(20, 3)), rng.normal(size=(20, 3)) + 0.5
    quality, eps = forgetting_quality(u, r, grid_per_unit=10, delta=1e-3)
    np.testing.assert_array_equal(eps, per_example_epsilons(u, r, grid_per_unit=10, delta=1e-3))
    assert quality == pytest.approx(epsilon_points(eps, 20).mean())


def test_final_score_arithmetic():
    # F x (MAE_R / MAE_U on retain) x (MAE_R / MAE_U on test)
    assert final_score(0.5, 2.0, 1.0, 4.0, 3.0) == pytest.approx(0.5 * 0.5 * 0.75)
    assert final_score(0.8, 1.0, 2.0, 1.0, 1.0) == pytest.approx(1.6)  # better than retraining: not capped
    with pytest.raises(ValueError, match="retain_mae_unlearned"):
        final_score(0.5, 0.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="quality"):
        final_score(1.5, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="test_mae_retrained"):
        final_score(0.5, 1.0, 1.0, 1.0, float("nan"))


def test_histogram():
    eps = np.array([0.0, 0.3, 0.5, 6.9, 7.0, np.inf, 50.0])
    hist = eps_histogram(eps, 512)
    assert hist["edges"] == [k * 0.5 for k in range(15)]
    assert len(hist["counts"]) == 14
    assert hist["counts"][0] == 2 and hist["counts"][1] == 1 and hist["counts"][13] == 1
    assert sum(hist["counts"]) == 4 and hist["at_or_beyond_cutoff"] == 3
    assert hist["n_examples"] == 7 and hist["cutoff"] == 7.0
    assert hist["points_per_bin"][:3] == [1.0, 0.5, 0.25]
    assert json.loads(json.dumps(hist, allow_nan=False)) == hist


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "u,r,match",
    [
        (np.zeros(5), np.zeros((5, 1)), "2-D"),
        (np.zeros((5, 2)), np.zeros((5, 3)), "examples"),
        (np.zeros((1, 2)), np.zeros((5, 2)), "at least 2 models"),
        (np.zeros((5, 0)), np.zeros((5, 0)), "no example"),
        (np.full((5, 1), np.nan), np.zeros((5, 1)), "NaN/inf"),
        (np.zeros((5, 1)), np.full((5, 1), np.inf), "NaN/inf"),
    ],
)
def test_rejects_bad_samples(u, r, match):
    with pytest.raises(ValueError, match=match):
        per_example_epsilons(u, r)


def test_rejects_bad_options():
    x = np.zeros((4, 1))
    with pytest.raises(ValueError, match="delta"):
        per_example_epsilons(x, x, delta=1.0)
    with pytest.raises(ValueError, match="grid_per_unit"):
        per_example_epsilons(x, x, grid_per_unit=0)


# ----------------------------------------------------------------------------------------------
# The grid's unit (GRID_UNITS)
# ----------------------------------------------------------------------------------------------
def narrow_inside_reference(seed: int = 11, n: int = 64, examples: int = 100):
    """Retrained models spread over 0.06 standardised units (as on the electricity task); the
    unlearned ones sit inside that spread, 40 times narrower: 0.0015, under one grid step
    (0.01) of the challenge's literal grid, and above the range guard."""
    rng = np.random.default_rng(seed)
    return 0.0015 * rng.normal(size=(n, examples)), 0.06 * rng.normal(size=(n, examples))


def test_a_sample_narrower_than_a_grid_step_beats_the_noise_floor_only_on_the_literal_grid():
    u, r = narrow_inside_reference()
    second = narrow_inside_reference(12)[1]  # a second set of retrained models: the noise floor
    for unit in E.GRID_UNITS:
        scale = E.grid_scale(r, unit)
        quality, eps = forgetting_quality(u, r, scale=scale)
        floor, _ = forgetting_quality(second, r, scale=scale)
        if unit == "target":
            # where no grid point falls inside the narrow sample, every attack that errs on
            # one side errs on none of the other: all are discarded, eps 0, a full point
            assert np.mean(eps == 0.0) > 0.1 and quality > floor
        else:  # per reference std the grid splits it everywhere: far from retraining
            assert np.all(eps > 3.0) and quality < floor / 10


def test_per_std_eps_do_not_depend_on_the_target_units():
    rng = np.random.default_rng(13)
    u, r = 0.05 * rng.normal(size=(24, 30)) + 0.02, 0.08 * rng.normal(size=(24, 30))
    base = per_example_epsilons(u, r, scale=E.grid_scale(r, "reference-std"))
    for c in (1e-3, 7.0, 1e4):
        got = per_example_epsilons(c * u, c * r, scale=E.grid_scale(c * r, "reference-std"))
        np.testing.assert_allclose(got, base, rtol=1e-9)
    literal = per_example_epsilons(u, r)
    assert not np.allclose(per_example_epsilons(1e4 * u, 1e4 * r), literal)  # the literal grid does
    s = E.grid_scale(r, "reference-std")
    np.testing.assert_array_equal(per_example_epsilons(u, r, scale=s), per_example_epsilons(u / s, r / s))
    np.testing.assert_array_equal(E.grid_scale(r, "target"), np.ones(30))


def test_grid_scale_of_a_constant_reference_is_one_and_bad_units_are_refused():
    r = np.zeros((4, 2))
    r[:, 1] = [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_allclose(E.grid_scale(r, "reference-std"), [1.0, np.std([0, 1, 2, 3], ddof=1)])
    with pytest.raises(ValueError, match="unknown grid unit"):
        E.grid_scale(r, "logit")
    for bad in (np.ones(3), np.array([1.0, 0.0]), np.array([1.0, np.inf])):
        with pytest.raises(ValueError, match="scale must hold 2 positive finite"):
            per_example_epsilons(r, r, scale=bad)


def test_samples_far_apart_meet_a_capped_threshold_grid_and_still_separate():
    rng = np.random.default_rng(14)
    u, r = rng.normal(size=(16, 2)), rng.normal(size=(16, 2))
    r[:, 0] += 1e5  # 10^7 grid points at 100 per unit: capped at MAX_THRESHOLDS
    eps = per_example_epsilons(u, r)
    assert eps[0] == EPS_CAP and eps[1] < EPS_CAP
