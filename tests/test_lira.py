"""Per-example likelihood-ratio attack statistics (jaxunlearn.metrics.lira)."""

import json

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from jaxunlearn.metrics.lira import (
    attack_summary,
    fit_gaussians,
    leave_group_out_scores,
    likelihood_ratio_scores,
    per_example_auc,
    roc_auc,
    tpr_at_fpr,
)

# 6 models x 3 examples; column 2 has a single IN model (too few to fit).
STATS = np.array(
    [
        [1.0, 10.0, 5.0],
        [2.0, 11.0, 6.0],
        [4.0, 13.0, 7.0],
        [0.0, 20.0, 8.0],
        [0.5, 22.0, 9.0],
        [-1.0, 27.0, 10.0],
    ]
)
IS_IN = np.array(
    [
        [1, 1, 1],
        [1, 0, 0],
        [1, 1, 0],
        [0, 0, 0],
        [0, 1, 0],
        [0, 0, 0],
    ],
    dtype=bool,
)


def test_fit_gaussians_per_column():
    mu_in, sd_in, mu_out, sd_out = fit_gaussians(STATS, IS_IN)
    for f in range(2):
        x_in, x_out = STATS[IS_IN[:, f], f], STATS[~IS_IN[:, f], f]
        assert mu_in[f] == pytest.approx(np.mean(x_in)) and sd_in[f] == pytest.approx(np.std(x_in))
        assert mu_out[f] == pytest.approx(np.mean(x_out)) and sd_out[f] == pytest.approx(np.std(x_out))
    assert mu_in[0] == pytest.approx(7 / 3) and sd_in[0] == pytest.approx(np.sqrt(14 / 9))
    for p in (mu_in, sd_in, mu_out, sd_out):
        assert p.shape == (3,) and np.isnan(p[2])  # one IN model only


def test_fit_gaussians_shared_variance_pools_within_example_deviations():
    mu_in, sd_in, mu_out, sd_out = fit_gaussians(STATS, IS_IN, shared_variance=True)
    deviations_in, deviations_out = [], []
    for f in range(2):  # the valid examples only
        x_in, x_out = STATS[IS_IN[:, f], f], STATS[~IS_IN[:, f], f]
        deviations_in += list(x_in - x_in.mean())
        deviations_out += list(x_out - x_out.mean())
    np.testing.assert_allclose(sd_in[:2], np.sqrt(np.mean(np.square(deviations_in))))
    np.testing.assert_allclose(sd_out[:2], np.sqrt(np.mean(np.square(deviations_out))))
    assert np.isnan(sd_in[2]) and np.isnan(mu_out[2])
    np.testing.assert_allclose(mu_in, fit_gaussians(STATS, IS_IN)[0])  # means stay per example


def test_min_std_floors_a_constant_side():
    stats = np.array([[1.0], [1.0], [0.0], [2.0]])
    _, sd_in, _, sd_out = fit_gaussians(stats, np.array([[1], [1], [0], [0]], bool), min_std=1e-3)
    assert sd_in[0] == 1e-3 and sd_out[0] == pytest.approx(1.0)


def test_likelihood_ratio_sign_and_value():
    mu_in, sd_in = np.array([1.0, 0.0]), np.array([0.5, 1.0])
    mu_out, sd_out = np.array([0.0, 0.0]), np.array([1.0, 2.0])
    x = np.array([[1.0, 0.0], [0.0, 5.0], [-3.0, 1.0]])
    got = likelihood_ratio_scores(x, mu_in, sd_in, mu_out, sd_out)
    want = norm.logpdf(x, mu_in, sd_in) - norm.logpdf(x, mu_out, sd_out)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0, 0] > 0 and got[2, 0] < 0  # at the IN mean: IN; far on the OUT side: OUT
    assert got[1, 1] < 0  # far in the tails the wider (OUT) Gaussian wins
    with pytest.raises(ValueError, match="parameters"):
        likelihood_ratio_scores(x, mu_in[:1], sd_in, mu_out, sd_out)


def test_leave_group_out_never_uses_own_group():
    rng = np.random.default_rng(0)
    m, f = 12, 4
    is_in = np.zeros((m, f), bool)
    is_in[::2] = True
    stats = rng.normal(size=(m, f)) + 2.0 * is_in
    groups = np.repeat(np.arange(3), 4)
    # Group 0's models are wild outliers: fitting on them would move every Gaussian.
    stats[groups == 0] += 50.0
    scores = leave_group_out_scores(stats, is_in, groups)
    for g in range(3):
        rows = groups == g
        want = likelihood_ratio_scores(stats[rows], *fit_gaussians(stats[~rows], is_in[~rows]))
        np.testing.assert_allclose(scores[rows], want, rtol=1e-12)
    # Fitted without group 0, its outliers lie far out in every Gaussian's tail: strongly
    # negative or positive scores, nothing like the near-0 ratios of a fit that includes them.
    rows = groups == 0
    leaky = likelihood_ratio_scores(stats[rows], *fit_gaussians(stats, is_in))
    assert np.abs(scores[rows]).min() > 10.0 and np.abs(leaky).max() < 1.0
    # Moving group 0 leaves group 0's fit (so the scores of a model at a fixed value) alone.
    moved = stats.copy()
    moved[groups == 0] -= 30.0
    unchanged = leave_group_out_scores(moved, is_in, groups)
    np.testing.assert_allclose(
        unchanged[rows], likelihood_ratio_scores(moved[rows], *fit_gaussians(stats[~rows], is_in[~rows]))
    )
    shared = leave_group_out_scores(stats, is_in, groups, shared_variance=True)
    rows = groups == 1
    np.testing.assert_allclose(
        shared[rows], likelihood_ratio_scores(stats[rows], *fit_gaussians(stats[~rows], is_in[~rows], True))
    )
    assert not np.allclose(shared, scores)


