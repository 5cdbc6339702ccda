"""Tests for jaxunlearn.metrics.membership (RBF-SVC loss-based MIA)."""

import numpy as np
import pytest
from sklearn.svm import SVC

from jaxunlearn.metrics.membership import WORKERS_ENV, attack_workers, mia_member_rate, mia_member_rates


def _losses(seed=0, nm=500, nn=500, nt=300):
    rng = np.random.default_rng(seed)
    member = rng.exponential(0.1, nm)  # small training losses
    nonmember = 1.0 + rng.exponential(1.0, nn)  # large held-out losses
    t_member = rng.exponential(0.1, nt)
    t_nonmember = 1.0 + rng.exponential(1.0, nt)
    return member, nonmember, t_member, t_nonmember


def test_member_like_target_scores_high_nonmember_like_low():
    member, nonmember, t_member, t_nonmember = _losses()
    high = mia_member_rate(member, nonmember, t_member)
    low = mia_member_rate(member, nonmember, t_nonmember)
    assert isinstance(high, float) and isinstance(low, float)
    assert high > 0.9
    assert low < 0.1


def test_accepts_column_vectors():
    member, nonmember, t_member, _ = _losses()
    a = mia_member_rate(member, nonmember, t_member, seed=3)
    b = mia_member_rate(member[:, None], nonmember[:, None], t_member[:, None], seed=3)
    assert a == b


def test_deterministic_for_same_seed():
    rng = np.random.default_rng(1)
    # Overlapping distributions so that the subsample actually matters.
    member = rng.normal(1.0, 1.0, 400) ** 2
    nonmember = rng.normal(1.5, 1.0, 400) ** 2
    target = rng.normal(1.2, 1.0, 200) ** 2
    r1 = mia_member_rate(member, nonmember, target, n_train=100, seed=7)
    r2 = mia_member_rate(member, nonmember, target, n_train=100, seed=7)
    assert r1 == r2
    assert 0.0 <= r1 <= 1.0


def test_uses_at_most_n_train_per_class_without_replacement(monkeypatch):
    seen = {}
    original_fit = SVC.fit

    def spy_fit(self, X, y, *args, **kwargs):
        seen["X"], seen["y"] = np.array(X), np.array(y)
        seen["params"] = (self.kernel, self.C, self.gamma)
        return original_fit(self, X, y, *args, **kwargs)

    monkeypatch.setattr(SVC, "fit", spy_fit)
    member = np.arange(100, dtype=float) / 1000.0  # distinct values
    nonmember = 1.0 + np.arange(60, dtype=float) / 100.0
    mia_member_rate(member, nonmember, member, n_train=25, C=2.0, gamma=0.5)
    X, y = seen["X"], seen["y"]
    assert X.shape == (50, 1)
    assert (y == 1).sum() == 25 and (y == 0).sum() == 25
    assert len(np.unique(X[y == 1, 0])) == 25  # no replacement
    assert np.isin(X[y == 1, 0], member).all()
    assert np.isin(X[y == 0, 0], nonmember).all()
    assert seen["params"] == ("rbf", 2.0, 0.5)

    # n is capped by the smaller class when n_train is large.
    mia_member_rate(member, nonmember, member, n_train=10_000)
    assert seen["X"].shape == (120, 1)
    assert np.sort(seen["X"][seen["y"] == 0, 0]).tolist() == nonmember.tolist()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(member_losses=[]), "member_losses"),
        (dict(nonmember_losses=[]), "nonmember_losses"),
        (dict(target_losses=[]), "target_losses"),
        (dict(member_losses=[0.1, np.nan, 0.2]), "member_losses"),
        (dict(nonmember_losses=[1.0, np.inf, 2.0]), "nonmember_losses"),
        (dict(target_losses=[np.nan]), "target_losses"),
        (dict(member_losses=np.zeros((3, 2))), "member_losses"),
        (dict(target_losses=np.zeros((2, 2, 1))), "target_losses"),
        (dict(member_losses=[0.1]), "at least 2"),
        (dict(n_train=1), "n_train"),
    ],
)
def test_input_validation(kwargs, match):
    args = dict(
        member_losses=[0.1, 0.2, 0.3],
        nonmember_losses=[1.0, 2.0, 3.0],
        target_losses=[0.5],
    )
    n_train = kwargs.pop("n_train", 2000)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mia_member_rate(
            args["member_losses"],
            args["nonmember_losses"],
            args["target_losses"],
            n_train=n_train,
        )


