"""The spread-and-shift control beside the NeurIPS'23 score (jaxunlearn.metrics.spread)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxunlearn.metrics.spread import spread_and_shift, spread_summary


def centred(n_models: int = 16, n_examples: int = 5, seed: int = 0) -> np.ndarray:
    """[N, F] predictions with mean 0 per example."""
    r = np.random.default_rng(seed).normal(size=(n_models, n_examples))
    return r - r.mean(axis=0)


def test_a_wider_sample_shows_as_spread_and_a_moved_one_as_shift():
    r = centred()
    spread, shift = spread_and_shift(3.0 * r, r)
    np.testing.assert_allclose(spread, 3.0, rtol=1e-12)
    np.testing.assert_allclose(shift, 0.0, atol=1e-12)
    moved = r + 2.0 * r.std(axis=0, ddof=1)
    spread, shift = spread_and_shift(moved, r)
    np.testing.assert_allclose(spread, 1.0, rtol=1e-12)
    np.testing.assert_allclose(shift, 2.0, rtol=1e-12)


def test_the_original_repeated_has_no_spread_and_independent_samples_sit_near_one():
    r = centred(64, 200, seed=1)
    assert spread_summary(np.zeros_like(r), r)["spread_ratio"] == 0.0
    rng = np.random.default_rng(2)  # two independent samples of N = 64 models
    floor = spread_summary(rng.normal(size=(64, 400)), rng.normal(size=(64, 400)))
    assert floor["spread_ratio"] == pytest.approx(1.0, abs=0.05)
    shift = floor["mean_shift"]  # of the order of sqrt(2/N) = 0.18
    assert 0.05 < shift < 0.3


def test_examples_where_the_reference_does_not_vary_are_skipped_or_infinite():
    r = centred(8, 3)
    r[:, 0] = 1.0  # the reference does not vary on example 0
    u = r.copy()
    spread, shift = spread_and_shift(u, r)
    assert np.isnan(spread[0]) and np.isnan(shift[0])
    u[0, 0] = 2.0
    spread, _ = spread_and_shift(u, r)
    assert np.isinf(spread[0])
    summary = spread_summary(r, r)  # example 0 skipped, the others identical
    assert summary == {"spread_ratio": 1.0, "mean_shift": 0.0}


@pytest.mark.parametrize(
    ("unlearned", "retrained", "message"),
    [
        (np.zeros((1, 3)), np.zeros((4, 3)), "N >= 2"),
        (np.zeros(3), np.zeros((4, 3)), r"\[N, F\]"),
        (np.zeros((4, 3)), np.zeros((4, 2)), "3 examples, retrained 2"),
    ],
)
def test_bad_shapes_are_refused(unlearned, retrained, message):
    with pytest.raises(ValueError, match=message):
        spread_and_shift(unlearned, retrained)