def test_leave_group_out_rejects_one_group():
    with pytest.raises(ValueError, match="2 groups"):
        leave_group_out_scores(STATS, IS_IN, np.zeros(6, int))
    with pytest.raises(ValueError, match="groups"):
        leave_group_out_scores(STATS, IS_IN, np.zeros(5, int))


def test_roc_auc_and_tpr_hand_cases():
    # Perfect separation.
    scores, labels = np.array([3.0, 4.0, 5.0, 0.0, 1.0, 2.0]), np.array([1, 1, 1, 0, 0, 0], bool)
    assert roc_auc(scores, labels) == 1.0 and tpr_at_fpr(scores, labels, 0.0) == 1.0
    assert roc_auc(-scores, labels) == 0.0 and tpr_at_fpr(-scores, labels, 0.5) == 0.0
    # IN = [1, 3], OUT = [0, 2]: 3 of 4 pairs ordered right. At FPR 0 only the score 3 is
    # called IN (TPR 1/2); at FPR 1/2 the threshold 1 calls both INs (TPR 1).
    scores, labels = np.array([1.0, 3.0, 0.0, 2.0]), np.array([1, 1, 0, 0], bool)
    assert roc_auc(scores, labels) == 0.75
    assert tpr_at_fpr(scores, labels, 0.0) == 0.5 and tpr_at_fpr(scores, labels, 0.49) == 0.5
    assert tpr_at_fpr(scores, labels, 0.5) == 1.0
    # NaN scores are ignored.
    assert roc_auc(np.append(scores, np.nan), np.append(labels, True)) == 0.75


def test_roc_auc_identical_distributions_is_chance():
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=(200, 100)), rng.random((200, 100)) < 0.5
    assert abs(roc_auc(scores, labels) - 0.5) < 0.01  # sd of the AUC here is about 0.0029
    assert abs(tpr_at_fpr(scores, labels, 0.01) - 0.01) < 0.01


def test_roc_rejects_one_class():
    with pytest.raises(ValueError, match="one IN and one OUT"):
        roc_auc([1.0, 2.0], [True, True])
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr([1.0, 2.0], [True, False], 1.5)


def test_per_example_auc_matches_sklearn():
    rng = np.random.default_rng(2)
    labels = rng.random((30, 6)) < 0.5
    scores = np.round(rng.normal(size=(30, 6)) + labels * np.linspace(0, 2, 6), 1)  # ties
    scores[3, 2] = np.nan
    got = per_example_auc(scores, labels)
    for f in range(6):
        keep = ~np.isnan(scores[:, f])
        assert got[f] == pytest.approx(roc_auc_score(labels[keep, f], scores[keep, f]), abs=1e-12)
    assert got[-1] > 0.8  # the large shift is found


def test_per_example_auc_nan_without_both_classes():
    labels = np.array([[1, 1], [0, 1], [0, 1]], bool)
    got = per_example_auc(np.arange(6.0).reshape(3, 2), labels)
    assert got[0] == 0.0 and np.isnan(got[1])


def test_attack_summary_is_json():
    rng = np.random.default_rng(3)
    labels = rng.random((40, 5)) < 0.5
    scores = rng.normal(size=(40, 5)) + labels
    scores[0, 0] = np.nan
    labels[:, 4] = True  # an example with no OUT model
    summary = attack_summary(scores, labels)
    assert set(summary) >= {"auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "per_example_auc", "n_in", "n_out"}
    assert summary["auc"] == pytest.approx(roc_auc(scores, labels))
    assert summary["per_example_auc"][4] is None and len(summary["per_example_auc"]) == 5
    assert summary["n_in"] + summary["n_out"] + summary["n_nan_scores"] == 200 and summary["n_nan_scores"] == 1
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        fit_gaussians(np.zeros(4), np.zeros(4, bool))
    with pytest.raises(ValueError, match="shape"):
        fit_gaussians(STATS, IS_IN[:, :2])
    with pytest.raises(ValueError, match="NaN/inf"):
        fit_gaussians(np.where(IS_IN, np.nan, STATS), IS_IN)
    with pytest.raises(ValueError, match="boolean"):
        fit_gaussians(STATS, IS_IN * 2)