def test_batched_rates_use_seed_plus_i():
    rng = np.random.default_rng(2)
    s = 3
    member = rng.normal(1.0, 1.0, (s, 200)) ** 2
    nonmember = rng.normal(1.5, 1.0, (s, 200)) ** 2
    target = rng.normal(1.2, 1.0, (s, 100)) ** 2
    rates = mia_member_rates(member, nonmember, target, n_train=50, seed=10)
    assert rates.shape == (s,) and rates.dtype == np.float64
    expected = [mia_member_rate(member[i], nonmember[i], target[i], n_train=50, seed=10 + i) for i in range(s)]
    np.testing.assert_array_equal(rates, expected)


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_batched_rates_are_the_same_for_any_thread_count(workers, monkeypatch):
    rng = np.random.default_rng(4)
    s = 5
    member = rng.normal(1.0, 1.0, (s, 300)) ** 2
    nonmember = rng.normal(1.4, 1.0, (s, 300)) ** 2
    target = rng.normal(1.2, 1.0, (s, 80)) ** 2
    serial = [mia_member_rate(member[i], nonmember[i], target[i], n_train=100, seed=3 + i) for i in range(s)]
    np.testing.assert_array_equal(
        mia_member_rates(member, nonmember, target, n_train=100, seed=3, workers=workers), serial
    )
    monkeypatch.setenv(WORKERS_ENV, str(workers))  # the default thread count comes from the environment
    assert attack_workers() == workers
    np.testing.assert_array_equal(mia_member_rates(member, nonmember, target, n_train=100, seed=3), serial)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_worker_count_is_refused(value, monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, value)
    with pytest.raises(ValueError, match=WORKERS_ENV):
        attack_workers()


def test_batched_rejects_mismatched_seeds_and_bad_rank():
    with pytest.raises(ValueError, match="number of seeds"):
        mia_member_rates(np.ones((2, 5)), np.ones((3, 5)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="target_losses"):
        mia_member_rates(np.ones((2, 5)), np.ones((2, 5)), np.ones(5))


def test_a_pool_attacks_rows_in_the_background_with_the_rates_of_one_thread():
    from jaxunlearn.metrics.membership import AttackPool

    rng = np.random.default_rng(6)
    rows = {
        name: (rng.normal(1.0, 1.0, (s, 200)) ** 2, rng.normal(1.3, 1.0, (s, 150)) ** 2, rng.normal(1.1, 1.0, (s, 40)))
        for name, s in (("a", 3), ("b", 1), ("c", 4))
    }
    serial = {name: mia_member_rates(*losses, n_train=80, seed=7, workers=1) for name, losses in rows.items()}
    with AttackPool(3) as pool:
        pending = {name: pool.submit(*losses, n_train=80, seed=7) for name, losses in rows.items()}
        rates = {name: p.result() for name, p in pending.items()}
    for name in rows:
        np.testing.assert_array_equal(rates[name], serial[name])
    assert pool.busy_seconds > 0 and all(p.waited >= 0 for p in pending.values())


def test_a_pool_refuses_bad_use_and_raises_an_attacks_error_at_result():
    from jaxunlearn.metrics.membership import AttackPool

    with pytest.raises(ValueError, match="workers"):
        AttackPool(0)
    with pytest.raises(RuntimeError, match="with statement"):
        AttackPool(2).submit(np.ones((1, 5)), np.ones((1, 5)), np.ones((1, 5)))
    with AttackPool(2) as pool:
        with pytest.raises(ValueError, match="number of seeds"):  # shapes are checked at submit
            pool.submit(np.ones((2, 5)), np.ones((3, 5)), np.ones((2, 5)))
        bad = pool.submit(np.ones((1, 5)), np.ones((1, 1)), np.ones((1, 5)))  # one non-member: too few
        with pytest.raises(ValueError, match="at least 2 samples"):
            bad.result()
