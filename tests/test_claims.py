"""The paired-seed verdicts on the paper's claims."""

import numpy as np
import pytest
from scipy import stats

from jaxunlearn.claims import claims_table, evaluate_claims


def _per_seed(blindspot_w1, finetune_w1, s=6):
    ones = np.ones(s)
    base = {"test_forget_mae": ones, "mia": ones * 0.3, "ain": ones, "test_retain_mae": ones, "wasserstein": ones}
    return {
        "original": dict(base),
        "retrain": dict(base, wasserstein=0 * ones),
        "finetune": dict(base, wasserstein=np.asarray(finetune_w1, float)),
        "blindspot": dict(base, wasserstein=np.asarray(blindspot_w1, float)),
    }


def _w1_verdict(per_seed):
    return next(v for v in evaluate_claims(per_seed) if "W1" in v.claim and v.versus == "finetune")


def test_clear_win_holds_and_matches_a_paired_t_interval():
    b = np.array([1.0, 1.2, 0.9, 1.1, 1.0, 0.8])
    f = b + np.array([2.0, 2.5, 1.5, 2.2, 1.8, 2.1])
    v = _w1_verdict(_per_seed(b, f))
    d = f - b
    assert v.outcome == "holds" and v.n == 6
    assert v.mean == pytest.approx(d.mean())
    assert v.ci95 == pytest.approx(stats.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6))


def test_clear_loss_fails_and_noise_is_inconclusive():
    b = np.array([3.0, 3.1, 2.9, 3.2, 3.0, 3.05])
    assert _w1_verdict(_per_seed(b, b - 2)).outcome == "fails"
    noise = np.array([0.5, -0.4, 0.3, -0.6, 0.2, -0.1])
    assert _w1_verdict(_per_seed(b, b + noise)).outcome == "inconclusive"


def test_nan_seeds_are_dropped_pairwise_and_retain_claim_present():
    b = np.array([1.0, np.nan, 1.0, 1.0, 1.0, 1.0])
    v = _w1_verdict(_per_seed(b, b + np.array([1.0, 1.0, 1.1, 0.9, 1.0, 1.2])))
    assert v.n == 5 and v.outcome == "holds"
    verdicts = evaluate_claims(_per_seed(np.ones(6), np.ones(6)))
    retain = [x for x in verdicts if x.versus == "original"]
    assert len(retain) == 1 and retain[0].outcome == "holds"  # equal retain error: within 10%
    assert "| forget-set predictions closest to retraining (lower W1) | finetune |" in claims_table(verdicts)


def test_rivals_replace_the_default_competitors():
    b = np.array([1.0, 1.2, 0.9, 1.1, 1.0, 0.8])
    per_seed = _per_seed(b, b + 2.0)
    per_seed["finetune[lr=0.0003]"] = dict(per_seed["finetune"], wasserstein=b - 0.5)
    verdicts = evaluate_claims(per_seed, rivals=["finetune[lr=0.0003]"])
    assert {v.versus for v in verdicts} == {"finetune[lr=0.0003]", "original"}
    w1 = next(v for v in verdicts if "W1" in v.claim)
    assert w1.outcome == "fails" and w1.mean == pytest.approx(-0.5)


def test_p_value_is_the_paired_t_test_and_agrees_with_the_interval():
    rng = np.random.default_rng(0)
    b = rng.normal(1.0, 0.2, 8)
    for shift in (0.0, 0.1, 0.2, 0.5, -0.3):
        f = b + shift + rng.normal(0.0, 0.2, 8)
        v = _w1_verdict(_per_seed(b, f, s=8))
        assert v.p == pytest.approx(stats.ttest_1samp(f - b, 0.0).pvalue, rel=1e-9)
        assert (v.outcome != "inconclusive") == (v.p < 0.05)


def test_holm_step_down():
    from jaxunlearn.claims import Verdict, holm

    def verdict(mean, p):
        return Verdict("c", "r", mean, 0.0, 8, "-", p)

    # m = 5: thresholds 0.01, 0.0125, 0.0167, 0.025, 0.05 for the 1st, 2nd, ... smallest p.
    family = [
        verdict(1.0, 0.03),
        verdict(-1.0, 0.004),
        verdict(1.0, 0.012),
        verdict(1.0, float("nan")),
        verdict(1.0, 0.02),
    ]
    assert holm(family) == ["inconclusive", "fails", "holds", "inconclusive", "inconclusive"]
    # The step-down stops at the first p over its threshold, even if a later one would pass alone.
    assert holm([verdict(1.0, 0.02), verdict(1.0, 0.021)]) == ["holds", "holds"]
    assert holm([verdict(1.0, 0.03), verdict(1.0, 0.04)]) == ["inconclusive", "inconclusive"]
    table = claims_table(evaluate_claims(_per_seed(np.ones(6), np.ones(6) + 1.0)))
    assert "after Holm (5 comparisons)" in table


def test_holm_rejections_on_bare_p_values():
    from jaxunlearn.claims import holm_rejections

    assert holm_rejections([0.03, 0.004, 0.012, float("nan"), 0.02]) == [False, True, True, False, False]
    assert holm_rejections([0.02, 0.021]) == [True, True] and holm_rejections([]) == []


def test_claims_report_needs_the_subject_and_a_competitor():
    from jaxunlearn.claims import claims_report

    per_seed = _per_seed(np.ones(6), np.ones(6) + 1.0)
    assert "after Holm (5 comparisons)" in claims_report(per_seed)
    assert claims_report({k: v for k, v in per_seed.items() if k != "finetune"}) is None  # no competitor
    assert claims_report({k: v for k, v in per_seed.items() if k != "blindspot"}) is None  # e.g. a swept study
